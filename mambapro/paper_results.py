"""The paper's reported numbers (Tables 1-12 of paper.md), transcribed as plain data, each with its source.

Values are as printed (percent for mAP / Rank-k, GB for memory, M for parameters, G for FLOPs); "-" in the paper is
``None``; the paper's bold / underline marks are dropped.  Column keys: ``mAP``, ``R1``, ``R5``, ``R10``,
``mem_GB``, ``params_M``, ``flops_G``; tables spanning datasets prefix them (``"RGBNT100/mAP"``).  Row labels of the
ablation tables are exactly those of :data:`mambapro.config.TABLES`, so a run and its paper row share a key.
Method symbols as in the paper: ``*`` ViT-based, ``‡`` CLIP-based, none CNN-based.  This module is the only place
of the paper's numbers: the complexity table (:mod:`mambapro.complexity`) reads ``params_M`` / ``flops_G`` here.
"""

from __future__ import annotations

from dataclasses import dataclass

Value = float | str | None


@dataclass(frozen=True)
class PaperTable:
    """One table of the paper: ``rows`` are (label, values in ``columns`` order), as printed."""

    name: str
    source: str
    caption: str
    dataset: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, tuple[Value, ...]], ...]

    def __post_init__(self):
        for label, values in self.rows:
            if len(values) != len(self.columns):
                raise ValueError(f"{self.source}, row {label!r}: {len(values)} values for columns {self.columns}")

    @property
    def labels(self) -> list[str]:
        return [label for label, _ in self.rows]

    def row(self, label: str) -> dict[str, Value]:
        """The row ``label`` as {column: value}; an unknown label lists the valid ones."""
        for name, values in self.rows:
            if name == label:
                return dict(zip(self.columns, values))
        raise KeyError(f"{self.source} has no row {label!r}; rows: {', '.join(self.labels)}")

    def value(self, label: str, column: str) -> Value:
        row = self.row(label)
        if column not in row:
            raise KeyError(f"{self.source} has no column {column!r}; columns: {', '.join(self.columns)}")
        return row[column]


_RANKS = ("mAP", "R1", "R5", "R10")
_NA = None

TABLE1 = PaperTable(
    "table1", "paper.md Table 1", "Performance comparison on RGBNT201.", "RGBNT201", _RANKS,
    (
        ("MUDeep (Qian et al. 2017)", (23.8, 19.7, 33.1, 44.3)),
        ("PCB (Sun et al. 2018)", (32.8, 28.1, 37.4, 46.9)),
        ("OSNet (Zhou et al. 2019)", (25.4, 22.3, 35.1, 44.7)),
        ("CAL (Rao et al. 2021)", (27.6, 24.3, 36.5, 45.7)),
        ("HAMNet (Li et al. 2020)", (27.7, 26.3, 41.5, 51.7)),
        ("PFNet (Zheng et al. 2021)", (38.5, 38.9, 52.0, 58.4)),
        ("IEEE (Wang et al. 2022)", (49.5, 48.4, 59.1, 65.6)),
        ("DENet (Zheng et al. 2023)", (42.4, 42.2, 55.3, 64.5)),
        ("LRMM (Wu et al. 2025)", (52.3, 53.4, 64.6, 73.2)),
        ("UniCat* (Crawford et al. 2023)", (57.0, 55.7, _NA, _NA)),
        ("HTT* (Wang et al. 2024b)", (71.1, 73.4, 83.1, 87.3)),
        ("TOP-ReID* (Wang et al. 2023)", (72.3, 76.6, 84.7, 89.4)),
        ("EDITOR* (Zhang et al. 2024)", (66.5, 68.3, 81.1, 88.2)),
        ("RSCNet* (Yu et al. 2024b)", (68.2, 72.5, _NA, _NA)),
        ("MambaPro ‡", (78.9, 83.4, 89.8, 91.9)),
    ),
)

TABLE2 = PaperTable(
    "table2", "paper.md Table 2", "Performance on RGBNT100 and MSVR310.", "RGBNT100, MSVR310",
    ("RGBNT100/mAP", "RGBNT100/R1", "MSVR310/mAP", "MSVR310/R1"),
    (
        ("PCB (Sun et al. 2018)", (57.2, 83.5, 23.2, 42.9)),
        ("BoT (Luo et al. 2019)", (78.0, 95.1, 23.5, 38.4)),
        ("OSNet (Zhou et al. 2019)", (75.0, 95.6, 28.7, 44.8)),
        ("TransReID* (He et al. 2021)", (75.6, 92.9, 18.4, 29.6)),
        ("HAMNet (Li et al. 2020)", (74.5, 93.3, 27.1, 42.3)),
        ("PFNet (Zheng et al. 2021)", (68.1, 94.1, 23.5, 37.4)),
        ("GAFNet (Guo et al. 2022)", (74.4, 93.4, _NA, _NA)),
        ("GPFNet (He et al. 2023)", (75.0, 94.5, _NA, _NA)),
        ("CCNet (Zheng et al. 2022)", (77.2, 96.3, 36.4, 55.2)),
        ("LRMM (Wu et al. 2025)", (78.6, 96.7, 36.7, 49.7)),
        ("GraFT* (Yin et al. 2023)", (76.6, 94.3, _NA, _NA)),
        ("PHT* (Pan et al. 2023)", (79.9, 92.7, _NA, _NA)),
        ("UniCat* (Crawford et al. 2023)", (79.4, 96.2, _NA, _NA)),
        ("HTT* (Wang et al. 2024b)", (75.7, 92.6, _NA, _NA)),
        ("TOP-ReID* (Wang et al. 2023)", (81.2, 96.4, 35.9, 44.6)),
        ("EDITOR* (Zhang et al. 2024)", (82.1, 96.4, 39.0, 49.3)),
        ("RSCNet* (Yu et al. 2024b)", (82.3, 96.6, 39.5, 49.6)),
        ("MambaPro ‡", (83.9, 94.7, 47.0, 56.5)),
    ),
)

_KEY_COMPONENTS = (*_RANKS, "mem_GB", "params_M")

TABLE3 = PaperTable(
    "table3", "paper.md Table 3", "Performance comparison with key components (A: CLIP(L); B: CLIP(F); C: + PFA; "
    "D: + SRP; E: + PFA + SRP; F: + PFA + SRP + MA; G: CLIP(F) + PFA + SRP + MA).", "RGBNT201", _KEY_COMPONENTS,
    (
        ("A", (3.3, 2.8, 7.4, 11.1, 12.79, 0.0)),
        ("B", (69.4, 71.5, 81.8, 87.4, 16.85, 86.14)),
        ("C", (73.2, 76.4, 85.2, 88.2, 15.96, 28.34)),
        ("D", (71.3, 74.5, 83.4, 87.9, 13.82, 28.48)),
        ("E", (74.4, 77.6, 87.4, 90.3, 17.79, 56.82)),
        ("F", (78.9, 83.4, 89.8, 91.9, 20.89, 74.20)),
        ("G", (78.7, 83.5, 89.6, 92.9, 25.22, 160.34)),
    ),
)

TABLE4 = PaperTable(
    "table4", "paper.md Table 4", "Comparison with different prompt mechanisms (prompt complexity: one layer).",
    "RGBNT201", (*_RANKS, "flops_G", "params_M"),
    (
        ("CLIP(L) + IP", (64.7, 65.9, 77.3, 82.9, 0.09, 0.01)),
        ("CLIP(L) + SP", (68.9, 70.7, 80.9, 85.2, 0.28, 1.78)),
        ("CLIP(L) + SRP(Separation)", (70.1, 72.3, 82.1, 86.7, 0.29, 3.55)),
        ("CLIP(L) + SRP(Fusion)", (71.3, 74.5, 83.4, 87.9, 0.29, 2.37)),
    ),
)

TABLE5 = PaperTable(
    "table5", "paper.md Table 5", "Comparison with different adapters (adapter complexity: one layer).", "RGBNT201",
    (*_RANKS, "flops_G", "params_M"),
    (
        ("CLIP(L) + LoRA-r(64)", (54.5, 55.3, 68.1, 76.1, 0.01, 0.10)),
        ("CLIP(L) + LoRA-r(256)", (55.7, 56.9, 69.7, 77.3, 0.05, 0.39)),
        ("CLIP(L) + LoRA-r(384)", (47.2, 47.1, 62.2, 69.1, 0.08, 0.60)),
        ("CLIP(L) + BNA", (68.5, 69.4, 79.1, 84.0, 0.08, 0.60)),
        ("CLIP(L) + PFA", (73.2, 76.4, 85.2, 88.2, 0.30, 2.36)),
    ),
)

TABLE6 = PaperTable(
    "table6", "paper.md Table 6", "Performance with different aggregation methods (aggregation complexity: one "
    "block plus the reductions).", "RGBNT201", (*_RANKS, "flops_G", "params_M"),
    (
        ("Sum", (75.3, 79.4, 87.2, 89.4, 0.01, 1.58)),
        ("Concat", (74.3, 75.6, 84.9, 88.9, 0.10, 2.37)),
        ("Transformer", (76.5, 80.2, 87.7, 90.6, 1.36, 4.73)),
        ("Intra-MA", (76.2, 80.9, 88.2, 90.5, 0.71, 5.64)),
        ("Inter-MA", (77.5, 81.2, 88.6, 90.9, 0.71, 5.41)),
        ("MA", (78.9, 83.4, 89.8, 91.9, 1.42, 9.47)),
    ),
)

TABLE7 = PaperTable(
    "table7", "paper.md Table 7", "Parameter comparison (trainable parameters).", "RGBNT201, RGBNT100, MSVR310",
    ("params_M", "RGBNT201/mAP", "RGBNT201/R1", "RGBNT100/mAP", "RGBNT100/R1", "MSVR310/mAP", "MSVR310/R1"),
    (
        ("MUDeep (Qian et al. 2017)", (77.75, 23.8, 19.7, _NA, _NA, _NA, _NA)),
        ("HACNN (Li, Zhu, and Gong 2018)", (10.50, 21.3, 19.0, _NA, _NA, _NA, _NA)),
        ("MLFN (Chang, Hospedales, and Xiang 2018)", (95.57, 26.1, 24.2, _NA, _NA, _NA, _NA)),
        ("CAL (Rao et al. 2021)", (97.62, 27.6, 24.3, _NA, _NA, _NA, _NA)),
        ("PCB (Sun et al. 2018)", (72.33, 32.8, 28.1, 57.2, 83.5, 23.2, 42.9)),
        ("OSNet (Zhou et al. 2019)", (7.02, 25.4, 22.3, 75.0, 95.6, 28.7, 44.8)),
        ("HAMNet (Li et al. 2020)", (78.00, 27.7, 26.3, 74.5, 93.3, 27.1, 42.3)),
        ("CCNet (Zheng et al. 2022)", (74.60, _NA, _NA, 77.2, 96.3, 36.4, 55.2)),
        ("IEEE (Wang et al. 2022)", (109.22, 49.5, 48.4, _NA, _NA, _NA, _NA)),
        ("GAFNet (Guo et al. 2022)", (130.00, _NA, _NA, 74.4, 93.4, _NA, _NA)),
        ("LRMM (Wu et al. 2025)", (86.40, 52.3, 51.1, 78.6, 96.7, 36.7, 49.7)),
        ("TransReID* (He et al. 2021)", (278.23, _NA, _NA, 75.6, 92.9, 18.4, 29.6)),
        ("UniCat* (Crawford et al. 2023)", (259.02, 57.0, 55.7, 79.4, 96.2, _NA, _NA)),
        ("GraFT* (Yin et al. 2023)", (101.00, _NA, _NA, 76.6, 94.3, _NA, _NA)),
        ("TOP-ReID* (Wang et al. 2023)", (324.53, 72.3, 76.6, 81.2, 96.4, 35.9, 44.6)),
        ("EDITOR* (Zhang et al. 2024)", (118.55, 66.5, 68.3, 82.1, 96.4, 39.0, 49.3)),
        ("RSCNet* (Yu et al. 2024b)", (124.10, 68.2, 72.5, 82.3, 96.6, 39.5, 49.6)),
        ("MambaPro ‡", (74.20, 78.9, 83.4, 83.9, 94.7, 47.0, 56.5)),
    ),
)

TABLE8 = PaperTable(
    "table8", "paper.md Table 8", "Comparison with different positions of PFA.", "RGBNT201", _RANKS,
    (
        ("Side (FFN)", (73.2, 76.4, 85.2, 88.2)),
        ("Behind (FFN)", (46.9, 46.2, 63.4, 72.7)),
        ("Side (MHSA)", (66.3, 67.2, 79.7, 84.2)),
        ("Behind (MHSA)", (52.0, 52.3, 66.4, 72.8)),
    ),
)

TABLE9 = PaperTable(
    "table9", "paper.md Table 9", "Comparison with different pre-trained backbones.", "RGBNT201", _RANKS,
    (
        ("ViT (L)", (67.5, 71.3, 82.1, 88.6)),
        ("ViT (F)", (67.6, 70.2, 83.1, 87.4)),
        ("CLIP (L)", (78.9, 83.4, 89.8, 91.9)),
        ("CLIP (F)", (78.7, 83.5, 89.6, 92.9)),
    ),
)

TABLE10 = PaperTable(
    "table10", "paper.md Table 10", "Comparison with CLIP-based TOP-ReID (both fully fine-tuned).", "RGBNT201",
    ("params_M", "pretrained", *_RANKS),
    (
        ("TOP-ReID", (324.53, "CLIP", 73.3, 77.2, 85.9, 90.1)),
        ("MambaPro", (160.34, "CLIP", 78.7, 83.5, 89.6, 92.9)),
    ),
)

TABLE11 = PaperTable(
    "table11", "paper.md Table 11", "Performance with different aggregation methods (aggregation complexity).",
    "RGBNT201", (*_RANKS, "flops_G", "params_M"),
    (
        ("MA(Trans)", (77.0, 80.4, 88.4, 90.9, 1.81, 14.19)),
        ("MA(Mamba)", (78.9, 83.4, 89.8, 91.9, 1.42, 9.47)),
    ),
)

TABLE12 = PaperTable(
    "table12", "paper.md Table 12", "Performance comparison with key components on RGBNT100 (memory at batch 128).",
    "RGBNT100", _KEY_COMPONENTS,
    (
        ("A", (17.9, 40.9, 50.5, 56.0, 21.79, 0.0)),
        ("B", (80.7, 93.5, 96.2, 96.7, 28.73, 86.14)),
        ("C", (81.6, 93.9, 95.0, 95.6, 28.21, 28.34)),
        ("D", (79.1, 92.9, 94.2, 94.9, 24.65, 28.48)),
        ("E", (82.0, 94.0, 95.3, 95.8, 32.05, 56.82)),
        ("F", (83.9, 94.7, 94.9, 95.3, 38.01, 74.20)),
        ("G", (83.1, 94.1, 94.9, 95.6, 45.36, 160.34)),
    ),
)

PAPER_TABLES: dict[str, PaperTable] = {
    t.name: t for t in (TABLE1, TABLE2, TABLE3, TABLE4, TABLE5, TABLE6, TABLE7, TABLE8, TABLE9, TABLE10, TABLE11,
                        TABLE12)
}


def paper_table(name: str) -> PaperTable:
    """Table ``name`` ("table1" ... "table12"); an unknown name lists the valid ones."""
    if name not in PAPER_TABLES:
        raise KeyError(f"no paper table {name!r}; tables: {', '.join(PAPER_TABLES)}")
    return PAPER_TABLES[name]

