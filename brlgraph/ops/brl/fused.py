"""Fused CPU kernel of non-causal BRL-Attention (C++, built on first use).

``fused_cpu.cpp`` computes the window, the write hop and the read hop of one
(sequence, head) in one pass over its tokens, forward and backward, in tiles of four
queries that share their run of keys, with nothing of size n x n. It keeps the
probabilities of the three softmaxes for the backward (``O(n (w + m))`` per sequence
and head), so the backward recomputes no score. :mod:`brlgraph.ops.brl.sdpa` instead
makes a kernel call per query bucket and part (window, read hop) plus the write hop,
and at the graph transformer's lengths those calls cost more than their arithmetic
(docs/attention.md). The operator is the one of :mod:`brlgraph.ops.brl.naive`; the
tests compare the two.

The extension is compiled with ``torch.utils.cpp_extension.load`` the first time it is
needed (a C++ compiler and ninja are required; about half a minute) and cached in
:func:`build_directory`. :func:`fused_available` says whether it can be used; when the
build fails, ``impl="auto"`` keeps the ``sdpa`` path and says why once.
"""

from __future__ import annotations

import hashlib
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import Tensor

from brlgraph.ops.brl.sdpa import compute_dtype, reservoir_side

_SOURCE = Path(__file__).with_name("fused_cpu.cpp")
#: head sizes the kernel is compiled for (a template parameter: sums over the head
#: dimension stay in registers)
HEAD_SIZES = (8, 16, 32, 64)
_FLAGS = ["-O3", "-fopenmp-simd"] + (["-march=native"] if platform.machine() in ("x86_64", "AMD64")
                                      else [])
#: a build lock older than this (seconds) was left by a killed build and is removed
_STALE_LOCK_S = 600
_EXT = None
_ERROR: str | None = None


def cpuinfo_line(*prefixes: str) -> str:
    """The first line of ``/proc/cpuinfo`` starting with one of ``prefixes`` ("" when
    there is none or no such file)."""
    try:
        return next((line for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith(prefixes)), "")
    except OSError:
        return ""


def cpu_flags() -> str:
    """The CPU's feature-flags line of ``/proc/cpuinfo`` (the build uses -march=native, so
    a cached build must not run on another CPU model)."""
    return cpuinfo_line("flags", "Features") or platform.processor()


def build_directory() -> Path:
    """Where the extension is built and cached: one folder per source, PyTorch version,
    flags and CPU model, under ``TORCH_EXTENSIONS_DIR`` (default ``~/.cache/brlgraph``;
    the temporary folder when that cannot be created)."""
    key = hashlib.sha256("\n".join([_SOURCE.read_text(), torch.__version__, " ".join(_FLAGS),
                                    cpu_flags()]).encode()).hexdigest()[:16]
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or Path.home() / ".cache" / "brlgraph"
    return Path(root) / f"brlgraph_fused_cpu_{key}"


def load_extension():
    """The compiled extension (built on the first call, about half a minute); raises
    RuntimeError with the reason when it cannot be built."""
    global _EXT, _ERROR
    if _EXT is not None:
        return _EXT
    if _ERROR is not None:
        raise RuntimeError(_ERROR)
    try:
        from torch.utils import cpp_extension

        folder = build_directory()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:  # a read-only home: build in the temporary folder instead
            folder = Path(tempfile.gettempdir()) / f"brlgraph-{os.getuid()}" / folder.name
            folder.mkdir(parents=True, exist_ok=True)
        lock = folder / "lock"
        # PyTorch waits for this file forever; a build killed midway leaves it behind
        if lock.exists() and time.time() - lock.stat().st_mtime > _STALE_LOCK_S:
            lock.unlink(missing_ok=True)
        _EXT = cpp_extension.load(name="brlgraph_fused_cpu", sources=[str(_SOURCE)],
                                  extra_cflags=_FLAGS, build_directory=str(folder), verbose=False)
    except Exception as exc:  # compiler, ninja or headers missing: the sdpa path remains
        _ERROR = (f"brlgraph's fused CPU kernel could not be built ({build_error(exc)}); "
                  "BRL-Attention uses the slower sdpa path. Install a C++ compiler and ninja "
                  "(pip install ninja) to get it")
        raise RuntimeError(_ERROR) from exc
    return _EXT


def build_error(exc: BaseException) -> str:
    """The line of a failed build that says why: the compiler's first ``error:`` line,
    else the exception's last line (a missing compiler or ninja)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    why = next((ln for ln in lines if "error:" in ln), lines[-1] if lines else repr(exc))
    return f"{type(exc).__name__}: {why[:300]}"


def fused_available() -> bool:
    """Whether the fused kernel is built or can be built now (warns once when it cannot)."""
    try:
        load_extension()
    except RuntimeError as exc:
        if not getattr(fused_available, "_warned", False):
            fused_available._warned = True
            warnings.warn(str(exc), RuntimeWarning, stacklevel=2)
        return False
    return True


def fused_supported(q: Tensor, *, causal: bool = False, hist=None) -> bool:
    """Whether this path computes the case: non-causal attention on CPU tensors with a
    head size in :data:`HEAD_SIZES` (whether the kernel builds: :func:`fused_available`)."""
    return (not causal and hist is None and q.device.type == "cpu"
            and q.shape[-1] in HEAD_SIZES)


_EMPTY = torch.empty(0)


class _FusedBRLFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, rqw, rkr, lam, kvalid, window, block):
        ext = load_extension()
        # pl, pr, pw: the probabilities of the window, read and write hops, O(n (w + m))
        y, u, pl, pr, pw = ext.forward(q, k, v, rqw, rkr, lam, kvalid, window, block)
        ctx.window, ctx.block = window, block
        ctx.save_for_backward(q, k, v, rqw, rkr, lam, kvalid, u, pl, pr, pw)
        reservoir = rqw.numel() > 0
        return y, (u if reservoir else None)

    @staticmethod
    def backward(ctx, dy, du):
        q, k, v, rqw, rkr, lam, kvalid, u, pl, pr, pw = ctx.saved_tensors
        dy = _last_contiguous(dy)
        du = _EMPTY.to(q) if du is None else _last_contiguous(du)
        dq, dk, dv, drqw, drkr, dlam = load_extension().backward(
            dy, q, k, v, rqw, rkr, lam, kvalid, u, pl, pr, pw, du, ctx.window,
            ctx.block)
        reservoir = rqw.numel() > 0
        if not reservoir:
            return dq, dk, dv, None, None, None, None, None, None
        return dq, dk, dv, drqw, drkr, dlam.sum(0), None, None, None


def _last_contiguous(t: Tensor) -> Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def fused_brl_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    rq: Tensor | None = None,
    rk: Tensor | None = None,
    *,
    tau_w: Tensor | float = 1.0,
    tau_r: Tensor | float = 1.0,
    lam: Tensor | float = 0.5,
    window: int,
    window_mode: str = "sliding",
    mask: Tensor | None = None,
) -> tuple[Tensor, Tensor | None, None]:
    """Non-causal BRL-Attention on the fused CPU kernel. See :func:`brlgraph.ops.brl.brl_attention`."""
    out_dtype = q.dtype
    cdt = compute_dtype(q)
    q, k, v = (_last_contiguous(t.to(cdt)) for t in (q, k, v))
    kvalid = _EMPTY.to(torch.uint8)
    if mask is not None and not bool(mask.all()):
        kvalid = mask.to(torch.uint8).contiguous()
    block = window_mode == "block"
    if rq is None:
        empty = _EMPTY.to(q)
        y, _ = _FusedBRLFunction.apply(q, k, v, empty, empty, empty, kvalid, window, block)
        return y.to(out_dtype), None, None

    rqw, rkr, lam_h = reservoir_side(q, rq, rk, tau_w, tau_r, lam, cdt)
    y, u = _FusedBRLFunction.apply(q, k, v, _last_contiguous(rqw), _last_contiguous(rkr),
                                   lam_h.contiguous(), kvalid, window, block)
    return y.to(out_dtype), u.to(out_dtype), None
