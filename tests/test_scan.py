"""Selective scan backends (mambapro/scan.py, mambapro/native_scan.py): chunked and native == sequential reference
(outputs and every input gradient), numerical safety, backend selection and reporting, and the fvcore FLOP handle
(official formula, sec. 6)."""

from __future__ import annotations

import functools
import logging
import math
import subprocess
import sys
import types
import warnings
from pathlib import Path

import pytest
import torch

from mambapro import native_scan, scan
from mambapro.scan import (
    describe_backend,
    fvcore_handles,
    resolve_backend,
    scan_flops,
    selective_scan,
    selective_scan_chunked,
    selective_scan_native,
    selective_scan_reference,
)

needs_native = pytest.mark.skipif(not native_scan.available(), reason="no working C compiler here")

ARG_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def make_inputs(b, d, n, length, dtype, delta_max=1.0, seed=0, with_d=True, with_z=False, with_bias=True):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype)

    args = {
        "u": rnd(b, d, length),
        "delta": torch.rand(b, d, length, generator=g, dtype=dtype) * delta_max,  # pre-softplus Δ in [0, max)
        "A": -torch.rand(d, n, generator=g, dtype=dtype) * 16 - 0.1,  # like -exp(A_log), A_log = log(1..16)
        "B": rnd(b, n, length),
        "C": rnd(b, n, length),
        "D": rnd(d) if with_d else None,
        "z": rnd(b, d, length) if with_z else None,
        "delta_bias": rnd(d) * 0.5 if with_bias else None,
    }
    for v in args.values():
        if v is not None:
            v.requires_grad_(True)
    return args


def run(fn, args, softplus, **kw):
    y = fn(**args, delta_softplus=softplus, **kw)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(7), dtype=y.dtype)
    names = [k for k, v in args.items() if v is not None]
    grads = torch.autograd.grad(y, [args[k] for k in names], g)
    return y.detach(), dict(zip(names, grads))


def assert_rel_close(actual, expected, tol, what):
    """Norm-wise relative error (elementwise relative error is ill-posed where values cross zero)."""
    scale = expected.norm().item()
    err = (actual - expected).norm().item()
    assert torch.isfinite(actual).all(), f"{what}: non-finite values"
    assert err <= tol * max(scale, 1e-30) or err <= 1e-30, f"{what}: relative error {err / max(scale, 1e-30):.2e}"


CASES = [  # (B, D, N, L, chunk, delta_max, softplus, with_d, with_z, with_bias)
    (2, 3, 4, 1, 16, 1.0, True, True, False, True),  # L = 1
    (2, 5, 3, 13, 4, 10.0, True, True, True, True),  # L not divisible by the chunk, Δ up to 10, with z
    (3, 8, 16, 37, 16, 3.0, False, False, False, False),  # no D, no bias, no softplus
    (1, 4, 2, 64, 64, 10.0, True, True, True, False),  # one chunk exactly
    (2, 6, 5, 100, 7, 0.5, True, True, False, True),  # many odd chunks
]


@pytest.mark.parametrize("backend", ["chunked", pytest.param("native", marks=needs_native)])
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"B{c[0]}D{c[1]}N{c[2]}L{c[3]}c{c[4]}")
def test_backend_matches_reference(case, dtype, tol, backend):
    b, d, n, length, chunk, delta_max, softplus, with_d, with_z, with_bias = case
    args = make_inputs(b, d, n, length, dtype, delta_max, with_d=with_d, with_z=with_z, with_bias=with_bias)
    y_ref, g_ref = run(selective_scan_reference, args, softplus)
    if backend == "chunked":
        y, g = run(selective_scan_chunked, args, softplus, chunk_size=chunk)
    else:
        y, g = run(selective_scan_native, args, softplus)
    assert y.dtype == dtype and y.shape == (b, d, length)
    assert_rel_close(y, y_ref, tol, "output")
    assert set(g) == set(g_ref)
    for name in g_ref:
        assert_rel_close(g[name], g_ref[name], tol, f"d/d{name}")


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_long_sequence_matches_reference(dtype, tol):
    """L = 6144 (small B, D, N), Δ up to 10: chunk boundaries, long products of decays, no drift."""
    args = make_inputs(1, 3, 4, 6144, dtype, delta_max=10.0, seed=3, with_z=True)
    y_ref, g_ref = run(selective_scan_reference, args, True)
    y, g = run(selective_scan_chunked, args, True, chunk_size=64)
    assert_rel_close(y, y_ref, tol, "output")
    for name in g_ref:
        assert_rel_close(g[name], g_ref[name], tol, f"d/d{name}")


def test_large_delta_a_is_finite():
    """Δ·A down to about -1e5 (a cumulative-sum formulation would overflow exp) gives finite outputs and gradients
    that still match the reference."""
    args = make_inputs(2, 4, 16, 300, torch.float32, delta_max=1.0, seed=5)
    with torch.no_grad():
        args["delta"].mul_(2000.0)  # softplus(x) ≈ x: Δ up to 2000, |A| up to 16
    y_ref, g_ref = run(selective_scan_reference, args, True)
    y, g = run(selective_scan_chunked, args, True, chunk_size=32)
    assert_rel_close(y, y_ref, 1e-5, "output")
    for name in g_ref:
        assert_rel_close(g[name], g_ref[name], 1e-5, f"d/d{name}")


def test_recurrence_by_hand():
    """One channel, one state, no softplus: h_t = exp(Δ_t a) h_{t-1} + Δ_t b_t u_t, y_t = c_t h_t + D u_t."""
    u = torch.tensor([[[1.0, 2.0, -1.0]]], dtype=torch.float64)
    delta = torch.tensor([[[0.5, 1.0, 2.0]]], dtype=torch.float64)
    a, bb, cc, dd = -0.7, [0.3, -1.2, 0.8], [1.5, 0.4, -2.0], 0.25
    h, expected = 0.0, []
    for t in range(3):
        h = math.exp(delta[0, 0, t].item() * a) * h + delta[0, 0, t].item() * bb[t] * u[0, 0, t].item()
        expected.append(cc[t] * h + dd * u[0, 0, t].item())
    A = torch.tensor([[a]], dtype=torch.float64)
    B = torch.tensor([[bb]], dtype=torch.float64)
    C = torch.tensor([[cc]], dtype=torch.float64)
    D = torch.tensor([dd], dtype=torch.float64)
    for backend in ("chunked", "reference", "native") if native_scan.available() else ("chunked", "reference"):
        y = selective_scan(u, delta, A, B, C, D, backend=backend, chunk_size=2)
        torch.testing.assert_close(y[0, 0], torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)


@needs_native
def test_native_long_sequence_and_large_delta_a():
    """L = 6144 with Δ up to 10, and Δ·A down to about -3e4 (the kernel's exp saturates at e^-87): finite, and equal
    to the reference; MA's own shape (d_state 16, L = 3 x 32) too."""
    for shape, delta_max, scale in (((1, 3, 4, 6144), 10.0, 1.0), ((2, 4, 16, 300), 1.0, 2000.0),
                                    ((4, 24, 16, 96), 1.0, 1.0)):
        args = make_inputs(*shape, torch.float32, delta_max=delta_max, seed=5, with_z=True)
        with torch.no_grad():
            args["delta"].mul_(scale)
        y_ref, g_ref = run(selective_scan_reference, args, True)
        y, g = run(selective_scan_native, args, True)
        assert_rel_close(y, y_ref, 1e-5, f"{shape} output")
        for name in g_ref:
            assert_rel_close(g[name], g_ref[name], 1e-5, f"{shape} d/d{name}")


@needs_native
def test_native_gradcheck_and_determinism():
    args = make_inputs(1, 2, 3, 5, torch.float64, delta_max=2.0, seed=11, with_z=True)
    names = [k for k, v in args.items() if v is not None]

    def f(*tensors):
        return selective_scan_native(**dict(zip(names, tensors)), delta_softplus=True)

    assert torch.autograd.gradcheck(f, tuple(args[k] for k in names))
    args = make_inputs(3, 16, 16, 40, torch.float32, seed=4)
    (y1, g1), (y2, g2) = run(selective_scan_native, args, True), run(selective_scan_native, args, True)
    assert torch.equal(y1, y2) and all(torch.equal(g1[k], g2[k]) for k in g1)


def test_native_unavailable_falls_back_to_chunked(monkeypatch, tmp_path):
    """Without a working compiler, "auto" runs the chunked scan and asking for "native" says why it cannot."""
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("MAMBAPRO_CACHE_DIR", str(tmp_path / "cache"))
    native_scan._library.cache_clear()
    try:
        assert resolve_backend("auto", "cpu") == "chunked"
        with pytest.raises(RuntimeError, match="scan_backend = 'native'.*no-such-compiler"):
            resolve_backend("native", "cpu")
    finally:
        native_scan._library.cache_clear()


@needs_native
def test_native_builds_once_into_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MAMBAPRO_CACHE_DIR", str(tmp_path))
    native_scan._library.cache_clear()
    try:
        assert native_scan.available()
        built = list(tmp_path.glob("selective_scan_cpu-*.so"))
        assert len(built) == 1 and not [p for p in tmp_path.iterdir() if p not in built]  # no temporaries left
        native_scan._library.cache_clear()
        assert native_scan.available() and list(tmp_path.glob("*.so")) == built
    finally:
        native_scan._library.cache_clear()


def test_chunked_gradcheck():
    args = make_inputs(1, 2, 3, 5, torch.float64, delta_max=2.0, seed=11, with_z=True)
    names = [k for k, v in args.items() if v is not None]

    def f(*tensors):
        return selective_scan_chunked(**dict(zip(names, tensors)), delta_softplus=True, chunk_size=2)

    assert torch.autograd.gradcheck(f, tuple(args[k] for k in names))


def test_half_precision_runs_in_fp32():
    args = make_inputs(1, 4, 3, 9, torch.float32, seed=2)
    ref = selective_scan_reference(**args, delta_softplus=True)
    half = {k: (v.detach().bfloat16() if v is not None else None) for k, v in args.items()}
    y = selective_scan_chunked(**half, delta_softplus=True)
    assert y.dtype == torch.bfloat16
    assert_rel_close(y.float(), ref.detach(), 3e-2, "bf16 output")


def test_bad_shapes_raise():
    args = make_inputs(1, 4, 3, 9, torch.float32)
    args["B"] = args["B"][:, :, :5]
    with pytest.raises(ValueError, match="B must be"):
        selective_scan_chunked(**args)


# --------------------------------------------------------------------------------------------------------------
# Backend selection and reporting


@pytest.fixture
def no_kernel(monkeypatch):
    """mamba-ssm's kernel module made unimportable (as on every CPU-only machine)."""
    monkeypatch.setitem(sys.modules, scan.KERNEL_MODULE, None)
    scan._cuda_kernel.cache_clear()
    yield
    scan._cuda_kernel.cache_clear()


def make_fake_kernel(calls):
    """A stand-in ``selective_scan_cuda`` computing with the reference scan, which asserts the real kernel's input
    rules (selective_scan.cpp's TORCH_CHECKs) so the CPU tests check :class:`SelectiveScanCuda`'s marshalling."""
    mod = types.ModuleType(scan.KERNEL_MODULE)
    mod.__file__ = "/fake/selective_scan_cuda.so"

    def check(u, delta, A, B, C, D, z, delta_bias):
        it = u.dtype
        assert it in (torch.float32, torch.float16, torch.bfloat16)
        assert delta.dtype == B.dtype == C.dtype == it and (z is None or z.dtype == it)
        assert B.dim() == C.dim() == 4 and B.shape[1] == C.shape[1] == 1  # one group
        assert all(t.dtype == torch.float32 for t in (A, D, delta_bias) if t is not None)
        assert all(t.stride(-1) == 1 for t in (u, delta, B, C, D, z, delta_bias) if t is not None)

    def fwd(u, delta, A, B, C, D, z, delta_bias, softplus):
        calls.append("fwd")
        check(u, delta, A, B, C, D, z, delta_bias)
        out, out_z = (selective_scan_reference(u, delta, A, B[:, 0], C[:, 0], D, gate, delta_bias, softplus)
                      for gate in (None, z))
        return [out, torch.zeros(1), *([out_z] if z is not None else [])]

    def bwd(u, delta, A, B, C, D, z, delta_bias, dout, x, out, dz, softplus, recompute):
        calls.append("bwd")
        check(u, delta, A, B, C, D, z, delta_bias)
        assert dout.dtype == u.dtype and dout.stride(-1) == 1 and (out is not None) == (z is not None)
        leaves = [None if t is None else t.detach().requires_grad_() for t in (u, delta, A, B[:, 0], C[:, 0], D, z,
                                                                                delta_bias)]
        with torch.enable_grad():  # backward runs with grad mode off
            y = selective_scan_reference(*leaves, delta_softplus=softplus)
            grads = iter(torch.autograd.grad(y, [t for t in leaves if t is not None], dout))
        du, dd, dA, dB, dC, dD, dz, db = (None if t is None else next(grads) for t in leaves)
        return [du, dd, dA, dB.unsqueeze(1), dC.unsqueeze(1), dD, db, *([dz] if z is not None else [])]

    mod.fwd, mod.bwd = fwd, bwd
    return mod


@pytest.fixture
def fake_kernel(monkeypatch):
    """The fake kernel importable as ``selective_scan_cuda``, and mamba_ssm itself broken (as when its transformers /
    triton imports mismatch): the kernel must be found anyway."""
    calls = []
    monkeypatch.setitem(sys.modules, scan.KERNEL_MODULE, make_fake_kernel(calls))
    monkeypatch.setitem(sys.modules, "mamba_ssm", None)
    scan._cuda_kernel.cache_clear()
    yield calls
    scan._cuda_kernel.cache_clear()


CPU_AUTO = "native" if native_scan.available() else "chunked"


def test_auto_selects_native_or_chunked_on_cpu(no_kernel):
    assert resolve_backend("auto", "cpu") == CPU_AUTO
    assert resolve_backend("auto", "cuda") == "chunked"  # CUDA device but no kernel
    assert resolve_backend("reference", "cpu") == "reference"


def test_auto_selects_cuda_kernel_without_importing_mamba_ssm(fake_kernel):
    assert resolve_backend("auto", "cuda") == "cuda"
    assert resolve_backend("auto", "cpu") == CPU_AUTO
    assert resolve_backend("cuda", "cuda:0") == "cuda"
    assert describe_backend("auto", "cuda:0") == (
        "selective scan: cuda (mamba-ssm CUDA kernel; requested 'auto' on cuda:0, /fake/selective_scan_cuda.so)")


def test_cuda_request_without_cuda_is_a_clear_error(fake_kernel):
    with pytest.raises(RuntimeError, match="scan_backend = 'cuda' needs CUDA tensors.*tensors are on cpu"):
        resolve_backend("cuda", "cpu")


def test_cuda_request_without_kernel_names_it_the_import_error_and_the_fix(no_kernel):
    for fn in (resolve_backend, describe_backend):
        with pytest.raises(RuntimeError) as err:
            fn("cuda", "cuda")
        msg = str(err.value)
        assert "'selective_scan_cuda', which does not import (ModuleNotFoundError: import of selective_scan_cuda" \
            in msg
        assert "bash tools/install_mamba_scan.sh" in msg


def test_auto_fallback_on_cuda_is_described_with_the_import_error(no_kernel, caplog, monkeypatch):
    monkeypatch.setattr(scan, "_logged", set())
    line = describe_backend("auto", "cuda")
    assert line.startswith("selective scan: chunked (pure PyTorch; requested 'auto' on cuda); fallback because "
                           "mamba-ssm's kernel 'selective_scan_cuda' does not import (ModuleNotFoundError: ")
    assert "tools/install_mamba_scan.sh" in line
    with caplog.at_level(logging.INFO, logger="mambapro.scan"):
        resolve_backend("auto", "cuda")
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and "ModuleNotFoundError" in record.getMessage()
    line = describe_backend("chunked", "cuda")
    assert line == "selective scan: chunked (pure PyTorch; requested 'chunked' on cuda)"
    assert describe_backend("auto", "cpu").startswith(f"selective scan: {CPU_AUTO} (")


def test_import_error_text_is_recorded(monkeypatch):
    """A kernel built against another torch fails with an OSError / ImportError at import: kept verbatim."""
    import builtins

    real_import = builtins.__import__

    def failing(name, *a, **k):
        if name == scan.KERNEL_MODULE:
            raise ImportError("selective_scan_cuda.so: undefined symbol: _ZN3c104cuda9SetDevice")
        return real_import(name, *a, **k)

    monkeypatch.delitem(sys.modules, scan.KERNEL_MODULE, raising=False)
    monkeypatch.setattr(builtins, "__import__", failing)
    scan._cuda_kernel.cache_clear()
    try:
        assert "ImportError: selective_scan_cuda.so: undefined symbol" in describe_backend("auto", "cuda")
    finally:
        scan._cuda_kernel.cache_clear()


@pytest.mark.parametrize("with_z", [False, True])
def test_cuda_wrapper_meets_the_kernel_rules_and_matches_reference(fake_kernel, with_z):
    """SelectiveScanCuda's casts / group dimension / contiguity, checked on the CPU against the fake kernel."""
    args = make_inputs(2, 5, 4, 11, torch.float32, with_z=with_z)
    y_ref, g_ref = run(selective_scan_reference, args, True)
    y, g = run(scan.selective_scan_mamba, args, True)
    assert fake_kernel == ["fwd", "bwd"]
    torch.testing.assert_close(y, y_ref)
    for name in g_ref:
        torch.testing.assert_close(g[name], g_ref[name], rtol=1e-5, atol=1e-5)
    # AMP-like mixed inputs: u fp32, Δ / B / C fp16, non-contiguous; outputs and gradients in the callers' dtypes
    mixed = {k: v for k, v in make_inputs(2, 5, 4, 11, torch.float32).items()}
    for k in ("delta", "B", "C"):
        mixed[k] = mixed[k].detach().half().transpose(1, 2).contiguous().transpose(1, 2).requires_grad_()
    y, g = run(scan.selective_scan_mamba, mixed, True)
    assert y.dtype == torch.float32 and {k: t.dtype for k, t in g.items()} == {k: v.dtype for k, v in mixed.items()
                                                                               if v is not None}


def test_unknown_backend():
    with pytest.raises(ValueError, match="not one of: auto, cuda, native, chunked, reference"):
        resolve_backend("triton", "cpu")


def test_a_registered_backend_is_dispatched_and_counted(monkeypatch):
    """A backend registered in SCAN_BACKENDS alone runs through selective_scan, passes the configuration and gets
    fvcore's scan handle for its traced Function."""
    from mambapro.config import resolve_config

    calls = []

    def doubled(*args, **kw):
        calls.append(kw)
        return 2 * selective_scan_reference(*args)

    monkeypatch.setattr(scan, "_logged", set())
    scan.SCAN_BACKENDS.register("test_doubled", doubled, traced="SelectiveScanDoubled")
    try:
        args = make_inputs(1, 3, 2, 5, torch.float64)
        out = selective_scan(**args, delta_softplus=True, backend="test_doubled")
        expected = selective_scan_reference(**args, delta_softplus=True)
        assert calls == [{}] and torch.allclose(out, 2 * expected)
        assert resolve_config("bare", overrides={"aggregation.scan_backend": "test_doubled"})
        assert "prim::PythonOp.SelectiveScanDoubled" in fvcore_handles()
    finally:
        scan.SCAN_BACKENDS.unregister("test_doubled")


def test_backend_choice_logged_once(caplog, monkeypatch):
    monkeypatch.setattr(scan, "_logged", set())
    with caplog.at_level(logging.INFO, logger="mambapro.scan"):
        for _ in range(3):
            resolve_backend("chunked", "cpu")
    assert [r.getMessage() for r in caplog.records].count(
        "selective scan backend: chunked (requested 'chunked', device cpu)") == 1


def test_importing_mambapro_never_imports_mamba_ssm():
    """With mamba_ssm unimportable (as on any CPU-only machine), importing the scan and the aggregators works."""
    code = ("import sys; sys.modules['mamba_ssm'] = None; import mambapro.scan, mambapro.aggregation; "
            "assert 'selective_scan_cuda' not in sys.modules; print(mambapro.scan.resolve_backend('auto', 'cpu'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == CPU_AUTO


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CUDA test below runs the kernel itself")
@pytest.mark.parametrize("dtype, mixed", [(torch.float32, False), (torch.float16, False), (torch.float32, True),
                                          (torch.bfloat16, False)])
def test_built_kernel_accepts_the_wrappers_dtypes_on_a_machine_without_gpu(dtype, mixed):
    """With the real kernel built (tools/install_mamba_scan.sh with TORCH_CUDA_ARCH_LIST) but no GPU: its argument
    checks run in order, dtypes before devices, so CPU tensors reaching ``u.is_cuda()`` passed every dtype rule."""
    pytest.importorskip(scan.KERNEL_MODULE)
    scan._cuda_kernel.cache_clear()
    args = make_inputs(2, 8, 4, 16, dtype, with_z=True)
    if mixed:  # as under AMP: Δ, B, C in fp16, u in fp32
        args.update({k: args[k].detach().half().requires_grad_() for k in ("delta", "B", "C")})
    with pytest.raises(RuntimeError, match=r"Expected u.is_cuda\(\) to be true"):
        scan.selective_scan_mamba(**args, delta_softplus=True)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_backend_matches_chunked_and_reference():
    pytest.importorskip(scan.KERNEL_MODULE)
    scan._cuda_kernel.cache_clear()
    args = make_inputs(2, 64, 16, 300, torch.float32, delta_max=3.0, with_z=True)
    cuda_args = {k: (v.detach().cuda().requires_grad_() if v is not None else None) for k, v in args.items()}
    y_ref, g_ref = run(selective_scan_reference, args, True)
    for backend in ("cuda", "chunked"):
        y, g = run(functools.partial(selective_scan, backend=backend), cuda_args, True)
        assert_rel_close(y.cpu(), y_ref, 1e-4, f"{backend} output")
        for name in g_ref:
            assert_rel_close(g[name].cpu(), g_ref[name], 1e-3, f"{backend} d/d{name}")


# --------------------------------------------------------------------------------------------------------------
# FLOPs


def test_flop_formula_matches_official_scan_term():
    """Sec. 6: the scan term of one MA block is 0.114 G (3 SSMs over 128 tokens + 1 over 384, D 1024, N 16)."""
    intra = 3 * scan_flops(1, 128, 1024, 16, with_d=True, with_z=False)
    inter = scan_flops(1, 384, 1024, 16, with_d=True, with_z=False)
    assert round((intra + inter) / 1e9, 3) == 0.114
    assert scan_flops(2, 5, 3, 4, False, False) == 9 * 2 * 5 * 3 * 4
    assert scan_flops(2, 5, 3, 4, True, True) == 9 * 2 * 5 * 3 * 4 + 2 * 2 * 3 * 5


@pytest.mark.parametrize("backend", ["chunked", pytest.param("native", marks=needs_native)])
@pytest.mark.parametrize("with_d, with_z", [(True, False), (False, False), (True, True), (False, True)])
def test_fvcore_counts_the_traced_scan(with_d, with_z, backend):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from fvcore.nn import FlopCountAnalysis

    class Wrapper(torch.nn.Module):
        def forward(self, u, delta, A, B, C, D, z):
            return selective_scan(u, delta, A, B, C, D if with_d else None, z if with_z else None,
                                  delta_bias=D, delta_softplus=True, backend=backend)

    b, d, n, length = 2, 6, 4, 10
    args = make_inputs(b, d, n, length, torch.float32, with_z=True)
    inputs = tuple(args[k].detach() for k in ("u", "delta", "A", "B", "C", "D", "z"))
    analysis = FlopCountAnalysis(Wrapper(), inputs).set_op_handle(**fvcore_handles())
    analysis.unsupported_ops_warnings(False)
    assert {"prim::PythonOp.SelectiveScanChunked", "prim::PythonOp.SelectiveScanNative"} <= set(fvcore_handles())
    # the native Function leaves the SiLU(z) gate to autograd outside it, and fvcore counts no elementwise product
    assert analysis.total() == scan_flops(b, length, d, n, with_d, with_z and backend == "chunked")
    assert not any(k.startswith("prim::PythonOp") for k in analysis.unsupported_ops())


def test_fvcore_counts_the_cuda_wrapper(fake_kernel):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from fvcore.nn import FlopCountAnalysis

    class Wrapper(torch.nn.Module):
        def forward(self, u, delta, A, B, C, D, z):
            return scan.selective_scan_mamba(u, delta, A, B, C, D, z, delta_bias=D, delta_softplus=True)

    args = make_inputs(2, 6, 4, 10, torch.float32, with_z=True)
    inputs = tuple(args[k].detach() for k in ("u", "delta", "A", "B", "C", "D", "z"))
    analysis = FlopCountAnalysis(Wrapper(), inputs).set_op_handle(**fvcore_handles())
    analysis.unsupported_ops_warnings(False)
    assert analysis.total() == scan_flops(2, 10, 6, 4, True, True)
