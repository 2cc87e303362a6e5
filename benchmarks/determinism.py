"""Each source of cross-machine difference, measured: one pipeline run (preset F, seed 0 of the default profile)
trained with the pipeline's pinned CPU path and again with one pin released at a time, so that this machine computes
what a machine with another CPU, core count or compiler target would.

Variants (each in its own process, one thread unless said otherwise):

  pinned        the pipeline: mambapro.environment's pins (ATen avx2, MKL_CBWR=COMPATIBLE, oneDNN AVX2), the
                native scan built for x86-64-v3, one intra-op thread
  aten          ATen's own dispatch for this CPU (ATEN_CPU_CAPABILITY=avx512 where the CPU has it)
  mkl           MKL_CBWR=AUTO (MKL picks its kernels by CPU)
  onednn        ONEDNN_MAX_CPU_ISA=ALL
  scan-native   the native scan compiled with -march=native (the portable flags otherwise: -ffp-contract=off)
  scan-before   the native scan with the flags before issue 13: -O3 -march=native -ffast-math (contraction into
                fused multiply-adds allowed)
  threads-2     two intra-op threads (the engine pins one; this variant overrides it)
  unpinned      all of the above at once

Printed per variant: the last-epoch test mAP, its difference from ``pinned``, whether every evaluated epoch's
metrics and the trained tensors are bit-identical to ``pinned``, and the run's wall time (the cost of each pin).
Needs the default profile's inputs (``dvc repro proxy_clip@default``: data/synthetic and build/proxy_clip.pt).

Usage: python benchmarks/determinism.py [--preset F] [--seed 0] [--jobs 2] [--variants pinned aten ...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CPU_FLAGS = set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").is_file() else set()
OWN_CAPABILITY = "avx512" if "avx512f" in CPU_FLAGS else "avx2" if "avx2" in CPU_FLAGS else "default"
RELEASED = {
    "aten": {"env": {"ATEN_CPU_CAPABILITY": OWN_CAPABILITY}},
    "mkl": {"env": {"MKL_CBWR": "AUTO"}},
    "onednn": {"env": {"ONEDNN_MAX_CPU_ISA": "ALL"}},
    "scan-native": {"scan_flags": "-O3 -ffast-math -ffp-contract=off -fPIC -march=native"},
    "scan-before": {"scan_flags": "-O3 -march=native -ffast-math -fPIC"},
    "threads-2": {"threads": 2},
}
VARIANTS = ["pinned", *RELEASED, "unpinned"]


def child(preset: str, seed: int, out: str, scan_flags: str | None, threads: int) -> None:
    """Train in this process (the environment was set by the parent) and print one JSON line."""
    import torch

    import mambapro  # noqa: F401 - first: the pins (unless the parent's environment overrides them)

    if scan_flags:  # another build of the kernel: a separate cached library (its name hashes the flags)
        from mambapro import native_scan

        native_scan.COMPILE_FLAGS = tuple(scan_flags.split())
        native_scan._library.cache_clear()
    if threads != 1:
        torch.set_num_threads(threads)
        torch.set_num_threads = lambda n: None  # keep the engine from pinning one thread
    from mambapro.config import resolve_config
    from mambapro.engine import train
    from mambapro.environment import cpu_math_report

    start = time.perf_counter()
    result = train(resolve_config("default", preset), out, seed, resume=False, progress=False)
    wall = time.perf_counter() - start
    trained = torch.load(Path(out) / "last.pt", weights_only=True)["model"]
    digest = hashlib.sha256()
    for name in sorted(trained):
        digest.update(name.encode() + trained[name].contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    print(json.dumps({"last_mAP": result["last"]["mAP"], "wall_s": wall, "cpu_math": cpu_math_report()[0],
                      "threads": torch.get_num_threads(),
                      "history": [{k: v for k, v in h.items() if k != "lr"} for h in result["history"]],
                      "tensors": digest.hexdigest()}))


def _run(variant: str, preset: str, seed: int, tmp: Path) -> dict:
    spec = {"env": {}, "scan_flags": None, "threads": 1}
    for name in (RELEASED if variant == "unpinned" else [variant] if variant in RELEASED else []):
        for key, value in RELEASED[name].items():
            spec[key] = {**spec[key], **value} if key == "env" else value
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), **spec["env"]}
    cmd = [sys.executable, __file__, "--child", variant, "--preset", preset, "--seed", str(seed),
           "--out", str(tmp / variant), *([f"--scan-flags={spec['scan_flags']}"] if spec["scan_flags"] else []),
           "--threads", str(spec["threads"])]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"variant {variant} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="F")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    p.add_argument("--scan-flags", default=None, help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.preset, args.seed, args.out, args.scan_flags, args.threads)

    variants = list(dict.fromkeys(["pinned", *args.variants]))
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        futures = {v: pool.submit(_run, v, args.preset, args.seed, Path(tmp)) for v in variants}
        res = {}
        for k, (v, f) in enumerate(futures.items(), 1):
            res[v] = f.result()
            print(f"[{k}/{len(variants)}] {v}: mAP {res[v]['last_mAP']:.2f} in {res[v]['wall_s']:.0f} s "
                  f"(elapsed {time.time() - t0:.0f} s)", file=sys.stderr)
    ref = res["pinned"]
    print(f"preset {args.preset}, seed {args.seed}; this CPU's own ATen capability: {OWN_CAPABILITY}; "
          f"{args.jobs} runs at a time")
    print("| variant | CPU math | threads | last mAP | − pinned | metrics identical | tensors identical | wall s |")
    print("|---|---|---|---|---|---|---|---|")
    for v in variants:
        r = res[v]
        print(f"| {v} | {r['cpu_math'].removeprefix('CPU math: ')} | {r['threads']} | {r['last_mAP']:.2f} | "
              f"{r['last_mAP'] - ref['last_mAP']:+.2f} | {'yes' if r['history'] == ref['history'] else 'no'} | "
              f"{'yes' if r['tensors'] == ref['tensors'] else 'no'} | {r['wall_s']:.0f} |")


if __name__ == "__main__":
    main()
