"""Trainable parameters and FLOPs in the paper's convention (official-implementation.md secs. 6-7), measured on
models built at paper scale (ViT-B-16-quickgelu, 256x128, 171 classes, 4 cameras) with random weights on the CPU.

Convention (worked out in official sec. 7 from the paper's numbers): only the *added task modules* count; heads,
BN-necks and the camera embedding do not; rows B and G add the CLIP visual tower (86,140,416 at 129 positions).
Tables 4 and 5 count ONE transformer layer's module, Table 6 (and 11) ONE aggregation block plus the final
per-modality LN + Linear reductions, Table 3 the whole model.

FLOPs follow fvcore (one multiply-add = one FLOP) with :func:`flop_handles`, the one handle per operator fvcore
leaves uncounted: ``aten::scaled_dot_product_attention`` (what ``nn.MultiheadAttention`` and timm's attention
trace to), the fused ``nn.MultiheadAttention`` path and the selective scan (:func:`mambapro.scan.fvcore_handles`).
Table 5 = one layer, one modality, 129 tokens; Table 4 = extra cost of one layer over the three modalities (prompted
minus plain layer, taken at the second layer so RP runs); Table 6/11 = the aggregator with one block, batch 1.

``python -m mambapro.complexity --out results/`` writes ``complexity.csv`` and ``complexity.md`` (paper value,
ours and the difference for every row), each to a temporary name renamed when complete.  The paper's values are
read from :mod:`mambapro.paper_results` (columns ``params_M``, ``flops_G``), the rows from
:data:`mambapro.config.TABLES`.
"""

from __future__ import annotations

import argparse
import csv
import io
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from mambapro.aggregation import build_aggregator
from mambapro.config import TABLES, Config, resolve_config
from mambapro.paper_results import paper_table
from mambapro.results import write_text
from mambapro.scan import fvcore_handles as scan_fvcore_handles

PAPER_PROFILE = "rgbnt201"
PAPER_CLASSES, PAPER_CAMERAS = 171, 4

# The tables with a complexity column, and each quantity's column in mambapro.paper_results (Params in M, FLOPs in G).
TABLES_WITH_COMPLEXITY = ("table3", "table4", "table5", "table6", "table11")
PAPER_COLUMNS = {"params": "params_M", "flops": "flops_G"}
NOTES = {  # (table, row, quantity) -> why ours and the paper differ
    ("table3", "F", "params"): "paper 0.025 M above component arithmetic, unexplained (official sec. 7)",
    ("table3", "G", "params"): "paper 0.025 M above component arithmetic, unexplained (official sec. 7)",
    ("table4", "CLIP(L) + SRP(Separation)", "params"): "3.555 M: the paper truncates (or counts a slightly smaller "
                                                       "variant), official sec. 7",
    ("table5", "CLIP(L) + LoRA-r(384)", "params"): "the paper's +0.01 is unexplained (official sec. 7)",
    ("table5", "CLIP(L) + BNA", "params"): "the paper's +0.01 is unexplained (official sec. 7)",
    ("table6", "Sum", "flops"): "the reductions alone are 0.002 G",
    ("table6", "MA", "flops"): "official sec. 6 reproduces 1.412 (1.415 with elementwise ops counted)",
    ("table11", "MA(Mamba)", "flops"): "official sec. 6 reproduces 1.412 (1.415 with elementwise ops counted)",
    ("table11", "MA(Trans)", "flops"): "the paper's value does not fit the module (2.62 G analytic, official sec. 7)",
}


# --------------------------------------------------------------------------------------------------------------
# Parameters


def count_params(module: nn.Module | None, trainable_only: bool = False) -> int:
    """Number of parameters of ``module`` (0 for None), optionally only those with ``requires_grad``."""
    if module is None:
        return 0
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def model_params(model: nn.Module) -> int:
    """Table 3's count: trainable parameters except heads, BN-necks and the camera embedding (official sec. 7)."""
    from mambapro.model import HEAD_PREFIXES

    return sum(p.numel() for n, p in model.named_parameters()
               if p.requires_grad and not n.startswith(HEAD_PREFIXES) and n != "backbone.camera_embedding")


def aggregation_block_params(aggregator: nn.Module) -> int:
    """Table 6's count: one aggregation block plus the final reductions."""
    first = aggregator.blocks[0] if len(aggregator.blocks) else None
    return count_params(first) + count_params(aggregator.reduction)


# --------------------------------------------------------------------------------------------------------------
# FLOPs


def _sdpa_flop_handle(inputs, outputs) -> int:
    """q [..., L, E], k [..., S, E], v [..., S, Ev]: L*S*E for q k^T plus L*S*Ev for the weighted sum (MACs)."""
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(x) for x in inputs[:3])
    batch = 1
    for s in q[:-2]:
        batch *= s
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


def _native_mha_flop_handle(inputs, outputs) -> int:
    """``nn.MultiheadAttention``'s fused inference path (eval, no gradient needed): query [B, L, E], key [B, S, E];
    q projection L*E*E, k and v projections 2*S*E*E, scores and weighted sum 2*L*S*E, output projection L*E*E."""
    from fvcore.nn.jit_handles import get_shape

    q, k = get_shape(inputs[0]), get_shape(inputs[1])
    batch, length, e = (q[0], q[1], q[2]) if len(q) == 3 else (1, q[0], q[1])
    s = k[-2]
    return batch * (2 * length * e * e + 2 * s * e * e + 2 * length * s * e)


def flop_handles() -> dict[str, Callable]:
    """fvcore handles for the operators it leaves uncounted: attention and the selective scan."""
    return {"aten::scaled_dot_product_attention": _sdpa_flop_handle,
            "aten::_native_multi_head_attention": _native_mha_flop_handle, **scan_fvcore_handles()}


def count_flops(module: nn.Module, inputs: tuple) -> int:
    """fvcore total (MAC convention) of ``module(*inputs)`` in eval mode, no gradient."""
    from fvcore.nn import FlopCountAnalysis

    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            analysis = FlopCountAnalysis(module, inputs).set_op_handle(**flop_handles())
            analysis.unsupported_ops_warnings(False)
            analysis.uncalled_modules_warnings(False)
            return int(analysis.total())
    finally:
        module.train(was_training)


class _LayerOverModalities(nn.Module):
    """One backbone layer run for the three modalities (Table 4's unit of cost)."""

    def __init__(self, backbone: nn.Module, layer: int):
        super().__init__()
        self.backbone, self.layer = backbone, layer

    def forward(self, x: torch.Tensor, carried: torch.Tensor) -> torch.Tensor:
        outs = [self.backbone.forward_layer(x, self.layer, m, carried)[0] for m in range(3)]
        return torch.stack(outs)


def layer_flops(backbone: nn.Module, layer: int = 1) -> int:
    """FLOPs of ``layer`` over the three modalities, batch 1, with a carried prompt when prompts use one."""
    tokens = 1 + backbone.grid[0] * backbone.grid[1]
    x = torch.zeros(1, tokens, backbone.width)
    k = backbone.prompts.length if backbone.prompts is not None else 1
    return count_flops(_LayerOverModalities(backbone, layer), (x, torch.zeros(1, k, backbone.width)))


# --------------------------------------------------------------------------------------------------------------
# Tables


def paper_config(preset: str | None = None, **overrides) -> Config:
    """Paper-scale configuration (RGBNT201 profile) of ``preset`` with random weights (no download)."""
    return resolve_config(PAPER_PROFILE, preset, {"backbone": {"pretrained": None}, **overrides})


def paper_tower() -> nn.Module:
    """The paper-scale CLIP visual tower (random weights), shareable between models built for counting."""
    from mambapro.backbone import build_clip_tower

    cfg = paper_config()
    return build_clip_tower(cfg.backbone.arch, cfg.data.image_size, None)


def paper_value(table: str, label: str, quantity: str) -> float:
    """The paper's ``quantity`` ("params" or "flops") of row ``label`` of ``table`` (from mambapro.paper_results)."""
    return paper_table(table).value(label, PAPER_COLUMNS[quantity])


def _row(table, label, preset, quantity, ours, note=""):
    paper = paper_value(table, label, quantity)
    ours_r = round(ours, 2)
    return {"table": table, "row": label, "preset": preset, "quantity": quantity,
            "unit": "M" if quantity == "params" else "G", "paper": paper, "ours": ours_r,
            "ours_exact": ours, "difference": round(ours_r - paper, 2),
            "note": note or NOTES.get((table, label, quantity), "")}


def table3_rows(tower: nn.Module) -> list[dict]:
    from mambapro.model import build_model

    rows = []
    for label, preset in TABLES["table3"]:
        cfg = paper_config(preset)
        model = build_model(cfg, PAPER_CLASSES, PAPER_CAMERAS, tower=tower)
        rows.append(_row("table3", label, preset, "params", model_params(model) / 1e6))
    return rows


def table4_rows(tower: nn.Module) -> list[dict]:
    from mambapro.backbone import Backbone

    plain = layer_flops(Backbone(paper_config("A"), PAPER_CAMERAS, tower))
    rows = []
    for label, preset in TABLES["table4"]:
        backbone = Backbone(paper_config(preset), PAPER_CAMERAS, tower)
        rows.append(_row("table4", label, preset, "flops", (layer_flops(backbone) - plain) / 1e9))
        rows.append(_row("table4", label, preset, "params", count_params(backbone.prompts.layers["0"]) / 1e6))
    return rows


def table5_rows(tower: nn.Module) -> list[dict]:
    from mambapro.backbone import Backbone

    rows = []
    for label, preset in TABLES["table5"]:
        backbone = Backbone(paper_config(preset), PAPER_CAMERAS, tower)
        adapter = backbone.adapters["0"]
        x = torch.zeros(1, 1 + backbone.grid[0] * backbone.grid[1], backbone.width)
        rows.append(_row("table5", label, preset, "flops", count_flops(adapter, (x,)) / 1e9))
        rows.append(_row("table5", label, preset, "params", count_params(adapter) / 1e6))
    return rows


def aggregation_rows(table: str) -> list[dict]:
    """Table 6 or 11: one aggregation block + reductions at D = 512, grid 16 x 8, batch 1."""
    rows = []
    for label, preset in TABLES[table]:
        cfg = paper_config(preset, aggregation={"num_blocks": 1})
        aggregator = build_aggregator(cfg.aggregation, 512, (16, 8))
        tokens = [torch.zeros(1, 129, 512) for _ in range(3)]
        rows.append(_row(table, label, preset, "flops", count_flops(aggregator, (tokens,)) / 1e9))
        rows.append(_row(table, label, preset, "params", aggregation_block_params(aggregator) / 1e6))
    return rows


def complexity_rows(tables: tuple[str, ...] = TABLES_WITH_COMPLEXITY) -> list[dict]:
    """Every row of ``tables`` (default: Tables 3, 4, 5, 6 and 11)."""
    unknown = [t for t in tables if t not in TABLES_WITH_COMPLEXITY]
    if unknown:
        raise ValueError(f"unknown tables {unknown}; valid: {', '.join(TABLES_WITH_COMPLEXITY)}")
    tower = paper_tower() if {"table3", "table4", "table5"} & set(tables) else None
    builders = {"table3": lambda: table3_rows(tower), "table4": lambda: table4_rows(tower),
                "table5": lambda: table5_rows(tower)}
    rows = []
    for table in tables:
        rows += builders[table]() if table in builders else aggregation_rows(table)
    return rows


# --------------------------------------------------------------------------------------------------------------
# Output


FIELDS = ("table", "row", "preset", "quantity", "unit", "paper", "ours", "ours_exact", "difference", "note")


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def to_markdown(rows: list[dict]) -> str:
    lines = ["# Complexity: paper vs. this implementation", "",
             "Paper scale (ViT-B-16-quickgelu, 256x128, 171 classes, 4 cameras), random weights, CPU. Params in M "
             "(added modules only; Tables 4/5 one layer, Table 6/11 one block + reductions); FLOPs in G (fvcore, "
             "1 MAC = 1 FLOP). Table 3's Mem(GB) needs the paper's GPU and batch and is not measured here. "
             "See `mambapro/complexity.py`.", ""]
    for table in TABLES_WITH_COMPLEXITY:
        sel = [r for r in rows if r["table"] == table]
        if not sel:
            continue
        lines += [f"## {table.replace('table', 'Table ')}", "",
                  "| Row | Preset | Quantity | Paper | Ours | Difference | Note |", "|---|---|---|---|---|---|---|"]
        for r in sel:
            lines.append(f"| {r['row']} | {r['preset']} | {r['quantity']} ({r['unit']}) | {r['paper']:.2f} | "
                         f"{r['ours']:.2f} | {r['difference']:+.2f} | {r['note']} |")
        lines.append("")
    return "\n".join(lines)


def write_tables(out: str | Path, tables: tuple[str, ...] = TABLES_WITH_COMPLEXITY) -> list[dict]:
    """Compute the rows of ``tables`` and write ``complexity.csv`` and ``complexity.md`` under ``out``."""
    rows = complexity_rows(tables)
    out = Path(out)
    write_text(out / "complexity.csv", to_csv(rows))
    write_text(out / "complexity.md", to_markdown(rows))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results", help="folder for complexity.csv and complexity.md")
    parser.add_argument("--tables", nargs="+", choices=TABLES_WITH_COMPLEXITY, default=list(TABLES_WITH_COMPLEXITY),
                        help="paper tables to compute (default: all)")
    args = parser.parse_args(argv)
    rows = write_tables(args.out, tuple(args.tables))
    print(f"wrote {len(rows)} rows to {Path(args.out) / 'complexity.csv'} and complexity.md")


if __name__ == "__main__":
    main()
