"""Selective scan (S6, paper Eqs. 22-23; official-implementation.md sec. 1.5): mambapro's own op with three backends.

Semantics of mamba-ssm's ``selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None,
delta_softplus=False)``, with u, delta [B, D, L], A [D, N], input-dependent B, C [B, N, L], D and delta_bias [D]::

    Δ = softplus(delta + delta_bias) (or delta + delta_bias),  dA_t = exp(Δ_t A),
    h_t = dA_t ⊙ h_{t-1} + Δ_t B_t u_t,   y_t = C_t · h_t + D u_t,   out = y ⊙ SiLU(z) when z is given.

Backends (``backend=`` / ``AggregationConfig.scan_backend``):

* ``"cuda"``: mamba-ssm's CUDA kernel, the extension module ``selective_scan_cuda`` imported lazily on its own
  (``import mamba_ssm`` pulls transformers, triton, ... and fails on a CPU-only machine), called through
  :class:`SelectiveScanCuda`.  ``tools/install_mamba_scan.sh`` builds it from PyPI's mamba-ssm sdist.  Asking for it
  without CUDA tensors or the kernel is an error naming the import error and that fix.
* ``"native"``: a small C kernel compiled on first use (:mod:`mambapro.native_scan`), the CPU default when a C
  compiler works: each row's states stay in a buffer of L·N values, nothing of size B·D·L·N is written, so it is
  several times faster than ``"chunked"`` on a memory-bound CPU (``benchmarks/scan_backends.py``).  CPU only.
* ``"chunked"``: pure PyTorch, the CPU fallback, also runs on GPU.  A custom autograd Function walks the sequence in
  chunks with the plain recurrence (no cumulative products, no exp of cumulative sums, so nothing can overflow for
  long sequences or large Δ·A), keeps only the chunk-boundary states for the backward and recomputes each chunk's
  states there, running the adjoint recurrence in reverse.
* ``"reference"``: a plain sequential loop differentiated by autograd; the ground truth of the tests.

``"auto"`` picks ``"cuda"`` when the kernel imports and the tensors are on CUDA, ``"native"`` on the CPU when its
kernel builds, else ``"chunked"``; the choice is logged once per request (a warning with the import error for a
fallback on CUDA) and returned by :func:`resolve_backend` (the SSM module stores it as ``ssm.backend``);
:func:`describe_backend` gives it as one line with the reason for any fallback, for the start of a run.

FLOPs: :func:`fvcore_handles` counts the official formula (``modeling/fusion_part/mamba.py:27-48``, sec. 6):
9·B·L·D·N, + B·D·L with D, + B·D·L with z.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F

from mambapro.registry import SCAN_BACKENDS

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 16  # from benchmarks/scan_backends.py --chunks: 8-16 best, 64 ~30% slower (fwd+bwd, 2 cores)
_logged: set[tuple[str, str]] = set()  # (backend, requested) pairs already logged


# --------------------------------------------------------------------------------------------------------------
# Backend selection

KERNEL_MODULE = "selective_scan_cuda"  # mamba-ssm's compiled selective-scan extension, a top-level module
INSTALL_HINT = ("build it for this GPU with `bash tools/install_mamba_scan.sh` (mamba-ssm's kernel from its PyPI "
                "sdist, nothing else of mamba-ssm)")


@functools.lru_cache(maxsize=1)
def _cuda_kernel() -> tuple[object | None, str]:
    """mamba-ssm's kernel module ``selective_scan_cuda`` or None, with its import error.  Imported on its own, not
    through ``mamba_ssm`` (whose ``__init__`` pulls transformers, triton and causal-conv1d, any of which can break the
    import); :class:`SelectiveScanCuda` calls it as mamba-ssm's ``SelectiveScanFn`` does."""
    try:
        import selective_scan_cuda
    except Exception as err:  # ImportError, or OSError from a kernel built against another torch / CUDA
        return None, f"{type(err).__name__}: {err}"
    return selective_scan_cuda, ""


def _resolve(requested: str, device: torch.device | str) -> tuple[str, str]:
    """(backend that runs, why it is not the fastest one for the device, or "")."""
    SCAN_BACKENDS.get(requested)  # an unknown name lists the registered ones
    on_cuda = torch.device(device).type == "cuda"
    if requested == "cuda":
        kernel, why = _cuda_kernel()
        if not on_cuda:
            raise RuntimeError(f"aggregation.scan_backend = 'cuda' needs CUDA tensors, but tensors are on "
                               f"{torch.device(device)}; use 'auto' or 'chunked'")
        if kernel is None:
            raise RuntimeError(f"aggregation.scan_backend = 'cuda' needs CUDA tensors and mamba-ssm's kernel module "
                               f"{KERNEL_MODULE!r}, which does not import ({why}); {INSTALL_HINT}, or use "
                               "scan_backend 'auto' / 'chunked' (pure PyTorch, slower)")
        return "cuda", ""
    if requested == "native":
        from mambapro import native_scan

        if on_cuda or not native_scan.available():
            problem = "tensors are on CUDA" if on_cuda else native_scan.unavailable_reason()
            raise RuntimeError(f"aggregation.scan_backend = 'native' runs on the CPU with a working C compiler, but "
                               f"{problem}; use 'auto' or 'chunked'")
        return "native", ""
    if requested != "auto":
        return requested, ""
    if on_cuda:
        why = _cuda_kernel()[1]
        if why:
            return "chunked", f"mamba-ssm's kernel {KERNEL_MODULE!r} does not import ({why}); {INSTALL_HINT}"
        return "cuda", ""
    from mambapro import native_scan

    if native_scan.available():
        return "native", ""
    return "chunked", f"the native C kernel is unavailable ({native_scan.unavailable_reason()})"


def resolve_backend(requested: str, device: torch.device | str) -> str:
    """The backend that runs for ``requested`` on ``device``; logs the choice once per (backend, request) (a warning
    with the import error when ``"auto"`` on CUDA falls back to ``"chunked"``)."""
    chosen, why = _resolve(requested, device)
    if (chosen, requested) not in _logged:
        _logged.add((chosen, requested))
        if why and torch.device(device).type == "cuda":
            log.warning("selective scan backend: %s (requested %r, device %s): %s", chosen, requested,
                        torch.device(device), why)
        else:
            log.info("selective scan backend: %s (requested %r, device %s)", chosen, requested, torch.device(device))
    return chosen


_KIND = {"cuda": "mamba-ssm CUDA kernel", "native": "C kernel on the CPU", "chunked": "pure PyTorch",
         "reference": "sequential PyTorch loop, slow"}


def describe_backend(requested: str, device: torch.device | str) -> str:
    """One line for the start of a run: the scan backend that runs for ``requested`` on ``device``, and why it is
    not the fastest one there (with the import error).  Raises as :func:`resolve_backend` for an impossible
    request (``"cuda"`` without the kernel), so a run stops before any work."""
    chosen, why = _resolve(requested, device)
    where = f"requested {requested!r} on {torch.device(device)}"
    if chosen == "cuda":
        where += f", {getattr(_cuda_kernel()[0], '__file__', KERNEL_MODULE)}"
    return f"selective scan: {chosen} ({_KIND[chosen]}; {where})" + (f"; fallback because {why}" if why else "")


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, backend="auto",
                   chunk_size: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Selective scan with mamba-ssm's signature; ``backend`` as in the module docstring.  Returns [B, D, L]."""
    chosen = resolve_backend(backend, u.device)
    extra = {"chunk_size": chunk_size} if chosen == "chunked" else {}
    return SCAN_BACKENDS.get(chosen).obj(u, delta, A, B, C, D, z, delta_bias, delta_softplus, **extra)


def _check_shapes(u, delta, A, B, C, D, z, delta_bias) -> None:
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(f"selective scan: u and delta must both be [B, D, L], got {tuple(u.shape)} / "
                         f"{tuple(delta.shape)}")
    b, d, length = u.shape
    if A.dim() != 2 or A.shape[0] != d:
        raise ValueError(f"selective scan: A must be [D={d}, N], got {tuple(A.shape)}")
    n = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if tuple(t.shape) != (b, n, length):
            raise ValueError(f"selective scan: {name} must be [B, N, L] = {(b, n, length)}, got {tuple(t.shape)}")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and tuple(t.shape) != (d,):
            raise ValueError(f"selective scan: {name} must be [D] = ({d},), got {tuple(t.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"selective scan: z must be [B, D, L] = {tuple(u.shape)}, got {tuple(z.shape)}")


def _compute_dtype(u: torch.Tensor) -> torch.dtype:
    """fp64 stays fp64; fp32 and half precision run in fp32, like the CUDA kernel."""
    return torch.float64 if u.dtype == torch.float64 else torch.float32


# --------------------------------------------------------------------------------------------------------------
# Reference: autograd over a Python loop


def selective_scan_reference(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Sequential scan, one step per token, differentiated by autograd; the tests' ground truth.  Autograd keeps every
    step's tensors, so its backward needs about 3x the chunked backend's memory (benchmarks/scan_backends.py)."""
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    dtype, cd = u.dtype, _compute_dtype(u)
    u, delta, A, B, C = (t.to(cd) for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.to(cd)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for t in range(u.shape[2]):
        dt = delta[:, :, t, None]
        h = torch.exp(dt * A) * h + (dt * u[:, :, t, None]) * B[:, None, :, t]
        ys.append((h * C[:, None, :, t]).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + u * D.to(cd)[:, None]
    if z is not None:
        y = y * F.silu(z.to(cd))
    return y.to(dtype)


# --------------------------------------------------------------------------------------------------------------
# Chunked: recurrence in chunks, boundary states saved, chunk states recomputed in the backward


def _chunk_states(h0, dA, H):
    """In place: turn ``H`` [T, B, D, N], holding Δ_t u_t B_t, into the states h_t = dA_t h_{t-1} + Δ_t u_t B_t of a
    chunk started from h0."""
    H[0].addcmul_(dA[0], h0)
    for t in range(1, dA.shape[0]):
        H[t].addcmul_(dA[t], H[t - 1])
    return H


def _fill_chunk(dA, H, dt, dtu, A, Bt):
    """dA_t = exp(Δ_t A) and Δ_t u_t B_t written into preallocated chunk buffers."""
    torch.mul(dt[:, :, :, None], A, out=dA).exp_()
    torch.mul(dtu[:, :, :, None], Bt[:, :, None, :], out=H)


@contextlib.contextmanager
def _untraced():
    """Inside a traced autograd Function, keep the per-step ops out of the jit trace: fvcore only needs the single
    ``prim::PythonOp`` node, and recording thousands of inner ops made tracing take minutes at long sequences."""
    get, put = getattr(torch._C, "_get_tracing_state", None), getattr(torch._C, "_set_tracing_state", None)
    state = get() if get is not None and put is not None else None
    if state is None:
        yield
        return
    put(None)
    try:
        yield
    finally:
        put(state)


class SelectiveScanChunked(torch.autograd.Function):
    """The chunked backend.  Time-major internally ([L, B, D(, N)]) so that each step is one contiguous slice; the
    chunk buffers ([T, B, D, N]) are allocated once per call and reused, which keeps them in cache."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk_size):
        dtype, cd = u.dtype, _compute_dtype(u)
        with _untraced(), torch.autocast(u.device.type, enabled=False):
            ut = u.to(cd).permute(2, 0, 1).contiguous()  # [L, B, D]
            Bt, Ct = (t.to(cd).permute(2, 0, 1).contiguous() for t in (B, C))  # [L, B, N]
            Ac = A.to(cd)
            dt = _delta(delta.to(cd), delta_bias, delta_softplus, cd).permute(2, 0, 1).contiguous()
            dtu = dt * ut
            length, b, d = ut.shape
            n = Ac.shape[1]
            T = min(chunk_size, length)
            y = ut.new_empty(length, b, d, 1)
            starts = range(0, length, T)
            states = ut.new_empty(len(starts), b, d, n)
            dA_buf, H_buf = ut.new_empty(T, b, d, n), ut.new_empty(T, b, d, n)
            states[0].zero_()
            for k, s in enumerate(starts):
                e = min(s + T, length)
                dA, H = dA_buf[: e - s], H_buf[: e - s]
                if k:
                    states[k].copy_(H_buf[T - 1])  # the previous chunk's last state, before the buffer is reused
                _fill_chunk(dA, H, dt[s:e], dtu[s:e], Ac, Bt[s:e])
                _chunk_states(states[k], dA, H)
                torch.matmul(H, Ct[s:e, :, :, None], out=y[s:e])
            y = y.squeeze(-1)
            if D is not None:
                y.addcmul_(ut, D.to(cd))
            out = y.permute(1, 2, 0)
            if z is not None:
                out = out * F.silu(z.to(cd))
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, states, dt)  # dt: Δ, [L, B, D], spares a softplus
        ctx.delta_softplus, ctx.chunk = delta_softplus, T
        return out.to(dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gout):
        u, delta, A, B, C, D, z, delta_bias, states, dt = ctx.saved_tensors
        cd, T = _compute_dtype(u), ctx.chunk
        with torch.autocast(u.device.type, enabled=False):
            ut = u.to(cd).permute(2, 0, 1).contiguous()
            Bt, Ct = (t.to(cd).permute(2, 0, 1).contiguous() for t in (B, C))
            Ac = A.to(cd)
            dtu = dt * ut
            g_out = gout.to(cd).permute(2, 0, 1)  # [L, B, D]
            if z is not None:
                zt = z.to(cd).permute(2, 0, 1)
                sig = torch.sigmoid(zt)
                gy = (g_out * zt * sig).contiguous()  # through the SiLU(z) gate
                y_ssm = torch.empty_like(ut)[..., None]  # C·h, recomputed chunk by chunk for dL/dz
            else:
                gy = g_out.contiguous()
            length, b, d = ut.shape
            n = Ac.shape[1]
            g_dtu, gdt = torch.empty_like(ut), torch.empty_like(ut)
            gB, gC = torch.empty_like(Bt), torch.empty_like(Ct)
            gA = torch.zeros_like(Ac)
            dA_buf, H_buf, G_buf = (ut.new_empty(T, b, d, n) for _ in range(3))
            carry = None  # dA_{s'} ⊙ G_{s'} of the next chunk's first step s': the gradient reaching this chunk's end
            for k in range(states.shape[0] - 1, -1, -1):
                s, e = k * T, min((k + 1) * T, length)
                dA, H, G = dA_buf[: e - s], H_buf[: e - s], G_buf[: e - s]
                h0 = states[k]
                _fill_chunk(dA, H, dt[s:e], dtu[s:e], Ac, Bt[s:e])
                _chunk_states(h0, dA, H)
                if z is not None:
                    torch.matmul(H, Ct[s:e, :, :, None], out=y_ssm[s:e])
                torch.matmul(gy[s:e, :, None, :], H, out=gC[s:e, :, None, :])
                torch.mul(gy[s:e, :, :, None], Ct[s:e, :, None, :], out=G)  # dL/dh_t, completed backwards in place
                if carry is not None:
                    G[-1].add_(carry)
                for t in range(e - s - 2, -1, -1):
                    G[t].addcmul_(dA[t + 1], G[t + 1])
                carry = dA[0] * G[0]
                # h_t = dA_t h_{t-1} + (Δ_t u_t) B_t
                torch.matmul(G, Bt[s:e, :, :, None], out=g_dtu[s:e, :, :, None])
                torch.matmul(dtu[s:e, :, None, :], G, out=gB[s:e, :, None, :])
                # dA_t = exp(Δ_t A): dL/d(Δ_t A) = G_t ⊙ h_{t-1} ⊙ dA_t, in place in G
                G[1:].mul_(H[:-1])
                G[0].mul_(h0)
                G.mul_(dA)
                torch.sum(torch.mul(G, Ac, out=dA), -1, out=gdt[s:e])  # dA is free now: scratch space
                gA += G.mul_(dt[s:e, :, :, None]).sum((0, 1))
            gdt.addcmul_(g_dtu, ut)
            gu = g_dtu.mul_(dt)
            gD = gz = None
            if D is not None:
                gu.addcmul_(gy, D.to(cd))
                gD = (gy * ut).sum((0, 1)).to(D.dtype)
            if z is not None:
                y = y_ssm.squeeze(-1)
                if D is not None:
                    y.addcmul_(ut, D.to(cd))
                gz = (g_out * y * sig * (1 + zt * (1 - sig))).permute(1, 2, 0).to(z.dtype)
            gdt = gdt.permute(1, 2, 0)
            if ctx.delta_softplus:  # F.softplus's own derivative: linear above its threshold of 20
                pre = delta.to(cd) if delta_bias is None else delta.to(cd) + delta_bias.to(cd)[:, None]
                gdt = gdt * torch.where(pre > 20, 1.0, torch.sigmoid(pre))
            g_bias = gdt.sum((0, 2)).to(delta_bias.dtype) if delta_bias is not None else None
        back = [g.permute(1, 2, 0) for g in (gu, gB, gC)]
        return (back[0].to(u.dtype), gdt.to(delta.dtype), gA.to(A.dtype), back[1].to(B.dtype), back[2].to(C.dtype),
                gD, gz, g_bias, None, None)


def _delta(dt_raw, delta_bias, delta_softplus, cd):
    """Δ = softplus(delta + delta_bias) (or without the softplus), on [B, D, L]."""
    if delta_bias is not None:
        dt_raw = dt_raw + delta_bias.to(cd)[:, None]
    return F.softplus(dt_raw) if delta_softplus else dt_raw


def selective_scan_chunked(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                           chunk_size: int = DEFAULT_CHUNK) -> torch.Tensor:
    """The chunked pure-PyTorch backend (see :class:`SelectiveScanChunked`)."""
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    if chunk_size < 1:
        raise ValueError(f"selective scan: chunk_size must be >= 1, got {chunk_size}")
    return SelectiveScanChunked.apply(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus), int(chunk_size))


# --------------------------------------------------------------------------------------------------------------
# Native: the C kernel of mambapro.native_scan


class SelectiveScanNative(torch.autograd.Function):
    """scan(u, Δ, A, B, C) + D·u with the C kernel (Δ already through delta_bias and softplus, which autograd
    differentiates outside).  Arguments u, Δ, A, B, C, D, as the fvcore handle reads them."""

    @staticmethod
    def forward(ctx, u, dt, A, B, C, D):
        from mambapro import native_scan

        cd = _compute_dtype(u)
        ctx.dtypes = tuple(t.dtype for t in (u, dt, A, B, C))
        with _untraced():
            u, dt, A, B, C = (t.detach().to(cd).contiguous() for t in (u, dt, A, B, C))
            y = native_scan.scan_forward(u, dt, A, B, C)
            if D is not None:
                y.addcmul_(u, D.detach().to(cd)[:, None])
        ctx.save_for_backward(u, dt, A, B, C, D)
        return y.to(ctx.dtypes[0])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy):
        from mambapro import native_scan

        u, dt, A, B, C, D = ctx.saved_tensors
        gy = gy.to(u.dtype).contiguous()
        grads = list(native_scan.scan_backward(u, dt, A, B, C, gy))
        gD = None
        if D is not None:
            grads[0].addcmul_(gy, D.to(u.dtype)[:, None])
            gD = (gy * u).sum((0, 2)).to(D.dtype)
        return (*(g.to(t) for g, t in zip(grads, ctx.dtypes)), gD)


def selective_scan_native(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False) -> torch.Tensor:
    """The native backend (see :class:`SelectiveScanNative`); CPU tensors only."""
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    cd = _compute_dtype(u)
    dt = _delta(delta.to(cd), delta_bias, delta_softplus, cd)
    y = SelectiveScanNative.apply(u, dt, A, B, C, None if D is None else D.to(cd))
    if z is not None:
        y = y * F.silu(z.to(cd))
    return y.to(u.dtype)


# --------------------------------------------------------------------------------------------------------------
# CUDA: mamba-ssm's kernel module, called directly


class SelectiveScanCuda(torch.autograd.Function):
    """``selective_scan_cuda.fwd`` / ``.bwd`` as mamba-ssm's ``SelectiveScanFn`` calls them, with the kernel's input
    rules met here: u, Δ, B, C, z in one dtype (u's if fp16 / bf16, else fp32), A, D, delta_bias in fp32, the last
    dimension contiguous, B and C as one group [B, 1, N, L].  Outputs and gradients come back in the callers'
    dtypes."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        kernel = _cuda_kernel()[0]
        if kernel is None:
            raise RuntimeError(f"mamba-ssm's kernel module {KERNEL_MODULE!r} does not import ({_cuda_kernel()[1]}); "
                               f"{INSTALL_HINT}")
        ctx.dtypes = [None if t is None else t.dtype for t in (u, delta, A, B, C, D, z, delta_bias)]
        it = u.dtype if u.dtype in (torch.float16, torch.bfloat16) else torch.float32

        def prep(t, dtype, group=False):
            return None if t is None else (t.to(dtype).unsqueeze(1) if group else t.to(dtype)).contiguous()

        u, delta, z = prep(u, it), prep(delta, it), prep(z, it)
        B, C = prep(B, it, group=True), prep(C, it, group=True)
        A, D, delta_bias = (prep(t, torch.float32) for t in (A, D, delta_bias))
        out, x, *rest = kernel.fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
        ctx.delta_softplus = delta_softplus
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, x, out if z is not None else None)
        return (rest[0] if z is not None else out).to(ctx.dtypes[0])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gout):
        u, delta, A, B, C, D, z, delta_bias, x, out = ctx.saved_tensors
        du, ddelta, dA, dB, dC, dD, dbias, *rest = _cuda_kernel()[0].bwd(
            u, delta, A, B, C, D, z, delta_bias, gout.to(u.dtype).contiguous(), x, out, None, ctx.delta_softplus,
            False)
        grads = (du, ddelta, dA, dB.squeeze(1), dC.squeeze(1), dD, rest[0] if z is not None else None, dbias)
        return (*(None if t is None else g.to(t) for g, t in zip(grads, ctx.dtypes)), None)


def selective_scan_mamba(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False) -> torch.Tensor:
    """The ``"cuda"`` backend (see :class:`SelectiveScanCuda`); CUDA tensors and the kernel module needed."""
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    return SelectiveScanCuda.apply(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus))


# --------------------------------------------------------------------------------------------------------------
# FLOPs


def scan_flops(batch: int, length: int, channels: int, d_state: int, with_d: bool, with_z: bool) -> int:
    """Official count (sec. 6): 9·B·L·D·N, + B·D·L with D, + B·D·L with z (fvcore convention, one MAC = one FLOP)."""
    flops = 9 * batch * length * channels * d_state
    return flops + batch * channels * length * (int(with_d) + int(with_z))


def _scan_flop_handle(inputs, outputs) -> int:
    """fvcore handle for a traced scan Function (``prim::PythonOp``): positional arguments are rebuilt from the node's
    calling convention ('d' = traced tensor input, 'c' = constant such as None), so optional D / z are detected."""
    node = outputs[0].node()
    dynamic, scalars = iter(inputs), iter(node.scalar_args())
    args = [next(dynamic) if c == "d" else next(scalars) for c in node.cconv()]
    u_shape = args[0].type().sizes()
    a_shape = args[2].type().sizes()
    with_d = len(args) > 5 and isinstance(args[5], torch._C.Value)
    with_z = len(args) > 6 and isinstance(args[6], torch._C.Value)
    batch, channels, length = u_shape
    return scan_flops(batch, length, channels, a_shape[1], with_d, with_z)


def fvcore_handles() -> dict[str, Callable]:
    """fvcore op handles for the scan, keyed by the names fvcore gives traced autograd Functions
    (``prim::PythonOp.<class name>``): this module's chunked, native and CUDA Functions and mamba-ssm's
    ``SelectiveScanFn``.
    The reference backend traces as a loop of elementwise ops and is not counted."""
    names = [e.facts["traced"] for e in SCAN_BACKENDS.entries() if e.facts["traced"]] + ["SelectiveScanFn"]
    return {f"prim::PythonOp.{name}": _scan_flop_handle for name in names}


# The backends (:data:`mambapro.registry.SCAN_BACKENDS`, in the configuration's order): the function that runs the
# scan (None for "auto", which :func:`resolve_backend` maps to one of the others) and ``traced``, the autograd
# Function fvcore sees (None: the reference loop, traced as elementwise ops and not counted).
SCAN_BACKENDS.register("auto", None, traced=None)
SCAN_BACKENDS.register("cuda", selective_scan_mamba, traced="SelectiveScanCuda")
SCAN_BACKENDS.register("native", selective_scan_native, traced="SelectiveScanNative")
SCAN_BACKENDS.register("chunked", selective_scan_chunked, traced="SelectiveScanChunked")
SCAN_BACKENDS.register("reference", selective_scan_reference, traced=None)


__all__ = [
    "DEFAULT_CHUNK", "INSTALL_HINT", "KERNEL_MODULE", "SelectiveScanChunked", "SelectiveScanCuda",
    "SelectiveScanNative", "describe_backend", "fvcore_handles", "resolve_backend", "scan_flops", "selective_scan",
    "selective_scan_chunked", "selective_scan_mamba", "selective_scan_native", "selective_scan_reference",
]
