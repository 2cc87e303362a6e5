"""The embedded default's data: a deterministic synthetic RGB / NIR / TIR re-identification benchmark written in
the real datasets' layouts (official-implementation.md sec. 3.1), so the real readers load it unchanged.

    python -m mambapro.data.synthetic --out data/synthetic --seed 0 [--size default|tiny] [--force]

writes ``<out>/RGBNT201/`` (persons), ``<out>/RGBNT100/rgbir/`` and ``<out>/msvr310/`` (vehicles),
``<out>/pretrain/{train,val}/`` (captioned RGB images of other identities, for the proxy CLIP pre-training) and
``<out>/summary.json`` (sizes and the complementarity fractions below).

Identities are tuples of discrete attributes spread over the modalities so that fusion is needed: RGB carries colours
(and degrades under low light and glare), NIR carries material and pattern reflectance (independent of colour and of
the light), TIR carries a blurred heat layout (independent of both).  A few attributes are shared (a person's bag, a
vehicle's type).  Identities are drawn without replacement from the joint attribute space, so the three modalities
together tell every identity apart, while each single modality's attribute tuple is shared by several identities;
``summary.json`` reports the fraction of identities whose tuple is unique per modality.  Cameras (and MSVR310's
scenes) vary illumination, glare, viewpoint, scale, occlusion and background.  Each object kind has its module:
``synthetic_person.py`` and ``synthetic_vehicle.py`` (attributes, cameras, rendering), drawn with the shapes and
cameras of ``synthetic_scene.py``; this module draws the identities, writes the datasets and reads them back.

Determinism: numpy ``Generator`` draws (integers and uniforms only), elementwise arithmetic and comparisons (no
transcendental functions or float reductions, whose last bits may depend on the CPU's SIMD level), PIL's integer
Gaussian blur and baseline JPEG at a fixed quality, no metadata.  One generator per image, keyed by (seed, dataset,
image number).  The output is generated in a temporary folder and renamed into place at the end.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image

from mambapro.data.readers import DataError
from mambapro.data.synthetic_person import (
    PERSON_CAMERAS,
    PERSON_HW,
    PERSON_VISIBLE,
    PERSON_VOCAB,
    person_caption,
    render_person,
)
from mambapro.data.synthetic_scene import MODS, Camera
from mambapro.data.synthetic_vehicle import (
    MSVR_HW,
    RGBNT100_HW,
    VEHICLE_CAMERAS,
    VEHICLE_VISIBLE,
    VEHICLE_VOCAB,
    render_vehicle,
    vehicle_caption,
)

__all__ = [
    "PERSON_VISIBLE",
    "PERSON_VOCAB",
    "SIZES",
    "VEHICLE_VISIBLE",
    "VEHICLE_VOCAB",
    "SyntheticSizes",
    "attribute_oracle",
    "generate",
    "read_caption_set",
    "render_person",
    "render_vehicle",
    "unique_fractions",
]

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
JPEG_QUALITY = 90


# --------------------------------------------------------------------------------------------------------------
# Sizes (the attributes, cameras and drawing of each object kind: synthetic_person.py, synthetic_vehicle.py and
# synthetic_scene.py)


@dataclass(frozen=True)
class SyntheticSizes:
    """Identities and images per dataset.  ``per_id`` counts samples (triplets); for the vehicle sets' test ids
    ``query_per_id`` of them go to the query folder."""

    person_train_ids: int = 40
    person_test_ids: int = 240
    person_per_id: int = 8
    vehicle_train_ids: int = 40
    vehicle_test_ids: int = 250
    vehicle_per_id: int = 10
    msvr_train_ids: int = 20
    msvr_test_ids: int = 10
    msvr_scenes_per_id: int = 3
    msvr_per_scene: int = 3
    query_per_id: int = 2
    pretrain_person_ids: int = 160
    pretrain_vehicle_ids: int = 160
    pretrain_per_id: int = 4
    pretrain_val_fraction: float = 0.2


SIZES = {
    "default": SyntheticSizes(),
    "tiny": SyntheticSizes(person_train_ids=6, person_test_ids=4, person_per_id=4, vehicle_train_ids=6,
                           vehicle_test_ids=4, vehicle_per_id=5, msvr_train_ids=4, msvr_test_ids=3,
                           msvr_scenes_per_id=2, msvr_per_scene=2, pretrain_person_ids=10, pretrain_vehicle_ids=10,
                           pretrain_per_id=2),
}

# --------------------------------------------------------------------------------------------------------------
# Identities


def _tuple(attrs: dict[str, str], keys) -> tuple[str, ...]:
    return tuple(attrs[k] for k in keys)


def unique_fractions(identities: list[dict[str, str]], visible: dict[str, tuple[str, ...]]) -> dict[str, float]:
    """Fraction of identities whose attribute tuple is unique, for each modality and each combination of them."""
    out = {}
    for r in (1, 2, 3):
        for combo in combinations(MODS, r):
            keys = sorted({k for m in combo for k in visible[m]})
            tuples = [_tuple(a, keys) for a in identities]
            counts = {t: tuples.count(t) for t in set(tuples)}
            out["+".join(combo)] = sum(counts[t] == 1 for t in tuples) / max(1, len(tuples))
    return out


def _draw_identities(rng: np.random.Generator, vocab, n: int, taken: set) -> list[dict[str, str]]:
    out = []
    keys = list(vocab)
    while len(out) < n:
        attrs = {k: vocab[k][int(rng.integers(0, len(vocab[k])))] for k in keys}
        t = _tuple(attrs, keys)
        if t not in taken:
            taken.add(t)
            out.append(attrs)
    return out


def _force_collisions(ids: list[dict[str, str]], vocab, visible, taken: set) -> None:
    """Make sure no single modality tells every identity of ``ids`` apart: where one does, give one identity the
    modality's attributes of another (keeping the joint tuples distinct).  Rarely needed beyond tiny sizes."""
    keys = list(vocab)
    for _ in range(20):
        changed = False
        for m in MODS:
            fr = unique_fractions(ids, visible)[m]
            if len(ids) < 2 or fr < 1.0:
                continue
            for i, j in combinations(range(len(ids)), 2):
                new = dict(ids[j], **{k: ids[i][k] for k in visible[m]})
                t = _tuple(new, keys)
                if t not in taken:
                    taken.discard(_tuple(ids[j], keys))
                    taken.add(t)
                    ids[j] = new
                    changed = True
                    break
        if not changed:
            return
    raise RuntimeError("could not make every single modality ambiguous; use more identities")


# --------------------------------------------------------------------------------------------------------------
# Writing


def _jpeg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=2, optimize=False,
                                          progressive=False)
    return buf.getvalue()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


class _CameraCycle:
    """Cameras handed out round-robin from a random start: every camera of a split is used (once it has at least
    k images) and about equally often, and any k consecutive images come from k different cameras."""

    def __init__(self, rng: np.random.Generator, k: int):
        self.rng, self.k, self.next = rng, k, int(rng.integers(0, k))

    def take(self, n: int, shuffle: bool = True) -> list[int]:
        cams = [(self.next + t) % self.k for t in range(n)]
        self.next += n
        return [cams[i] for i in self.rng.permutation(n)] if shuffle else sorted(cams)


def _pids(rng: np.random.Generator, n: int, low: int, high: int) -> list[int]:
    return sorted(int(p) for p in rng.choice(np.arange(low, high + 1), size=n, replace=False))


def _labelled(train_ids, train_pids, test_ids, test_pids) -> dict[str, list[dict]]:
    """Identities with their raw ids, as written to summary.json (the benchmark's ground truth)."""
    return {"train": [{"pid": p, **a} for p, a in zip(train_pids, train_ids)],
            "test": [{"pid": p, **a} for p, a in zip(test_pids, test_ids)]}


def _split_stats(records: list[tuple[int, int, int]]) -> dict[str, int]:
    return {"ids": len({r[0] for r in records}), "images": len(records), "cameras": len({r[1] for r in records}),
            "scenes": len({r[2] for r in records if r[2] >= 0})}


def _split_identities(rng: np.random.Generator, vocab, visible, n_train: int, n_test: int, taken: set,
                      id_high: int) -> tuple[list, list, list[int], list[int]]:
    """Train and test identities (disjoint attribute tuples) and their sorted raw ids, drawn from 1..id_high."""
    train_ids = _draw_identities(rng, vocab, n_train, taken)
    test_ids = _draw_identities(rng, vocab, n_test, taken)
    _force_collisions(train_ids, vocab, visible, taken)
    _force_collisions(test_ids, vocab, visible, taken)
    pids = _pids(rng, len(train_ids) + len(test_ids), 1, id_high)
    order = rng.permutation(len(pids))
    return (train_ids, test_ids, sorted(pids[i] for i in order[: len(train_ids)]),
            sorted(pids[i] for i in order[len(train_ids):]))


def _make_rgbnt201(out: Path, seed: int, sz: SyntheticSizes, taken: set) -> dict:
    rng = np.random.default_rng([seed, 201])
    train_ids, test_ids, train_pids, test_pids = _split_identities(
        rng, PERSON_VOCAB, PERSON_VISIBLE, sz.person_train_ids, sz.person_test_ids, taken, 999)
    stats, serial = {}, 0
    for split, folder, ids, raw in (("train", "train_171", train_ids, train_pids),
                                    ("test", "test", test_ids, test_pids)):
        recs = []
        cycle = _CameraCycle(rng, len(PERSON_CAMERAS))
        for attrs, pid in zip(ids, raw):
            for k, cam in enumerate(cycle.take(sz.person_per_id)):
                serial += 1
                img = render_person(attrs, PERSON_CAMERAS[cam], np.random.default_rng([seed, 201, serial]), seed)
                name = f"{pid:06d}_cam{cam + 1}_{k:04d}.jpg"
                for m in MODS:
                    _write(out / "RGBNT201" / folder / m / name, _jpeg(img[m]))
                recs.append((pid, cam, -1))
        stats[split] = _split_stats(recs)
    return {"splits": {"train": stats["train"], "query": stats["test"], "gallery": stats["test"]},
            "image_size_hw": list(PERSON_HW), "identities": _labelled(train_ids, train_pids, test_ids, test_pids),
            "visible": PERSON_VISIBLE}


def _make_rgbnt100(out: Path, seed: int, sz: SyntheticSizes, taken: set) -> dict:
    rng = np.random.default_rng([seed, 100])
    train_ids, test_ids, train_pids, test_pids = _split_identities(
        rng, VEHICLE_VOCAB, VEHICLE_VISIBLE, sz.vehicle_train_ids, sz.vehicle_test_ids, taken, 600)
    recs = {"train": [], "query": [], "gallery": []}
    serial = 0
    base = out / "RGBNT100" / "rgbir"
    for split, ids, raw in (("train", train_ids, train_pids), ("test", test_ids, test_pids)):
        cycle = _CameraCycle(rng, len(VEHICLE_CAMERAS))
        for attrs, pid in zip(ids, raw):
            cams = cycle.take(sz.vehicle_per_id)
            for k, cam in enumerate(cams):
                serial += 1
                img = render_vehicle(attrs, VEHICLE_CAMERAS[cam], np.random.default_rng([seed, 100, serial]), seed)
                strip = np.concatenate([img[m] for m in MODS], axis=1)  # RGB | NI | TI, 768 x 128
                if split == "train":
                    target = "train"
                else:  # the first query_per_id go to the query folder (the rest of the id spans >= 2 cameras)
                    target = "query" if k < sz.query_per_id else "gallery"
                folder = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}[target]
                _write(base / folder / f"{pid:04d}_c{cam + 1}_{serial:05d}.jpg", _jpeg(strip))
                recs[target].append((pid, cam, -1))
    return {"splits": {k: _split_stats(v) for k, v in recs.items()}, "image_size_hw": list(RGBNT100_HW),
            "identities": _labelled(train_ids, train_pids, test_ids, test_pids), "visible": VEHICLE_VISIBLE}


def _make_msvr310(out: Path, seed: int, sz: SyntheticSizes, taken: set) -> dict:
    rng = np.random.default_rng([seed, 310])
    train_ids, test_ids, train_vids, test_vids = _split_identities(
        rng, VEHICLE_VOCAB, VEHICLE_VISIBLE, sz.msvr_train_ids, sz.msvr_test_ids, taken, 9999)
    recs = {"train": [], "query": [], "gallery": []}
    serial, scene_no = 0, 0
    for split, ids, raw in (("train", train_ids, train_vids), ("test", test_ids, test_vids)):
        cycle = _CameraCycle(rng, len(VEHICLE_CAMERAS))
        for attrs, vid in zip(ids, raw):
            k = 0
            for s in range(sz.msvr_scenes_per_id):
                scene_no += 1
                scene_light = 0.15 + 0.85 * rng.random()  # the scene (time of day) sets the light
                scene_glare = 0.5 * (1.0 - scene_light)
                for cam in cycle.take(sz.msvr_per_scene, shuffle=False):
                    serial += 1
                    img = render_vehicle(attrs, VEHICLE_CAMERAS[cam], np.random.default_rng([seed, 310, serial]),
                                         seed, hw=MSVR_HW, light=scene_light, glare_prob=scene_glare)
                    if split == "train":
                        target = "train"
                    else:  # queries come from the id's first scene; its other scenes keep the gallery valid
                        target = "query" if s == 0 and k < sz.query_per_id else "gallery"
                    folder = MSVR_FOLDERS[target]
                    name = f"{vid:04d}_s{scene_no:03d}_v{cam}_{k:03d}.jpg"
                    for m, sub in zip(MODS, ("vis", "ni", "th")):
                        _write(out / "msvr310" / folder / f"{vid:04d}" / sub / name, _jpeg(img[m]))
                    recs[target].append((vid, cam, scene_no))
                    k += 1
    return {"splits": {k: _split_stats(v) for k, v in recs.items()}, "image_size_hw": list(MSVR_HW),
            "identities": _labelled(train_ids, train_vids, test_ids, test_vids), "visible": VEHICLE_VISIBLE}


MSVR_FOLDERS = {"train": "bounding_box_train", "query": "query3", "gallery": "bounding_box_test"}
CAPTION_COLUMNS = ("file", "caption", "domain", "colour", "lower_colour", "shape", "bag", "view")


def _make_pretrain(out: Path, seed: int, sz: SyntheticSizes, taken_p: set, taken_v: set) -> dict:
    """RGB images of identities disjoint from the ReID sets, with coarse attribute captions (no identity)."""
    rng = np.random.default_rng([seed, 999])
    people = _draw_identities(rng, PERSON_VOCAB, sz.pretrain_person_ids, taken_p)
    vehicles = _draw_identities(rng, VEHICLE_VOCAB, sz.pretrain_vehicle_ids, taken_v)
    rows = {"train": [], "val": []}
    serial = 0
    for domain, ids in (("person", people), ("vehicle", vehicles)):
        n_val = max(1, int(round(len(ids) * sz.pretrain_val_fraction)))
        for i, attrs in enumerate(ids):
            split = "val" if i >= len(ids) - n_val else "train"
            for _ in range(sz.pretrain_per_id):
                serial += 1
                r = np.random.default_rng([seed, 999, serial])
                if domain == "person":
                    cam = PERSON_CAMERAS[int(r.integers(0, len(PERSON_CAMERAS)))]
                    img = render_person(attrs, cam, r, seed, modalities=("RGB",))["RGB"]
                    row = {"caption": person_caption(attrs), "colour": attrs["top_colour"],
                           "lower_colour": attrs["bottom_colour"], "shape": "person", "bag": attrs["bag"],
                           "view": "n/a"}
                else:
                    view = "side" if r.random() < 0.5 else "front"
                    probs = (0.5, 0.5, 0.0, 0.0) if view == "side" else (0.0, 0.0, 0.5, 0.5)
                    base = VEHICLE_CAMERAS[int(r.integers(0, len(VEHICLE_CAMERAS)))]
                    cam = Camera(base.light, base.glare, probs, base.scale, base.occlusion, base.background)
                    img = render_vehicle(attrs, cam, r, seed, hw=MSVR_HW, modalities=("RGB",))["RGB"]
                    row = {"caption": vehicle_caption(attrs, view), "colour": attrs["colour"], "lower_colour": "n/a",
                           "shape": attrs["type"], "bag": "n/a", "view": view}
                name = f"{domain}_{serial:05d}.jpg"
                _write(out / "pretrain" / split / name, _jpeg(img))
                rows[split].append({"file": name, "domain": domain, **row})
    n_val = {d: max(1, int(round(len(ids) * sz.pretrain_val_fraction))) for d, ids in (("person", people),
                                                                                     ("vehicle", vehicles))}
    identities = {d: {"train": ids[: len(ids) - n_val[d]], "val": ids[len(ids) - n_val[d]:]}
                  for d, ids in (("person", people), ("vehicle", vehicles))}
    for split, rs in rows.items():
        buf = io.StringIO()
        wr = csv.DictWriter(buf, fieldnames=CAPTION_COLUMNS, lineterminator="\n")
        wr.writeheader()
        wr.writerows(rs)
        _write(out / "pretrain" / split / "captions.csv", buf.getvalue().encode())
    out = {split: {"images": len(rs), "persons": sum(r["domain"] == "person" for r in rs),
                   "vehicles": sum(r["domain"] == "vehicle" for r in rs),
                   "distinct_captions": len({r["caption"] for r in rs})} for split, rs in rows.items()}
    out["identities"] = identities
    return out


def _tree_digest(root: Path) -> str:
    """SHA-256 over every file's relative path and content."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file():
            h.update(rel.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def _build(out: Path, seed: int, size: str) -> dict:
    sz = SIZES[size]
    taken_p, taken_v = set(), set()
    datasets = {
        "RGBNT201": _make_rgbnt201(out, seed, sz, taken_p),
        "RGBNT100": _make_rgbnt100(out, seed, sz, taken_v),
        "MSVR310": _make_msvr310(out, seed, sz, taken_v),
    }
    for d in datasets.values():
        ids = d["identities"]
        vis = d.pop("visible")
        d["visible_attributes"] = {m: list(k) for m, k in vis.items()}
        d["unique_fraction"] = {"all": unique_fractions(ids["train"] + ids["test"], vis),
                                "train": unique_fractions(ids["train"], vis),
                                "test": unique_fractions(ids["test"], vis)}
    summary = {
        "generator": "mambapro.data.synthetic",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "size": size,
        "sizes": asdict(sz),
        "datasets": datasets,
        "pretrain": _make_pretrain(out, seed, sz, taken_p, taken_v),
        "vocabulary": {"person": {k: list(v) for k, v in PERSON_VOCAB.items()},
                       "vehicle": {k: list(v) for k, v in VEHICLE_VOCAB.items()}},
    }
    summary["content_sha256"] = _tree_digest(out)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def generate(out: str | Path, seed: int = 0, size: str = "default", force: bool = False) -> dict:
    """Write the benchmark to ``out`` (atomically) and return its summary.  An existing non-empty ``out`` that
    differs from what this seed and size produce is refused unless ``force``; an identical one is left as it is."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; valid: {', '.join(SIZES)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        summary = _build(tmp, seed, size)
        if out.exists() and any(out.iterdir()):
            if _tree_digest(out) == _tree_digest(tmp):
                log.info("%s is already up to date", out)
                return summary
            if not force:
                raise FileExistsError(f"{out} exists, is not empty and differs from the benchmark of seed {seed}, "
                                      f"size {size!r}; pass --force (force=True) to replace it")
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            if out.exists():
                out.rmdir()
            tmp.rename(out)
        return summary
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


# --------------------------------------------------------------------------------------------------------------
# Reading the caption set


def read_caption_set(root: str | Path, split: str, domain: str | None = None) -> list[dict]:
    """Records of ``<root>/pretrain/<split>/captions.csv``: {"path", "file", "caption", "domain", "attributes"}
    where "attributes" maps each attribute column (colour, lower_colour, shape, bag, view; "n/a" where the caption
    says nothing) to its value.  ``domain`` ("person" / "vehicle") keeps one kind only."""
    folder = Path(root) / "pretrain" / split
    table = folder / "captions.csv"
    if not table.is_file():
        raise DataError(f"caption table not found: {table}")
    with table.open(newline="") as f:
        reader = csv.DictReader(f)
        missing_cols = [c for c in CAPTION_COLUMNS if c not in (reader.fieldnames or [])]
        if missing_cols:
            raise DataError(f"{table}: missing column(s) {missing_cols}")
        rows = list(reader)
    records, missing = [], []
    for row in rows:
        if domain is not None and row["domain"] != domain:
            continue
        path = folder / row["file"]
        if not path.is_file():
            missing.append(str(path))
        records.append({"path": str(path), "file": row["file"], "caption": row["caption"], "domain": row["domain"],
                        "attributes": {c: row[c] for c in CAPTION_COLUMNS[3:]}})
    if missing:
        raise DataError(f"{table}: {len(missing)} listed image(s) missing: {', '.join(missing[:5])}")
    if not records:
        raise DataError(f"{table}: no records" + (f" of domain {domain!r}" if domain else ""))
    return records


# --------------------------------------------------------------------------------------------------------------
# Attribute oracle: what a perfect recogniser of some modalities' attributes would score


def attribute_oracle(root: str | Path, dataset: str, modalities=MODS, ties: str = "pessimistic",
                     draws: int = 20) -> dict[str, float]:
    """mAP / Rank-1 (percent) on the test split of a generated ``dataset`` for features that are exactly the
    identity's attribute tuple in ``modalities`` (distance 0 for the same tuple, 2 otherwise), under the dataset's
    protocol.  ``ties="pessimistic"`` ranks tied non-matches first (mambapro.metrics' rule); ``"random"`` averages
    ``draws`` random tie orders.  A ceiling for models that see only those modalities."""
    from mambapro.data.loaders import test_order
    from mambapro.data.readers import read_dataset
    from mambapro.metrics import evaluate_rank

    root = Path(root)
    summary = json.loads((root / "summary.json").read_text())
    info = summary["datasets"][dataset]
    by_pid = {i["pid"]: i for i in info["identities"]["test"]}
    keys = sorted({k for m in modalities for k in info["visible_attributes"][m]})
    data = read_dataset(dataset, root)
    samples, q, g = test_order(data)
    codes = {}
    code = np.array([codes.setdefault(_tuple(by_pid[s.pid], keys), len(codes)) for s in samples])
    dist = np.where(code[q][:, None] == code[g][None, :], 0.0, 2.0)
    meta = {k: np.array([getattr(s, k) for s in samples]) for k in ("pid", "camid", "sceneid")}
    args = (meta["pid"][q], meta["pid"][g], meta["camid"][q], meta["camid"][g])
    kw = {"q_sceneids": meta["sceneid"][q], "g_sceneids": meta["sceneid"][g], "protocol": data.protocol}
    if ties == "pessimistic":
        runs = [evaluate_rank(dist, *args, **kw)]
    elif ties == "random":
        rng = np.random.default_rng(0)
        runs = [evaluate_rank(dist + 1e-3 * rng.random(dist.shape), *args, **kw) for _ in range(draws)]
    else:
        raise ValueError(f"ties must be 'pessimistic' or 'random', got {ties!r}")
    return {"mAP": 100 * float(np.mean([r[1] for r in runs])), "R1": 100 * float(np.mean([r[0][0] for r in runs]))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Generate the synthetic RGB/NIR/TIR ReID benchmark.")
    p.add_argument("--out", default="data/synthetic")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", default="default", choices=sorted(SIZES))
    p.add_argument("--force", action="store_true", help="replace a different existing output")
    p.add_argument("--oracle", action="store_true",
                   help="only print the attribute-oracle ceilings of the benchmark already in --out")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if a.oracle:
        logging.getLogger("mambapro.data.readers").setLevel(logging.WARNING)
        combos = [c for r in (1, 2, 3) for c in combinations(MODS, r)]
        print(f"{'dataset':<9} {'modalities':<10} {'mAP (pess.)':>11} {'R1 (pess.)':>10} {'mAP (rand.)':>11} "
              f"{'R1 (rand.)':>10}")
        for name in ("RGBNT201", "RGBNT100", "MSVR310"):
            for c in combos:
                pe = attribute_oracle(a.out, name, c)
                ra = attribute_oracle(a.out, name, c, ties="random")
                print(f"{name:<9} {'+'.join(c):<10} {pe['mAP']:11.1f} {pe['R1']:10.1f} {ra['mAP']:11.1f} "
                      f"{ra['R1']:10.1f}")
        return 0
    try:
        summary = generate(a.out, a.seed, a.size, a.force)
    except FileExistsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for name, d in summary["datasets"].items():
        uf = d["unique_fraction"]["all"]
        print(f"{name}: " + ", ".join(f"{s} {v['ids']} ids / {v['images']} images" for s, v in d["splits"].items())
              + f"; unique tuples RGB {uf['RGB']:.2f}, NI {uf['NI']:.2f}, TI {uf['TI']:.2f}, "
              f"all {uf['RGB+NI+TI']:.2f}")
    pre = summary["pretrain"]
    print("pretrain: " + ", ".join(f"{s} {pre[s]['images']} images ({pre[s]['distinct_captions']} distinct captions)"
                                   for s in ("train", "val")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
