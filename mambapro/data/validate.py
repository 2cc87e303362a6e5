"""Up-front check of a dataset on disk, before any GPU work: the layout, and every image of every split opens, is
not truncated and has the geometry its dataset documents.  It reads directory listings, headers and file tails only
(no decoding), in a thread pool: seconds for RGBNT201 (``python -m mambapro.data.validate --benchmark``).

**One pass.**  Every problem of a tree is collected and reported together: layout problems (a missing folder, a
modality file without its partners, a file name that does not parse, an unexpected entry, an empty split, a query
id absent from the gallery) do not stop the check, and the images of the same tree are checked too.  The listing is
capped at ``max_listed`` lines per kind, with the count of the rest.  The layout is walked here, tolerantly, after
the readers (:mod:`mambapro.data.readers`, official-implementation.md sec. 3.1); a tree with no layout problem is
then read by its reader, which stays the authority (anything it still refuses is reported too).

Per file: non-empty; an image PIL identifies (``Image.open`` parses the header only); width and height > 0; not
truncated (JPEG: the end-of-image marker FF D9 ends the file, trailing zero padding allowed; PNG: the IEND chunk;
BMP: at least the size its header declares).

**Geometry** (official-implementation.md sec. 3.1, 3.3; the paper's "Implementation Details"):

* RGBNT100: one file holds RGB | NI | TI side by side, cut by the fixed boxes ``readers.RGBNT100_BOXES``, so the file
  must be **exactly** as large as the boxes cover (768 x 128, W x H).  A smaller file cannot be cut; a larger one
  (1536 x 256, 768 x 256) would be cut at the wrong places, silently.
* RGBNT201 and MSVR310: the three modality files of a sample are aligned crops and must have one size (a file
  differing from the sample's most common size is named).  Their files are resized to the model input, so no size
  is fixed; the documented input (``image_size`` in :data:`mambapro.registry.DATASETS`: 256 x 128 H x W for
  persons, 128 x 256 for vehicles) fixes the orientation.  Files of the other orientation are counted in the
  report's notes (they get stretched); a tree where every file has the other orientation is an error (the wrong
  dataset, or rotated images).

Damage inside the compressed data is not seen here; ``read_dataset(..., verify=True)`` decodes every image
(minutes).

    python -m mambapro.data.validate RGBNT201 /data          # exit 1 with every problem, listed by kind
    python -m mambapro.data.validate --benchmark 14000       # time a synthetic RGBNT201-sized tree
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from mambapro.config import MODALITIES
from mambapro.data import readers
from mambapro.data.readers import IMAGE_SUFFIXES, DataError, ReIDDataset, Sample, read_dataset
from mambapro.registry import DATASETS

__all__ = ["ValidationSummary", "check_image", "make_rgbnt201_tree", "validate_dataset", "validate_samples",
           "walk_layout"]

REFETCH = "re-extract it from the dataset archive (or re-download it)"
_PNG_END = b"IEND\xaeB`\x82"


@dataclass
class ValidationSummary:
    """What :func:`validate_dataset` checked: counts, time, every layout problem and every bad file as (path,
    problem and fix), and notes (counted oddities that are not errors)."""

    dataset: str
    root: str
    samples: int
    files: int
    seconds: float
    problems: list[tuple[str, str]] = field(default_factory=list)  # layout problems first, then bad files
    layout_problems: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def report(self, max_listed: int = 20) -> str:
        head = (f"{self.dataset} under {self.root}: {self.files} files of {self.samples} samples checked in "
                f"{self.seconds:.1f} s")
        notes = [f"  note: {n}" for n in self.notes]
        if self.ok:
            return "\n".join([head + ": all readable", *notes])
        layout, files = self.problems[:self.layout_problems], self.problems[self.layout_problems:]
        counts = [f"{len(layout)} layout problem(s)"] * bool(layout) + [f"{len(files)} bad file(s)"] * bool(files)
        lines = [f"{head}: {' and '.join(counts)}"]
        for title, items in (("layout", layout), ("files", files)):
            if items:
                lines += [f" {title}:"] + [f"  {path}: {problem}" for path, problem in items[:max_listed]]
                if len(items) > max_listed:
                    lines.append(f"  ... and {len(items) - max_listed} more ({title})")
        return "\n".join([*lines, *notes, f"Fix each, then re-check: python -m mambapro.data.validate "
                                           f"{self.dataset} {self.root}"])


def _truncated(fmt: str | None, f, nbytes: int) -> str | None:
    """Why the file looks cut short (from its tail and header), or None."""
    if fmt == "JPEG":
        f.seek(max(0, nbytes - 1024))  # the last KiB: room for zero padding after the marker
        if not f.read().rstrip(b"\x00").endswith(b"\xff\xd9"):
            return "truncated: no JPEG end-of-image marker (FF D9) at the end of the file"
    elif fmt == "PNG":
        f.seek(max(0, nbytes - len(_PNG_END)))
        if f.read() != _PNG_END:
            return "truncated: no PNG IEND chunk at the end of the file"
    elif fmt == "BMP":
        f.seek(2)
        declared = int.from_bytes(f.read(4), "little")
        if nbytes < declared:
            return f"truncated: {nbytes} bytes but the BMP header declares {declared}"
    return None


def check_image(path: str) -> tuple[tuple[int, int] | None, str | None]:
    """(width, height) from the header, and the problem with the file (with its fix) or None.  No decoding."""
    try:
        nbytes = os.path.getsize(path)
        if nbytes == 0:
            return None, f"empty file (0 bytes); {REFETCH}"
        with open(path, "rb") as f:
            with Image.open(f) as im:
                size, fmt = im.size, im.format
            if size[0] <= 0 or size[1] <= 0:
                return None, f"image of size {size[0]}x{size[1]}; {REFETCH}"
            why = _truncated(fmt, f, nbytes)
    except UnidentifiedImageError:
        return None, f"not an image PIL can identify ({nbytes} bytes); replace it with the image, {REFETCH}"
    except (OSError, SyntaxError, ValueError) as e:
        what = "truncated inside its header" if "runcated" in str(e) else "unreadable"
        return None, f"{what} ({type(e).__name__}: {e}); {REFETCH}"
    return size, (f"{why}; {REFETCH}" if why else None)


def _sample_problems(s: Sample, sizes: dict[str, tuple[int, int] | None]) -> list[tuple[str, str]]:
    """Size rules: RGBNT100's file exactly as large as its crop boxes cover; otherwise one size across the three
    modality files of the sample."""
    if s.boxes is not None:
        size = sizes[s.paths[0]]
        need = (max(b[2] for b in s.boxes), max(b[3] for b in s.boxes))
        if size is not None and size != need:
            cut = "cannot be cut" if size[0] < need[0] or size[1] < need[1] else "would be cut at the wrong places"
            return [(s.paths[0], f"wrong size {size[0]}x{size[1]} (W x H): the file holds RGB | NI | TI side by "
                                 f"side and must be exactly {need[0]}x{need[1]}, the fixed crop boxes' extent "
                                 f"(official bases.py:19-23); it {cut}; {REFETCH}")]
        return []
    known = [(m, p, sizes[p]) for m, p in zip(MODALITIES, s.paths) if sizes[p] is not None]
    if len({size for _, _, size in known}) <= 1:
        return []
    common = Counter(size for _, _, size in known).most_common(1)[0][0]  # ties: the first modality's
    ref_m, ref_p = next((m, p) for m, p, size in known if size == common)
    return [(p, f"wrong size {size[0]}x{size[1]} (W x H) but its {ref_m} image {ref_p} is {common[0]}x{common[1]}: "
                f"the three modality files of a sample are aligned crops of one size; {REFETCH}")
            for m, p, size in known if size != common]


def _check_files(paths: list[str], workers: int | None) -> list[tuple[tuple[int, int] | None, str | None]]:
    """:func:`check_image` of every path, in a thread pool (headers and tails only)."""
    workers = workers or min(16, 4 * (os.cpu_count() or 1))
    step = max(1, -(-len(paths) // (4 * workers)))
    chunks = [paths[i:i + step] for i in range(0, len(paths), step)]
    with ThreadPoolExecutor(workers) as pool:
        return [r for part in pool.map(lambda c: [check_image(p) for p in c], chunks) for r in part]


def validate_samples(samples: list[Sample], workers: int | None = None,
                     loose: tuple[str, ...] | list[str] = ()) -> tuple[int, list[tuple[str, str]]]:
    """(number of distinct files, problems) for ``samples`` and ``loose`` files (images outside any complete
    sample, e.g. a modality file whose partners are missing: still checked)."""
    return _validate(samples, workers, loose)[:2]


def _validate(samples, workers, loose=()) -> tuple[int, list[tuple[str, str]], dict[str, tuple[int, int] | None]]:
    paths = list(dict.fromkeys([*(p for s in samples for p in s.paths), *loose]))
    results = _check_files(paths, workers)
    sizes = {p: None if why else size for p, (size, why) in zip(paths, results)}  # bad files: no size to compare
    problems = [(p, why) for p, (_, why) in zip(paths, results) if why]
    bad = {p for p, _ in problems}
    for s in samples:
        for p, why in _sample_problems(s, sizes):
            if p not in bad:
                bad.add(p)
                problems.append((p, why))
    return len(paths), problems, sizes


# --------------------------------------------------------------------------------------------------------------
# The layout, walked tolerantly: every problem collected (the readers stop at the first)

Layout = list[tuple[str, str]]


def _listing(folder: Path, what: str, layout: Layout) -> list[Path] | None:
    """The non-hidden entries of ``folder``, sorted; None (and a layout problem) when it is not a folder."""
    if not folder.is_dir():
        layout.append((str(folder), f"{what} not found: create it as the dataset's layout has it (README, "
                                    "'Paper scale'; official-implementation.md sec. 3.1)"))
        return None
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _images(folder: Path, what: str, layout: Layout) -> dict[str, Path] | None:
    """Image files of ``folder`` by name; every other entry is a layout problem."""
    entries = _listing(folder, what, layout)
    if entries is None:
        return None
    files = {}
    for p in entries:
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            files[p.name] = p
        else:
            layout.append((str(p), f"unexpected entry (not an image file {'/'.join(IMAGE_SUFFIXES)}): move it out "
                                   "of the dataset folder"))
    return files


def _paired(folders: list[Path], what: str, layout: Layout, loose: list[str]) -> list[tuple[str, str, str]]:
    """Samples present in all three modality folders; each missing partner is a layout problem naming the file
    that should be there, and the files without partners are still checked (``loose``)."""
    names = [_images(f, f"{what} {f.name} folder", layout) for f in folders]
    if any(n is None for n in names):
        loose.extend(str(p) for n in names if n for p in n.values())
        return []
    samples = []
    for name in sorted(set().union(*names)):
        have = [n.get(name) for n in names]
        if all(have):
            samples.append(tuple(str(p) for p in have))
            continue
        present = next(p for p in have if p)
        loose.extend(str(p) for p in have if p)
        layout.extend((str(f / name), f"modality file missing (its partner {present} exists; each sample needs "
                                      f"the same file name in {', '.join(f.name for f in folders)}): restore it, "
                                      "or remove the partners")
                      for f, p in zip(folders, have) if p is None)
    return samples


def _parsed(path: str, parse: Callable[[str], tuple[int, ...]], expected: str, layout: Layout):
    try:
        return parse(Path(path).name)
    except (ValueError, IndexError, AttributeError) as e:
        layout.append((path, f"cannot parse the file name (expected {expected}): {e}; rename it"))
        return None


def _walk_rgbnt201(base: Path, layout: Layout, loose: list[str]) -> dict[str, tuple[Path, list[Sample]]]:
    splits = {}
    for split, folder in (("train", "train_171"), ("test", "test")):
        d, samples = base / folder, []
        if _listing(d, f"RGBNT201 {split} split", layout) is not None:
            for paths in _paired([d / m for m in MODALITIES], f"RGBNT201 {split}", layout, loose):
                got = _parsed(paths[0], readers._rgbnt201_name, "PPPPPP_camX_...", layout)
                if got and got[1] < 0:
                    layout.append((paths[0], "camera number 0 (cameras are numbered from 1: PPPPPP_camX_...); "
                                             "rename it"))
                elif got:
                    samples.append(Sample(paths, got[0], got[1]))
            splits[split] = (d, samples)
    if "test" in splits:
        splits["query"] = splits["gallery"] = splits.pop("test")
    return splits


def _split_folders(base: Path, folders: tuple[str, str, str], what: str, layout: Layout, listing: Callable):
    """(split, folder, its listing) of the train / query / gallery folders that can be listed (the others are
    layout problems already)."""
    for split, folder in zip(("train", "query", "gallery"), folders):
        entries = listing(base / folder, f"{what} {split} split", layout)
        if entries is not None:
            yield split, base / folder, entries


def _walk_rgbnt100(base: Path, layout: Layout, loose: list[str]) -> dict[str, tuple[Path, list[Sample]]]:
    splits = {}
    for split, d, files in _split_folders(base, ("bounding_box_train", "query", "bounding_box_test"), "RGBNT100",
                                          layout, _images):
        samples = []
        for p in files.values():
            got = _parsed(str(p), readers._rgbnt100_name, "<pid>_c<camid>_..., 1 <= pid <= 600, 1 <= camid <= 8",
                          layout)
            if got:
                samples.append(Sample((str(p),) * 3, got[0], got[1], -1, readers.RGBNT100_BOXES))
            else:
                loose.append(str(p))
        splits[split] = (d, samples)
    return splits


def _walk_msvr310(base: Path, layout: Layout, loose: list[str]) -> dict[str, tuple[Path, list[Sample]]]:
    splits = {}
    for split, d, entries in _split_folders(base, ("bounding_box_train", "query3", "bounding_box_test"), "MSVR310",
                                            layout, _listing):
        samples = []
        for vdir in entries:
            if not vdir.is_dir():
                layout.append((str(vdir), "unexpected file (the split holds one folder per vehicle): move it into "
                                          "its vehicle's vis/ni/th folder or out of the dataset"))
                continue
            for paths in _paired([vdir / m for m in ("vis", "ni", "th")], f"MSVR310 {split} {vdir.name}", layout,
                                 loose):
                got = _parsed(paths[0], readers._msvr310_name, "VVVV_sSSS_vC_..., C in 0..7", layout)
                if got and vdir.name.isdigit() and int(vdir.name) != got[0]:
                    layout.append((paths[0], f"vehicle {got[0]:04d} in the name but the folder says {vdir.name}: "
                                             "move or rename it"))
                elif got:
                    samples.append(Sample(paths, got[0], got[2], got[1]))
        splits[split] = (d, samples)
    return splits


_WALKERS = {"RGBNT201": _walk_rgbnt201, "RGBNT100": _walk_rgbnt100, "MSVR310": _walk_msvr310}
_BASES = {"RGBNT100": "rgbir"}  # below the dataset's folder (DATASETS' "folder" fact)


def walk_layout(dataset: str, root: str | Path) -> tuple[list[Sample], list[str], Layout]:
    """(complete samples, loose image files, layout problems) of ``dataset`` under ``root``, every problem of the
    layout collected in one pass (the same rules as the dataset's reader)."""
    if dataset not in _WALKERS:
        raise DataError(f"unknown dataset {dataset!r}; valid: {', '.join(_WALKERS)}")
    layout: Layout = []
    loose: list[str] = []
    base = Path(root) / DATASETS.fact(dataset, "folder")
    if _listing(base, f"{dataset} dataset folder", layout) is None:
        return [], [], layout
    splits = _WALKERS[dataset](base / _BASES.get(dataset, ""), layout, loose)
    for split, (folder, samples) in {v[0]: (k, v) for k, v in splits.items()}.values():  # RGBNT201: test once
        if not samples and not any(p.startswith(str(folder)) for p, _ in layout):
            layout.append((str(folder), f"the {split} split is empty: put its images there"))
    if "query" in splits and "gallery" in splits:
        gallery = {s.pid for s in splits["gallery"][1]}
        orphans = sorted({s.pid for s in splits["query"][1]} - gallery)
        if orphans and splits["gallery"][1]:
            layout.append((str(splits["gallery"][0]), f"{len(orphans)} query id(s) have no image in this gallery: "
                                                      f"{orphans[:10]}; add their gallery images"))
    samples = list({id(s): s for _, ss in splits.values() for s in ss}.values())
    return samples, loose, layout


def _orientation(dataset: str, samples: list[Sample], sizes: dict) -> tuple[list[str], Layout]:
    """Notes (and, when every file disagrees, a problem) on files whose orientation differs from the dataset's
    documented input ``image_size`` (H, W) in :data:`mambapro.registry.DATASETS`."""
    try:
        h, w = DATASETS.fact(dataset, "image_size")
    except ValueError:  # a dataset without the fact: nothing to check
        return [], []
    files = [(p, sizes.get(p)) for s in samples if s.boxes is None for p in s.paths]
    files = [(p, size) for p, size in files if size is not None and size[0] != size[1]]
    other = [p for p, (fw, fh) in files if (fh > fw) != (h > w)]
    if not other:
        return [], []
    shape = "portrait (H > W)" if h > w else "landscape (W > H)"
    text = (f"{len(other)} of {len(files)} file(s) are not {shape} like {dataset}'s documented input {h}x{w} "
            f"(H x W; paper, Implementation Details): they are stretched when resized, e.g. {other[0]}")
    if len(other) == len(files):
        return [], [(other[0], f"every file has the other orientation: {text}. Is this {dataset}? Put the "
                               "right dataset there (or rotate the images back)")]
    return [text], []


def validate_dataset(dataset: str | ReIDDataset, root: str | Path | None = None, *, max_listed: int = 20,
                     workers: int | None = None, raise_errors: bool = True) -> ValidationSummary:
    """Check the layout and every image of every split of ``dataset`` (a name in :data:`DATASETS` read under
    ``root``, or an already read :class:`ReIDDataset`), collecting every problem in one pass.  Raises
    :class:`DataError` listing up to ``max_listed`` problems of each kind (all are in the summary) unless
    ``raise_errors`` is False."""
    start = time.perf_counter()
    loose: list[str] = []
    layout: Layout = []
    if isinstance(dataset, ReIDDataset):
        name, root = dataset.name, dataset.root
        samples = list({id(s): s for s in (*dataset.train, *dataset.query, *dataset.gallery)}.values())
    else:
        name = dataset
        samples, loose, layout = walk_layout(dataset, root)
        if not layout:  # the reader stays the authority on a tree that looks right
            try:
                data = read_dataset(dataset, root)
                samples = list({id(s): s for s in (*data.train, *data.query, *data.gallery)}.values())
            except DataError as e:
                layout.append((str(root), str(e)))
    files, problems, sizes = _validate(samples, workers, loose)
    notes, wrong = _orientation(name, samples, sizes)
    summary = ValidationSummary(name, str(root), len(samples), files, time.perf_counter() - start,
                                [*layout, *wrong, *problems], len(layout) + len(wrong), notes)
    if summary.problems and raise_errors:
        raise DataError(summary.report(max_listed))
    return summary


def make_rgbnt201_tree(root: str | Path, per_modality: int, test_fraction: float = 0.25) -> Path:
    """A synthetic RGBNT201 layout of ``per_modality`` tiny JPEGs per modality (for timing the check)."""
    from io import BytesIO

    blobs = {}
    for m, colour in zip(MODALITIES, ("red", "grey", "white")):
        buf = BytesIO()
        Image.new("RGB", (16, 32), colour).save(buf, "JPEG", quality=50)
        blobs[m] = buf.getvalue()
    n_test = int(per_modality * test_fraction)
    for i in range(per_modality):
        split = "test" if i < n_test else "train_171"
        name = f"{i // 20:06d}_cam{i % 4 + 1}_{i:05d}.jpg"
        for m in MODALITIES:
            folder = Path(root) / "RGBNT201" / split / m
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(blobs[m])
    return Path(root)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Check every image of a dataset (headers and file ends, no decoding).")
    p.add_argument("dataset", nargs="?", help="RGBNT201, RGBNT100 or MSVR310")
    p.add_argument("root", nargs="?", help="folder holding RGBNT201/, RGBNT100/ or msvr310/")
    p.add_argument("--max-listed", type=int, default=20)
    p.add_argument("--benchmark", type=int, metavar="N", help="time the check on a synthetic RGBNT201 tree of N "
                                                              "files per modality (e.g. 14000) in a temp folder")
    args = p.parse_args(argv)
    if args.benchmark:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            make_rgbnt201_tree(tmp, args.benchmark)
            print(f"wrote {3 * args.benchmark} files in {time.perf_counter() - t0:.1f} s")
            print(validate_dataset("RGBNT201", tmp).report())
        return 0
    if not (args.dataset and args.root):
        p.error("give DATASET ROOT, or --benchmark N")
    try:
        print(validate_dataset(args.dataset, args.root, max_listed=args.max_listed).report())
    except DataError as e:
        print(e)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
