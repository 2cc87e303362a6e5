"""Up-front check of a dataset on disk, before any GPU work: every image of every split opens, is not truncated and
has the size its reader needs.  It reads headers and file tails only (no decoding), in a thread pool: seconds for
RGBNT201 (``python -m mambapro.data.validate --benchmark``).

Per file: non-empty; an image PIL identifies (``Image.open`` parses the header only); width and height > 0; not
truncated (JPEG: the end-of-image marker FF D9 ends the file, trailing zero padding allowed; PNG: the IEND chunk;
BMP: at least the size its header declares).  Per sample: RGBNT100's one file holds RGB | NI | TI side by side and
must cover the crop boxes (768 x 128); RGBNT201's and MSVR310's three modality files are aligned crops and must
have the same size (a file differing from the sample's most common size is named).  The readers fix no other size:
images are resized to ``data.image_size`` when loaded.  Damage inside the compressed data is not seen here;
``read_dataset(..., verify=True)`` decodes every image (minutes).  Every bad file is collected, and the error lists
the first ``max_listed`` with the fix.

    python -m mambapro.data.validate RGBNT201 /data          # exit 1 with the list of bad files
    python -m mambapro.data.validate --benchmark 14000       # time a synthetic RGBNT201-sized tree
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from mambapro.config import MODALITIES
from mambapro.data.readers import DataError, ReIDDataset, Sample, read_dataset

__all__ = ["ValidationSummary", "check_image", "make_rgbnt201_tree", "validate_dataset", "validate_samples"]

REFETCH = "re-extract it from the dataset archive (or re-download it)"
_PNG_END = b"IEND\xaeB`\x82"


@dataclass
class ValidationSummary:
    """What :func:`validate_dataset` checked: counts, time, and every bad file as (path, problem and fix)."""

    dataset: str
    root: str
    samples: int
    files: int
    seconds: float
    problems: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def report(self, max_listed: int = 20) -> str:
        head = (f"{self.dataset} under {self.root}: {self.files} files of {self.samples} samples checked in "
                f"{self.seconds:.1f} s")
        if self.ok:
            return head + ": all readable"
        lines = [f"  {path}: {problem}" for path, problem in self.problems[:max_listed]]
        more = len(self.problems) - max_listed
        return "\n".join([f"{head}: {len(self.problems)} bad file(s)", *lines]
                         + ([f"  ... and {more} more"] if more > 0 else [])
                         + [f"Fix each file, then re-check: python -m mambapro.data.validate {self.dataset} "
                            f"{self.root}"])


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
    """Size rules of the readers: RGBNT100 boxes inside the file; otherwise equal sizes across modalities."""
    if s.boxes is not None:
        size = sizes[s.paths[0]]
        need = (max(b[2] for b in s.boxes), max(b[3] for b in s.boxes))
        if size is not None and (size[0] < need[0] or size[1] < need[1]):
            return [(s.paths[0], f"wrong size {size[0]}x{size[1]} (W x H): the file holds RGB | NI | TI side by side "
                                 f"and its crop boxes need at least {need[0]}x{need[1]}; {REFETCH}")]
        return []
    known = [(m, p, sizes[p]) for m, p in zip(MODALITIES, s.paths) if sizes[p] is not None]
    if len({size for _, _, size in known}) <= 1:
        return []
    common = Counter(size for _, _, size in known).most_common(1)[0][0]  # ties: the first modality's
    ref_m, ref_p = next((m, p) for m, p, size in known if size == common)
    return [(p, f"wrong size {size[0]}x{size[1]} (W x H) but its {ref_m} image {ref_p} is {common[0]}x{common[1]}: "
                f"the three modality files of a sample are aligned crops of one size; {REFETCH}")
            for m, p, size in known if size != common]


def validate_samples(samples: list[Sample], workers: int | None = None) -> tuple[int, list[tuple[str, str]]]:
    """(number of distinct files, problems) for ``samples``; headers read in a thread pool."""
    paths = list(dict.fromkeys(p for s in samples for p in s.paths))
    workers = workers or min(16, 4 * (os.cpu_count() or 1))
    step = max(1, -(-len(paths) // (4 * workers)))
    chunks = [paths[i:i + step] for i in range(0, len(paths), step)]
    with ThreadPoolExecutor(workers) as pool:
        results = [r for part in pool.map(lambda c: [check_image(p) for p in c], chunks) for r in part]
    sizes = {p: None if why else size for p, (size, why) in zip(paths, results)}  # bad files: no size to compare
    problems = [(p, why) for p, (_, why) in zip(paths, results) if why]
    bad = {p for p, _ in problems}
    for s in samples:
        for p, why in _sample_problems(s, sizes):
            if p not in bad:
                bad.add(p)
                problems.append((p, why))
    return len(paths), problems


def validate_dataset(dataset: str | ReIDDataset, root: str | Path | None = None, *, max_listed: int = 20,
                     workers: int | None = None, raise_errors: bool = True) -> ValidationSummary:
    """Check every image of every split of ``dataset`` (a name in ``readers.DATASETS`` read under ``root``, or an
    already read :class:`ReIDDataset`).  Raises :class:`DataError` listing up to ``max_listed`` bad files (all are
    in the summary) unless ``raise_errors`` is False.  Layout errors (missing folders, unpaired files, bad names)
    come from the reader, as :class:`DataError` too."""
    start = time.perf_counter()
    data = dataset if isinstance(dataset, ReIDDataset) else read_dataset(dataset, root)
    samples = list({id(s): s for s in (*data.train, *data.query, *data.gallery)}.values())
    files, problems = validate_samples(samples, workers)
    summary = ValidationSummary(data.name, str(data.root), len(samples), files, time.perf_counter() - start,
                                problems)
    if problems and raise_errors:
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
