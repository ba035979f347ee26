"""Short-sequence CPU path of BRL-Attention on PyTorch's fused flash-attention kernel.

``impl="auto"`` runs it where the faster C++ kernel (:mod:`brlgraph.ops.brl.fused`)
cannot: no C++ compiler, a head size without a build, or inside ``torch.compile``.
The operator is the one of :mod:`brlgraph.ops.brl.naive` (non-causal). Each part is
an exact softmax attention, so each runs on ATen's CPU flash kernel, which returns
the log-sum-exp of every row and has a fused backward that takes it:

* **Window.** Queries are cut into buckets of ``c`` tokens; bucket ``[a, b)`` attends
  to the contiguous key range its window can reach (sliding: ``[a - w, b + w)``),
  passed as a view, with an additive mask: the window pattern of the bucket plus the
  key padding. One kernel call per bucket, batched over sequences and heads.
* **Write hop.** One call: the ``m`` reservoir queries (``tau_w`` folded in) over all
  valid keys. Its output ``u`` is small.
* **Read hop.** Per bucket: the bucket's queries over the ``m`` reservoir keys
  (``tau_r`` folded in) with values ``u``.
* The bucket's output ``(1 - lambda) y_loc + lambda y_glob`` is written in place,
  zero at padded queries.

Backward (one :class:`torch.autograd.Function`): the kernel's backward per bucket for
the window and the read hop, then the write hop's backward chunk by chunk of keys with
the global log-sum-exp and ``u`` (exact: the softmax gradient of a row only needs the
row's normaliser and ``sum_j p_j dp_j = du . u``). Only the outputs, the two saved
partial outputs ``y_loc, y_glob`` and the input gradients are sequence-sized; every
temporary is bucket-sized, so a batch of many short sequences allocates little.
"""

from __future__ import annotations

import torch
from torch import Tensor

_FLASH = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
_FLASH_BWD = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward",
                     None)


def sdpa_supported(q: Tensor, *, causal: bool = False, hist=None) -> bool:
    """Whether this path computes the case: non-causal, CPU, and the kernel is present."""
    return (not causal and hist is None and q.device.type == "cpu" and _FLASH is not None
            and _FLASH_BWD is not None)


def key_range(a: int, b: int, n: int, window: int, window_mode: str) -> tuple[int, int]:
    """The keys ``[lo, hi)`` that the window of any query in ``[a, b)`` can reach."""
    if window_mode == "sliding":
        lo, hi = a - window, b + window
    else:  # own block and one on each side
        lo, hi = (a // window - 1) * window, ((b - 1) // window + 2) * window
    return max(0, lo), min(n, hi)


class _Bucket:
    """One query bucket: its rows, its key range and its window pattern (additive)."""

    def __init__(self, a: int, b: int, lo: int, hi: int, pattern: Tensor | None):
        self.a, self.b, self.lo, self.hi, self.pattern = a, b, lo, hi, pattern

    def mask(self, kbias: Tensor | None, kvalid: Tensor | None) -> Tensor | None:
        """Additive mask [B or 1, 1, rows, keys]: window pattern plus key padding."""
        if kbias is None or bool(kvalid[:, self.lo:self.hi].all()):
            return None if self.pattern is None else self.pattern[None, None]
        kb = kbias[:, :, :, self.lo:self.hi]
        return kb if self.pattern is None else kb + self.pattern


def _buckets(n: int, c: int, window: int, window_mode: str, dtype, device) -> list[_Bucket]:
    out, patterns = [], {}
    for a in range(0, n, c):
        b = min(n, a + c)
        lo, hi = key_range(a, b, n, window, window_mode)
        # Interior buckets share one pattern tensor: it depends on the offsets only
        # (and, for blocks, on the bucket's start within its block).
        key = (a - lo, b - a, hi - lo, a % window if window_mode == "block" else 0)
        if key not in patterns:
            i = torch.arange(a, b, device=device)[:, None]
            j = torch.arange(lo, hi, device=device)[None, :]
            ok = ((i - j).abs() <= window if window_mode == "sliding"
                  else (i // window - j // window).abs() <= 1)
            patterns[key] = None if bool(ok.all()) else torch.zeros(
                ok.shape, dtype=dtype, device=device).masked_fill_(~ok, float("-inf"))
        out.append(_Bucket(a, b, lo, hi, patterns[key]))
    return out


def _accumulate(dst: Tensor, src: Tensor, lo: int, hi: int, done: int) -> int:
    """``dst[:, :, lo:hi] += src`` where ``dst`` is written already (below ``done``), else
    a copy: key ranges of ascending buckets overlap only at their starts, so the gradient
    buffers need no zero fill."""
    cut = min(max(lo, done), hi)
    if cut > lo:
        dst[:, :, lo:cut] += src[:, :, : cut - lo]
    if hi > cut:
        dst[:, :, cut:hi] = src[:, :, cut - lo :]
    return max(done, hi)


class _SDPABRLFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, rqw, rkr, lam, kbias, kvalid, qvalid, buckets, write_chunk):
        B, H, N, D = q.shape
        reservoir = rqw is not None
        # [B, N, H, D] memory: the layout the module's merge of heads reads
        y = q.new_empty(B, N, H, D).transpose(1, 2)
        if reservoir:
            u, lse_w = _FLASH(rqw, k, v, attn_mask=kbias)
            lam4 = lam.view(1, H, 1, 1)
        # Per-bucket outputs and masks are kept as they are for the backward (no
        # sequence-sized copy, no second mask construction).
        parts = []
        for bk in buckets:
            rows, keys = slice(bk.a, bk.b), slice(bk.lo, bk.hi)
            qb, yb = q[:, :, rows], y[:, :, rows]
            mask = bk.mask(kbias, kvalid)
            o, lse = _FLASH(qb, k[:, :, keys], v[:, :, keys], attn_mask=mask)
            parts += [o, lse, mask]
            if reservoir:
                og, lseg = _FLASH(qb, rkr, u)
                parts += [og, lseg]
                torch.lerp(o, og, lam4, out=yb)
            else:
                yb.copy_(o)
            if qvalid is not None:
                yb.mul_(qvalid[:, None, rows, None])
        ctx.buckets, ctx.write_chunk = buckets, write_chunk
        ctx.reservoir = reservoir
        ctx.n_parts = len(parts)
        # masks may be None: saved through ctx, the tensors through save_for_backward
        ctx.masks = parts[2::5 if reservoir else 3]
        tensors = [t for i, t in enumerate(parts) if i % (5 if reservoir else 3) != 2]
        if reservoir:
            ctx.save_for_backward(q, k, v, kbias, qvalid, rqw, rkr, lam, u, lse_w, *tensors)
            ctx.mark_non_differentiable(lse_w)
            return y, u
        ctx.save_for_backward(q, k, v, kbias, qvalid, *tensors)
        return y, None

    @staticmethod
    def backward(ctx, dy, du_out):
        q, k, v, kbias, qvalid, *rest = ctx.saved_tensors
        B, H, N, D = q.shape
        reservoir = ctx.reservoir
        need_lam = reservoir and ctx.needs_input_grad[5]
        # dy at padded queries is dropped (their outputs are zero); lambda's split of the
        # gradient is folded into the same per-row factor
        qv = 1.0 if qvalid is None else qvalid[:, None, :, None]
        if reservoir:
            rqw, rkr, lam, u, lse_w, *parts = rest
            lam4 = lam.view(1, H, 1, 1)
            f_loc, f_glob = qv * (1 - lam4), qv * lam4
            drkr = torch.zeros_like(rkr)
            du = torch.zeros_like(u) if du_out is None else du_out.clone()
            dlam = torch.zeros(B, H, dtype=q.dtype, device=q.device)
        else:
            parts, f_loc = rest, qv
        step = 4 if reservoir else 2
        dq = q.new_empty(B, N, H, D).transpose(1, 2)
        dk = q.new_empty(B, N, H, D).transpose(1, 2)
        dv = q.new_empty(B, N, H, D).transpose(1, 2)
        done = 0
        for i, bk in enumerate(ctx.buckets):
            rows, keys = slice(bk.a, bk.b), slice(bk.lo, bk.hi)
            o, lse = parts[step * i : step * i + 2]
            qb, g = q[:, :, rows], dy[:, :, rows]
            g_loc = g * (f_loc if isinstance(f_loc, float) or f_loc.shape[2] == 1
                         else f_loc[:, :, rows])
            gq, gk, gv = _FLASH_BWD(g_loc, qb, k[:, :, keys], v[:, :, keys], o, lse, 0.0, False,
                                    attn_mask=ctx.masks[i])
            _accumulate(dk, gk, bk.lo, bk.hi, done)
            done = _accumulate(dv, gv, bk.lo, bk.hi, done)
            if reservoir:
                og, lseg = parts[step * i + 2 : step * i + 4]
                if need_lam:
                    dlam += (g * (og - o)).sum(-1).mul_(qv[..., rows, 0] if qvalid is not None
                                                        else 1.0).sum(-1)
                g_glob = g * (f_glob if f_glob.shape[2] == 1 else f_glob[:, :, rows])
                gq2, gkr, gu = _FLASH_BWD(g_glob, qb, rkr, u, og, lseg, 0.0, False)
                torch.add(gq, gq2, out=dq[:, :, rows])
                drkr += gkr
                du += gu
            else:
                dq[:, :, rows] = gq
        if not reservoir:
            return dq, dk, dv, *([None] * 8)
        # Write hop: keys chunk by chunk, each with the global normaliser of its row.
        drqw = torch.zeros_like(rqw)
        for a in range(0, N, ctx.write_chunk):
            rows = slice(a, min(N, a + ctx.write_chunk))
            kb = None if kbias is None else kbias[:, :, :, rows]
            gq, gk, gv = _FLASH_BWD(du, rqw, k[:, :, rows], v[:, :, rows], u, lse_w, 0.0, False,
                                    attn_mask=kb)
            drqw += gq
            dk[:, :, rows] += gk
            dv[:, :, rows] += gv
        return (dq, dk, dv, drqw, drkr, dlam.sum(0) if need_lam else None,
                None, None, None, None, None)


def compute_dtype(q: Tensor) -> torch.dtype:
    """What the CPU paths compute in: float64 stays float64, everything else float32."""
    return torch.float64 if q.dtype == torch.float64 else torch.float32


def reservoir_side(q: Tensor, rq: Tensor, rk: Tensor, tau_w, tau_r, lam,
                   cdt: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """``(r_c tau_w, kappa_c tau_r)`` expanded to [B, H, M, D] and ``lam`` [H], in
    ``cdt``: the temperatures folded into the reservoir side, m rows instead of n."""
    B, H, _, D = q.shape
    M = rq.shape[-2]

    def per_head(t: Tensor | float) -> Tensor:
        return torch.as_tensor(t, device=q.device).to(cdt).expand(H)

    rqw = (rq.to(cdt) * per_head(tau_w).view(H, 1, 1)).expand(B, H, M, D)
    rkr = (rk.to(cdt) * per_head(tau_r).view(H, 1, 1)).expand(B, H, M, D)
    return rqw, rkr, per_head(lam)


def default_bucket(n: int, window: int) -> int:
    """Queries per kernel call (measured on the 2-core CI CPU, docs/attention.md)."""
    return n if n <= 4 * window else 4 * window


def sdpa_brl_attention(
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
    bucket_size: int | None = None,
    write_chunk: int | None = None,
) -> tuple[Tensor, Tensor | None, None]:
    """Non-causal BRL-Attention on the CPU flash kernel. See :func:`brlgraph.ops.brl.brl_attention`."""
    B, N = q.shape[0], q.shape[2]
    out_dtype = q.dtype
    cdt = compute_dtype(q)
    q, k, v = (t.to(cdt) for t in (q, k, v))
    kbias = kvalid = qvalid = None
    if mask is not None and not bool(mask.all()):
        kvalid = mask.bool()
        qvalid = kvalid.to(cdt)
        kbias = torch.zeros(B, 1, 1, N, dtype=cdt, device=q.device).masked_fill_(
            ~kvalid[:, None, None, :], float("-inf"))
    c = bucket_size or default_bucket(N, window)
    buckets = _buckets(N, c, window, window_mode, cdt, q.device)
    write_chunk = write_chunk or c
    if rq is None:
        y, _ = _SDPABRLFunction.apply(q, k, v, None, None, None, kbias, kvalid, qvalid, buckets,
                                      write_chunk)
        return y.to(out_dtype), None, None

    rqw, rkr, lam_h = reservoir_side(q, rq, rk, tau_w, tau_r, lam, cdt)
    y, u = _SDPABRLFunction.apply(q, k, v, rqw, rkr, lam_h, kbias, kvalid, qvalid,
                                  buckets, write_chunk)
    return y.to(out_dtype), u.to(out_dtype), None
