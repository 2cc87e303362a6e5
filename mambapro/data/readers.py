"""Readers for RGBNT201, RGBNT100 and MSVR310 in their official layouts (official-implementation.md sec. 3.1).

Each reader lists the three splits, parses ids, cameras and scenes from the file names, relabels the training ids to
0..C-1 (sorted raw ids; test ids keep their raw values) and logs a summary like the official log table.  Bad input is
an error that names the path at fault; nothing is silently dropped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mambapro.config import MODALITIES
from mambapro.registry import DATASETS

__all__ = [
    "DATASETS",
    "RGBNT100_BOXES",
    "DataError",
    "ReIDDataset",
    "Sample",
    "is_vehicle",
    "load_images",
    "object_kind",
    "read_dataset",
    "read_msvr310",
    "read_rgbnt100",
    "read_rgbnt201",
    "verify_images",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
# RGBNT100: one file holds RGB | NI | TI side by side; PIL boxes (left, top, right, bottom), official bases.py:19-23
RGBNT100_BOXES = ((0, 0, 256, 128), (256, 0, 512, 128), (512, 0, 768, 128))
_RGBNT100_NAME = re.compile(r"([-\d]+)_c([-\d]+)")


class DataError(ValueError):
    """A dataset on disk that does not match its documented layout (the message names the path at fault)."""


@dataclass(frozen=True)
class Sample:
    """One multi-modal sample: a path per modality (RGB, NI, TI; the same file three times for RGBNT100, with
    ``boxes`` giving each modality's PIL crop box), the id, the camera and the scene (-1 where there is none)."""

    paths: tuple[str, str, str]
    pid: int
    camid: int
    sceneid: int = -1
    boxes: tuple[tuple[int, int, int, int], ...] | None = None


@dataclass
class ReIDDataset:
    """The three splits of one dataset.  For RGBNT201 ``query`` and ``gallery`` are the same list (the test set)."""

    name: str
    root: Path
    train: list[Sample]
    query: list[Sample]
    gallery: list[Sample]
    protocol: str  # "camera" (same pid and camid removed) or "scene" (same pid and sceneid removed), sec. 5
    pid_labels: dict[int, int] = field(default_factory=dict)  # raw training id -> label 0..C-1

    @property
    def num_classes(self) -> int:
        return len(self.pid_labels)

    @property
    def num_train_cameras(self) -> int:
        """Distinct training camids: the official ``camera_num`` (bases.py:51-65)."""
        return len({s.camid for s in self.train})

    @property
    def num_cameras(self) -> int:
        """Size of the camera-embedding table: ``num_train_cameras`` (official), widened to max camid + 1 (with a
        warning) if some split uses a camid the official count would not cover."""
        top = 1 + max(s.camid for split in (self.train, self.query, self.gallery) for s in split)
        if top > self.num_train_cameras:
            log.warning("%s: camids reach %d but the training split has %d distinct cameras; the camera table gets "
                        "%d entries", self.name, top - 1, self.num_train_cameras, top)
        return max(top, self.num_train_cameras)

    def summary(self) -> str:
        """The official log table: ids, images and cameras (and scenes, where there are) per split."""
        scenes = any(s.sceneid >= 0 for s in self.train)
        head = f"  {'subset':<8}| {'# ids':>6} | {'# images':>8} | {'# cameras':>9}"
        head += " | # scenes" if scenes else ""
        lines = [f"{self.name} statistics:", "  " + "-" * (len(head) - 2), head, "  " + "-" * (len(head) - 2)]
        for split, samples in (("train", self.train), ("query", self.query), ("gallery", self.gallery)):
            row = (f"  {split:<8}| {len({s.pid for s in samples}):>6} | {len(samples):>8} | "
                   f"{len({s.camid for s in samples}):>9}")
            if scenes:
                row += f" | {len({s.sceneid for s in samples}):>8}"
            lines.append(row)
        lines.append("  " + "-" * (len(head) - 2))
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------
# Listing helpers


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataError(f"{what} not found: {path}")
    return path


def _image_files(folder: Path) -> list[Path]:
    """Image files of a folder, sorted by name; hidden files are skipped, anything else is an error."""
    files, other = [], []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        (files if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES else other).append(p)
    if other:
        raise DataError(f"{folder}: unexpected entries (not image files): {', '.join(p.name for p in other[:5])}"
                        + (f" and {len(other) - 5} more" if len(other) > 5 else ""))
    return files


def _paired(folders: Sequence[Path]) -> list[tuple[str, str, str]]:
    """Per sample, the same file name in the RGB, NI and TI folders; every unpaired file is listed in the error."""
    names = [{p.name: p for p in _image_files(f)} for f in folders]
    missing = [str(f / n) for f, have in zip(folders, names) for n in sorted(set().union(*names) - set(have))]
    if missing:
        shown = "\n  ".join(missing[:20]) + (f"\n  ... and {len(missing) - 20} more" if len(missing) > 20 else "")
        raise DataError(f"{len(missing)} modality file(s) missing (each sample needs the same file name in "
                        f"{', '.join(f.name for f in folders)}):\n  {shown}")
    return [tuple(str(names[i][n]) for i in range(3)) for n in sorted(names[0])]


def _relabel(train: list[Sample]) -> tuple[list[Sample], dict[int, int]]:
    labels = {pid: i for i, pid in enumerate(sorted({s.pid for s in train}))}
    return [Sample(s.paths, labels[s.pid], s.camid, s.sceneid, s.boxes) for s in train], labels


def _finish(name: str, root: Path, splits: dict[str, tuple[Path, list[Sample]]], protocol: str,
            verify: bool) -> ReIDDataset:
    for split, (folder, samples) in splits.items():
        if not samples:
            raise DataError(f"{name}: the {split} split is empty: {folder}")
    (_, train), (_, query), (gdir, gallery) = splits["train"], splits["query"], splits["gallery"]
    gallery_pids = {s.pid for s in gallery}
    orphans = sorted({s.pid for s in query} - gallery_pids)
    if orphans:
        example = next(s.paths[0] for s in query if s.pid == orphans[0])
        raise DataError(f"{name}: {len(orphans)} query id(s) have no image in the gallery {gdir}: {orphans[:10]} "
                        f"(e.g. {example})")
    train, labels = _relabel(train)
    data = ReIDDataset(name, root, train, query, gallery, protocol, labels)
    if verify:
        verify_images([*train, *query, *([] if gallery is query else gallery)])
    log.info("%s", data.summary())
    return data


def hold_out_identities(data: ReIDDataset, num_ids: int, seed: int = 0) -> ReIDDataset:
    """A validation split of ``data``: ``num_ids`` training identities (a seeded choice) become query and gallery
    (every sample of them, both, as RGBNT201's test set; the dataset's protocol removes same-camera / same-scene
    matches), the other identities are the training split, relabelled 0..C-1.  The test split is not touched --
    hyper-parameters chosen on this split never see it."""
    labels = sorted({s.pid for s in data.train})
    if not 1 <= num_ids < len(labels):
        raise DataError(f"{data.name} ({data.root}): data.validation_ids = {num_ids} must be in [1, {len(labels)}) "
                        f"(the training split has {len(labels)} identities)")
    held = {int(p) for p in np.random.default_rng([seed, num_ids]).choice(labels, num_ids, replace=False)}
    validation = [s for s in data.train if s.pid in held]
    train, relabel = _relabel([s for s in data.train if s.pid not in held])
    raw = {label: pid for pid, label in data.pid_labels.items()}
    pid_labels = {raw[old]: new for old, new in relabel.items()}
    out = ReIDDataset(f"{data.name} (validation: {num_ids} held-out training ids)", data.root, train, validation,
                      validation, data.protocol, pid_labels)
    log.info("%s", out.summary())
    return out


def _parse(path: Path, parse: Callable[[str], tuple[int, ...]], expected: str) -> tuple[int, ...]:
    try:
        return parse(path.name)
    except (ValueError, IndexError, AttributeError) as e:
        raise DataError(f"cannot parse the file name {path} (expected {expected}): {e}") from None


# --------------------------------------------------------------------------------------------------------------
# The three datasets


def _rgbnt201_name(name: str) -> tuple[int, int]:
    fields = name.split("_")
    first = fields[0][:6]
    if len(first) != 6 or not first.isdigit():
        raise ValueError(f"first field {fields[0]!r} does not start with 6 digits")
    return int(first), int(fields[1][3]) - 1


@DATASETS.register("RGBNT201", object="person", folder="RGBNT201", modalities=MODALITIES, image_size=(256, 128),
                   protocol="camera")
def read_rgbnt201(root: str | Path, verify: bool = False) -> ReIDDataset:
    """``ROOT/RGBNT201/{train_171,test}/{RGB,NI,TI}/*.jpg``; query = gallery = test (official RGBNT201.py:26-28).
    pid = int(first 6 chars of the first ``_`` field), camid = int(4th char of the second field) - 1."""
    root = Path(root)
    base = _require_dir(root / "RGBNT201", "RGBNT201 dataset folder")
    splits = {}
    for split, folder in (("train", "train_171"), ("test", "test")):
        d = _require_dir(base / folder, f"RGBNT201 {split} split")
        mods = [_require_dir(d / m, f"RGBNT201 {split} {m} folder") for m in MODALITIES]
        samples = []
        for paths in _paired(mods):
            pid, camid = _parse(Path(paths[0]), _rgbnt201_name, "PPPPPP_camX_...")
            if camid < 0:
                raise DataError(f"camera number 0 in {paths[0]} (cameras are numbered from 1: PPPPPP_camX_...)")
            samples.append(Sample(paths, pid, camid))
        splits[split] = (d, samples)
    test_dir, test = splits["test"]
    return _finish("RGBNT201", root, {"train": splits["train"], "query": (test_dir, test),
                                      "gallery": (test_dir, test)}, "camera", verify)


def _rgbnt100_name(name: str) -> tuple[int, int]:
    m = _RGBNT100_NAME.search(name)
    if m is None:
        raise ValueError("no '<pid>_c<camid>' in the name")
    pid, camid = int(m.group(1)), int(m.group(2))
    if not 1 <= pid <= 600:
        raise ValueError(f"pid {pid} outside 1..600")
    if not 1 <= camid <= 8:
        raise ValueError(f"camid {camid} outside 1..8")
    return pid, camid - 1


@DATASETS.register("RGBNT100", object="vehicle", folder="RGBNT100", modalities=MODALITIES, image_size=(128, 256),
                   protocol="camera")
def read_rgbnt100(root: str | Path, verify: bool = False) -> ReIDDataset:
    """``ROOT/RGBNT100/rgbir/{bounding_box_train,query,bounding_box_test}/*.jpg``: one 768x128 file per sample
    holding RGB | NI | TI, cut with :data:`RGBNT100_BOXES`; names ``<pid>_c<camid>...`` with 1 <= pid <= 600,
    1 <= camid <= 8, camid -= 1 (official RGBNT100.py:63-85)."""
    root = Path(root)
    base = _require_dir(root / "RGBNT100" / "rgbir", "RGBNT100 dataset folder")
    splits = {}
    for split, folder in (("train", "bounding_box_train"), ("query", "query"), ("gallery", "bounding_box_test")):
        d = _require_dir(base / folder, f"RGBNT100 {split} split")
        samples = []
        for p in _image_files(d):
            pid, camid = _parse(p, _rgbnt100_name, "<pid>_c<camid>_..., 1 <= pid <= 600, 1 <= camid <= 8")
            samples.append(Sample((str(p),) * 3, pid, camid, -1, RGBNT100_BOXES))
        splits[split] = (d, samples)
    return _finish("RGBNT100", root, splits, "camera", verify)


def _msvr310_name(name: str) -> tuple[int, int, int]:
    if len(name) < 12 or name[4:6] != "_s" or name[9:11] != "_v":
        raise ValueError("not of the form VVVV_sSSS_vC_...")
    vid, sceneid, camid = int(name[0:4]), int(name[6:9]), int(name[11])
    if not 0 <= camid <= 7:
        raise ValueError(f"camid {camid} outside 0..7")
    return vid, sceneid, camid


@DATASETS.register("MSVR310", object="vehicle", folder="msvr310", modalities=MODALITIES, image_size=(128, 256),
                   protocol="scene")
def read_msvr310(root: str | Path, verify: bool = False) -> ReIDDataset:
    """``ROOT/msvr310/{bounding_box_train,query3,bounding_box_test}/<vid>/{vis,ni,th}/<img>``; names
    ``VVVV_sSSS_vC_...``: vid = int(name[0:4]), sceneid = int(name[6:9]), camid = int(name[11]) in 0..7, not
    shifted (official msvr310.py:76-84).  The scene protocol applies (sec. 5)."""
    root = Path(root)
    base = _require_dir(root / "msvr310", "MSVR310 dataset folder")
    splits = {}
    for split, folder in (("train", "bounding_box_train"), ("query", "query3"), ("gallery", "bounding_box_test")):
        d = _require_dir(base / folder, f"MSVR310 {split} split")
        samples = []
        for vdir in sorted(p for p in d.iterdir() if not p.name.startswith(".")):
            if not vdir.is_dir():
                raise DataError(f"{d}: unexpected file {vdir.name} (expected one folder per vehicle)")
            mods = [_require_dir(vdir / m, f"MSVR310 {split} {m} folder") for m in ("vis", "ni", "th")]
            for paths in _paired(mods):
                vid, sceneid, camid = _parse(Path(paths[0]), _msvr310_name, "VVVV_sSSS_vC_..., C in 0..7")
                if vdir.name.isdigit() and int(vdir.name) != vid:
                    raise DataError(f"{paths[0]}: vehicle {vid:04d} in the name but the folder says {vdir.name}")
                samples.append(Sample(paths, vid, camid, sceneid))
        splits[split] = (d, samples)
    return _finish("MSVR310", root, splits, "scene", verify)


def read_dataset(name: str, root: str | Path, verify: bool = False) -> ReIDDataset:
    """The reader registered as ``name`` in :data:`mambapro.registry.DATASETS` applied to ``root`` (the folder
    holding each dataset's ``folder``: ``RGBNT201/``, ``RGBNT100/`` or ``msvr310/``).  ``verify`` decodes every
    image once up front."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)} (registered in {__name__})")
    return DATASETS.get(name).obj(root, verify=verify)


def object_kind(dataset: str) -> str:
    """The ``object`` fact of ``dataset`` (a name in :data:`mambapro.registry.DATASETS`): "person" or "vehicle"."""
    return DATASETS.fact(dataset, "object")


def is_vehicle(dataset: str) -> bool:
    """Whether ``dataset`` holds vehicles (RGBNT100, MSVR310) rather than persons (RGBNT201)."""
    return object_kind(dataset) == "vehicle"


# --------------------------------------------------------------------------------------------------------------
# Images


def _open_rgb(path: str) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()  # decode fully here: a truncated file fails now, not silently later
            return im.convert("RGB")
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise DataError(f"cannot read image {path}: {e}") from None


def load_images(sample: Sample) -> dict[str, Image.Image]:
    """The sample's three images as RGB PIL images keyed by modality (NIR and TIR are grey images stored as
    3-channel files; RGBNT100's single file is cropped with its boxes)."""
    if sample.boxes is None:
        return {m: _open_rgb(p) for m, p in zip(MODALITIES, sample.paths)}
    im = _open_rgb(sample.paths[0])
    need_w = max(b[2] for b in sample.boxes)
    need_h = max(b[3] for b in sample.boxes)
    if im.width < need_w or im.height < need_h:
        raise DataError(f"image {sample.paths[0]} is {im.width}x{im.height} (W x H) but its crop boxes need at "
                        f"least {need_w}x{need_h}")
    return {m: im.crop(box) for m, box in zip(MODALITIES, sample.boxes)}


def verify_images(samples: Sequence[Sample]) -> None:
    """Decode every image of ``samples`` once; the first unreadable or truncated file raises :class:`DataError`."""
    for s in samples:
        load_images(s)
