"""Compare the CPU selective-scan backends at Mamba Aggregation shapes: time (forward, forward+backward) and peak
memory of one forward+backward.

Backends:
  native      mambapro's default CPU backend: the C kernel of mambapro/native_scan.py (states of one row in a buffer)
  chunked     mambapro's pure-PyTorch CPU fallback (custom autograd Function, chunk-boundary states, recomputation)
  reference   mambapro's sequential reference backend (one autograd step per token, Δ·A formed per step)
  einsum-ref  benchmark-only: the formulation of mamba-ssm's ``selective_scan_ref`` (Δ·A and Δ·B·u materialised as
              [B, D, L, N], per-step slices of them, per-step einsum), written here from its description
  blelloch    benchmark-only: work-efficient log-depth parallel scan (odd/even recursion, Blelloch-style),
              differentiated by autograd over the [B, D, L, N] tensors

Timing: in one process, backends interleaved (order rotated each repeat), median (and min) of the repeats.  "fwd" is
an inference forward under ``torch.no_grad()``; "fwd(grad)" a training forward (inputs require grad, autograd records
what the backward needs); "fwd+bwd" adds the backward for u, Δ, A, B, C, D and delta_bias.  Ratios are
median(backend) / median(chunked).  On a shared machine the minimum is the better estimate of the intrinsic cost
(contention only ever adds time); both are printed.

Memory (Linux): each (shape, backend) runs once in a fresh subprocess; reported is the increase of the process's peak
resident set size (VmHWM, reset to the current RSS through ``/proc/self/clear_refs`` right before) over one
forward+backward, after the inputs exist and after a tiny warm-up run.  So it counts the memory the forward+backward
held at its peak (activations, saved tensors, gradients, allocator slack) and nothing allocated before it.

Usage: python benchmarks/scan_backends.py [--quick] [--repeats N] [--chunks 8 16 32 64] [--einsum-memory]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mambapro import native_scan  # noqa: E402
from mambapro.scan import (  # noqa: E402
    DEFAULT_CHUNK,
    selective_scan_chunked,
    selective_scan_native,
    selective_scan_reference,
)

SHAPES = {  # name: (B, D, N, L)
    "MA intra (L128)": (8, 1024, 16, 128),
    "MA inter (L384)": (8, 1024, 16, 384),
    "D256, L384 (the width-128 tiny tower)": (8, 256, 16, 384),
    "tiny MA inter (B32, D96, L96)": (32, 96, 16, 96),
}
QUICK_SHAPES = ("MA intra (L128)", "tiny MA inter (B32, D96, L96)")


# --------------------------------------------------------------------------------------------------------------
# Benchmark-only formulations


def einsum_ref_scan(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True):
    """mamba-ssm ``selective_scan_ref``'s formulation: everything [B, D, L, N] up front, then a loop over slices."""
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    decay = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
    drive = torch.einsum("bdl,bnl,bdl->bdln", delta, B, u)
    x = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for i in range(u.shape[2]):
        x = decay[:, :, i] * x + drive[:, :, i]
        ys.append(torch.einsum("bdn,bn->bd", x, C[:, :, i]))
    y = torch.stack(ys, dim=2)
    return y if D is None else y + u * D[:, None]


def _pscan(a, b):
    """h_t = a_t h_{t-1} + b_t along dim 2 (h_{-1} = 0) by odd/even recursion: O(L) work, O(log L) depth."""
    length = a.shape[2]
    if length == 1:
        return b
    a_even, a_odd, b_even, b_odd = a[:, :, 0::2], a[:, :, 1::2], b[:, :, 0::2], b[:, :, 1::2]
    m = a_odd.shape[2]
    h_odd = _pscan(a_odd * a_even[:, :, :m], a_odd * b_even[:, :, :m] + b_odd)  # states at t = 1, 3, 5, ...
    h_even = torch.cat([b_even[:, :, :1], a_even[:, :, 1:] * h_odd[:, :, : a_even.shape[2] - 1] + b_even[:, :, 1:]],
                       dim=2)
    paired = torch.stack([h_even[:, :, :m], h_odd], dim=3).flatten(2, 3)
    return paired if length % 2 == 0 else torch.cat([paired, h_even[:, :, m:]], dim=2)


def blelloch_scan(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True):
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    decay = torch.exp(delta[..., None] * A[:, None, :])
    drive = (delta * u)[..., None] * B.transpose(1, 2)[:, None]
    h = _pscan(decay, drive)
    y = (h * C.transpose(1, 2)[:, None]).sum(-1)
    return y if D is None else y + u * D[:, None]


def chunked(chunk):
    return lambda u, delta, A, B, C, D, delta_bias: selective_scan_chunked(
        u, delta, A, B, C, D, None, delta_bias, True, chunk)


BACKENDS = {
    **({"native": lambda u, delta, A, B, C, D, delta_bias: selective_scan_native(
        u, delta, A, B, C, D, None, delta_bias, True)} if native_scan.available() else {}),
    "chunked": chunked(DEFAULT_CHUNK),
    "reference": lambda u, delta, A, B, C, D, delta_bias: selective_scan_reference(
        u, delta, A, B, C, D, None, delta_bias, True),
    "einsum-ref": einsum_ref_scan,
    "blelloch": blelloch_scan,
}


# --------------------------------------------------------------------------------------------------------------


def make_inputs(shape, seed=0):
    b, d, n, length = shape
    g = torch.Generator().manual_seed(seed)
    return {
        "u": torch.randn(b, d, length, generator=g),
        "delta": torch.randn(b, d, length, generator=g) * 0.5 - 1.0,
        "A": -torch.arange(1, n + 1, dtype=torch.float32).repeat(d, 1),  # official A = -exp(log(1..N))
        "B": torch.randn(b, n, length, generator=g),
        "C": torch.randn(b, n, length, generator=g),
        "D": torch.ones(d),
        "delta_bias": torch.zeros(d),
    }


def time_forward(fn, inputs):
    """Inference forward (no autograd recording)."""
    with torch.no_grad():
        start = time.perf_counter()
        fn(**inputs)
        return time.perf_counter() - start


def _leaves(inputs):
    return {k: v.detach().clone().requires_grad_(True) for k, v in inputs.items()}


def time_forward_grad(fn, inputs):
    """Training forward: inputs require grad, so autograd records what the backward needs; no backward."""
    leaves = _leaves(inputs)
    start = time.perf_counter()
    fn(**leaves)
    return time.perf_counter() - start


def time_forward_backward(fn, inputs):
    leaves = _leaves(inputs)
    start = time.perf_counter()
    fn(**leaves).sum().backward()
    return time.perf_counter() - start


MEASURES = {"fwd": time_forward, "fwd(grad)": time_forward_grad, "fwd+bwd": time_forward_backward}


def interleaved(names, measure, inputs, repeats):
    """(median, min) seconds per backend, the backends interleaved and their order rotated each repeat."""
    samples = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            samples[name].append(measure(BACKENDS[name], inputs))
    return {name: (statistics.median(v), min(v)) for name, v in samples.items()}


def check_agreement(shape):
    inputs = make_inputs(shape)
    ref = BACKENDS["chunked"](**inputs)
    out = {}
    for name in ("reference", "einsum-ref", "blelloch"):
        y = BACKENDS[name](**inputs)
        out[name] = ((y - ref).norm() / ref.norm()).item()
    return out


def _peak_rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def peak_memory_child(shape_name, backend):
    """Run in a fresh process: peak-RSS increase (MiB) over one forward+backward.  The kernel's high-water mark is
    reset to the current RSS just before (``/proc/self/clear_refs`` = 5), so what torch's import or the inputs
    touched earlier does not hide the peak."""
    inputs = make_inputs(SHAPES[shape_name])
    leaves = {k: v.requires_grad_(True) for k, v in inputs.items()}
    tiny = {k: v.detach().clone().requires_grad_(True) for k, v in make_inputs((1, 4, 2, 3)).items()}
    BACKENDS[backend](**tiny).sum().backward()  # warm-up: library initialisation is not counted
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _peak_rss_mib()
    BACKENDS[backend](**leaves).sum().backward()
    print(json.dumps({"peak_rss_increase_mib": _peak_rss_mib() - before}))


def peak_memory(shape_name, backend):
    here = str(Path(__file__).resolve().parent)
    code = (f"import sys; sys.path.insert(0, {here!r}); import scan_backends as s; "
            f"s.peak_memory_child({shape_name!r}, {backend!r})")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_increase_mib"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="two smaller shapes, 3 repeats")
    parser.add_argument("--repeats", type=int, default=None, help="timing repeats (default 7, quick 3)")
    parser.add_argument("--chunks", type=int, nargs="*", default=None,
                        help="also sweep the chunked backend's chunk size at the L384 MA shape")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--einsum-memory", action="store_true",
                        help="also measure einsum-ref's peak memory (one more slow forward+backward per shape)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 7)
    slow = "einsum-ref"  # its backward is O(L^2) in memory traffic: one forward+backward per shape
    shape_names = list(QUICK_SHAPES if args.quick else SHAPES)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, chunk size {DEFAULT_CHUNK}, "
          f"{repeats} interleaved repeats (einsum-ref forward+backward: 1)")
    print("times: median ms (min ms); ratios: median(backend) / median(chunked); peak MiB: peak-RSS increase over "
          "one forward+backward in a fresh process; rel.err: |y - y_chunked| / |y_chunked|")
    for name in shape_names:
        shape = SHAPES[name]
        inputs = make_inputs(shape)
        for fn in BACKENDS.values():  # warm-up
            time_forward_backward(fn, make_inputs((1, 4, 2, 3)))
        agree = check_agreement(shape)
        results = {}
        for label, measure in MEASURES.items():
            if label == "fwd+bwd":
                results[label] = interleaved([b for b in BACKENDS if b != slow], measure, inputs, repeats)
                results[label].update(interleaved([slow], measure, inputs, 1))
            else:
                results[label] = interleaved(list(BACKENDS), measure, inputs, repeats)
        mem = {}
        if not args.no_memory:
            for backend in BACKENDS:
                if backend != slow or args.einsum_memory:
                    mem[backend] = peak_memory(name, backend)
        b, d, n, length = shape
        print(f"\n== {name}: B {b}, D {d}, N {n}, L {length} ==")
        head = "".join(f"{label + ' ms':>20}{'ratio':>7}" for label in MEASURES)
        print(f"{'backend':<11}{head}{'peak MiB':>10}{'rel.err':>9}")
        for backend in BACKENDS:
            cells = ""
            for label in MEASURES:
                med, low = results[label][backend]
                cells += f"{med * 1e3:12.1f} ({low * 1e3:6.1f}){med / results[label]['chunked'][0]:7.2f}"
            mem_s = f"{mem[backend]:10.0f}" if backend in mem else f"{'-':>10}"
            print(f"{backend:<11}{cells}{mem_s}{agree.get(backend, 0.0):9.1e}")
    if args.chunks:
        inputs = make_inputs(SHAPES["MA inter (L384)"])
        for c in args.chunks:
            BACKENDS[f"chunk {c}"] = chunked(c)
        names = [f"chunk {c}" for c in args.chunks]
        fwd = interleaved(names, time_forward, inputs, repeats)
        fb = interleaved(names, time_forward_backward, inputs, repeats)
        print("\n== chunk-size sweep, MA inter (L384): median ms (min ms) ==")
        for name in names:
            print(f"{name:<10} fwd {fwd[name][0] * 1e3:7.1f} ({fwd[name][1] * 1e3:6.1f})   "
                  f"fwd+bwd {fb[name][0] * 1e3:7.1f} ({fb[name][1] * 1e3:6.1f})")


if __name__ == "__main__":
    main()
