"""Fast CPU path of BRL-Attention: time O(n (w + m) d), memory O(n d) saved for backward.

Layout (one head; ``c`` = bucket size dividing ``w``, ``T`` = chunk of tokens):

* **Window.** Queries are cut into buckets of ``c`` tokens. The keys a bucket can see
  (``[p0 - w, p0 + c + w)``, causal ``[p0 - w, p0 + c)``) are ``nwin`` consecutive
  key buckets, gathered as shifted views of the padded keys and concatenated: one
  batched matmul over all buckets of a chunk, a static ``[c, nwin * c]`` pattern bias
  and a key-padding bias. The scores never exceed ``T x nwin c`` per head at a time.
* **Write hop.** Each chunk (causal: each reservoir block of ``b`` tokens) gives
  max-stabilised partial softmax statistics ``(max, sum, numerator)`` per reservoir
  token. Non-causal: they are combined by log-sum-exp into ``u``. Causal: a running
  prefix over blocks (online softmax) gives the reservoir ``u^(k)`` that block ``k``
  reads, from keys of earlier blocks only.
* **Read hop.** Two small matmuls with the ``m`` reservoir tokens per chunk.
* **Backward.** A custom :class:`torch.autograd.Function` saves only the inputs, the
  local output ``y_loc`` and the log-sum-exps (plus ``O((n / b) m d)`` prefix states
  when causal) and recomputes the probabilities chunk by chunk, as flash attention
  does. The causal write hop's backward is a reverse scan over blocks with factors
  ``exp(lse^(k) - lse^(k'))`` <= 1, so nothing overflows.

Streaming (causal): :class:`BRLHistory` carries, between segments of one stream, the
write-hop state of every position before ``start`` (``num``, ``den``, ``max``) and the
raw keys/values/validity of positions ``[start, offset)``, which the window and the
unfinished reservoir block of the next segment still need. ``start`` is a multiple of
the reservoir block (and, in block mode, of the window), so block boundaries keep
their global positions. The history is carried without gradient (truncated BPTT).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

NEG_INF = float("-inf")
# Masked window scores: finite, so a fully masked row softmaxes to finite garbage
# (zeroed by the query mask) instead of NaN; exp(-1e30 - x) is exactly 0 elsewhere.
MASKED = -1e30

# Tokens per chunk: keeps each chunk's scores ([BH, T, nwin * c] floats) near the caches.
DEFAULT_CHUNK_TOKENS = 512


class BRLHistory(NamedTuple):
    """State carried from one segment of a causal stream to the next.

    ``num`` [B, H, M, Dh], ``den`` [B, H, M], ``max`` [B, H, M]: the running write-hop
    softmax over all valid keys at positions ``< start`` (``u = num / den``; ``den == 0``
    means empty; zeros at the start of a stream). ``k``, ``v`` [B, H, offset - start, Dh]
    and ``valid`` [B, offset - start]: the keys the next segment's window and
    unfinished reservoir block still need. ``offset``: global position of the next token.
    """

    num: Tensor
    den: Tensor
    max: Tensor
    k: Tensor
    v: Tensor
    valid: Tensor
    start: int
    offset: int


@dataclass(frozen=True)
class _Geometry:
    window: int
    causal: bool
    block_mode: bool
    bucket: int  # c: queries per bucket; divides window
    nwin: int  # key buckets seen by one query bucket
    group: int  # reservoir group: causal block b, or the whole chunk when non-causal
    chunk: int  # T: tokens per chunk, a multiple of bucket and group
    n_pad: int  # padded length, a multiple of chunk

    def pattern_bias(self, dtype: torch.dtype, device: torch.device) -> Tensor:
        """Static [c, nwin * c] bias (0 or -inf) of the window inside one bucket."""
        c, w = self.bucket, self.window
        a = torch.arange(c, device=device)[:, None]
        t = torch.arange(self.nwin * c, device=device)[None, :]
        rel = a + w - t  # query position - key position
        if self.block_mode:
            ok = rel >= 0 if self.causal else torch.ones_like(rel, dtype=torch.bool)
        else:
            ok = (rel >= 0) & (rel <= w) if self.causal else rel.abs() <= w
        return torch.zeros(ok.shape, dtype=dtype, device=device).masked_fill_(~ok, MASKED)


def _geometry(
    n: int,
    window: int,
    causal: bool,
    window_mode: str,
    block_size: int | None,
    bucket_size: int | None,
    chunk_size: int | None,
) -> _Geometry:
    block_mode = window_mode == "block"
    if block_mode:
        c = window
    else:
        # Half-window buckets: a bucket sees 2.5 w keys (causal 1.5 w) for 2 w + 1 useful.
        c = bucket_size or (window // 2 if window % 2 == 0 and window >= 32 else window)
        if window % c:
            raise ValueError(f"bucket_size={c} must divide window={window}")
    r = window // c
    nwin = (r + 1) if causal else (2 * r + 1)
    b = (block_size or window) if causal else 1
    unit = c * b // math.gcd(c, b)
    target = unit * max(1, round((chunk_size or DEFAULT_CHUNK_TOKENS) / unit))
    # as few chunks as the target size allows, balanced, so that the padding stays
    # below one unit per chunk (n = 2,052 with target 512: 5 x 416 tokens, not 5 x 512)
    chunks = max(1, math.ceil(n / target))
    T = unit * math.ceil(n / (chunks * unit))
    n_pad = T * chunks
    group = b if causal else T
    return _Geometry(window, causal, block_mode, c, nwin, group, T, n_pad)


def _windows(x_ext: Tensor, s0: int, nb: int, g: _Geometry) -> Tensor:
    """Key windows of ``nb`` query buckets starting at padded position ``s0``.

    ``x_ext`` [BH, w + n_pad + w, ...] -> [BH, nb, nwin * c, ...].
    """
    c, nwin = g.bucket, g.nwin
    span = x_ext[:, s0 : s0 + (nb + nwin - 1) * c]
    blocks = span.unflatten(1, (nb + nwin - 1, c))
    return torch.cat([blocks[:, o : o + nb] for o in range(nwin)], dim=2)


def _safe(x: Tensor, fill: float = 0.0) -> Tensor:
    """Replace infinities (empty softmax rows) by ``fill``."""
    return torch.where(torch.isfinite(x), x, torch.full_like(x, fill))


class _Keys:
    """Padded keys/values and key-padding biases shared by forward and backward."""

    def __init__(self, k_ext: Tensor, v_ext: Tensor, kvalid: Tensor, g: _Geometry):
        w = g.window
        self.g = g
        self.k_ext, self.v_ext = k_ext, v_ext  # [BH, w + n_pad + w, D], zeros outside
        dt, dev = k_ext.dtype, k_ext.device
        # Finite "minus infinity" inside windows: a row whose keys are all masked (a padded
        # query) stays finite, and its output is zeroed by the query mask.
        self.kbias_ext = F.pad(
            torch.zeros(kvalid.shape, dtype=dt, device=dev).masked_fill_(~kvalid, MASKED),
            (w, w), value=MASKED)
        self.kvalid_ext = F.pad(kvalid, (w, w), value=False)
        self.kbias = torch.zeros(kvalid.shape, dtype=dt, device=dev).masked_fill_(
            ~kvalid, NEG_INF)
        self.kvalid = kvalid
        self.pattern = g.pattern_bias(dt, dev)

    def local_probs(self, qs_b: Tensor, s0: int) -> tuple[Tensor, Tensor, Tensor]:
        """Window softmax [BH, nb, c, nwin c] of one chunk's buckets, key and value windows."""
        g, nb = self.g, qs_b.shape[1]
        k_win = _windows(self.k_ext, s0, nb, g)
        s = qs_b @ k_win.transpose(-1, -2)
        span = slice(s0, s0 + (nb + g.nwin - 1) * g.bucket)
        if bool(self.kvalid_ext[:, span].all()):
            s += self.pattern
        else:
            s += self.pattern + _windows(self.kbias_ext, s0, nb, g)[:, :, None, :]
        return torch.softmax(s, dim=-1), k_win, _windows(self.v_ext, s0, nb, g)

    def write_scores(self, rqw: Tensor, kc: Tensor, sl: slice) -> Tensor:
        """Write-hop scores [BH, ng, M, G] (-inf at padded keys) of one chunk."""
        sw = rqw @ kc.transpose(-1, -2)
        if not bool(self.kvalid[:, sl].all()):
            sw += self.kbias[:, sl].unflatten(1, kc.shape[1:3])[:, :, None, :]
        return sw


def _combine(m: Tensor, l: Tensor, num: Tensor, mk: Tensor, lk: Tensor, numk: Tensor):
    """Online-softmax merge of two partial states (max, sum, numerator)."""
    mn = torch.maximum(m, mk)
    ref = _safe(mn)
    a, bk = torch.exp(m - ref), torch.exp(mk - ref)
    return mn, l * a + lk * bk, num * a[..., None] + numk * bk[..., None]


def _prefix_scan(m: Tensor, l: Tensor, num: Tensor, init: tuple[Tensor, Tensor] | None):
    """Exclusive running softmax over blocks.

    ``m, l`` [BH, K, M], ``num`` [BH, K, M, D] per block -> ``lse`` [BH, K + 1, M] and
    ``u`` [BH, K + 1, M, D]: entry ``k`` covers blocks ``< k`` (and ``init``).
    """
    BH, K, M = m.shape
    if init is None:
        cm = m.new_full((BH, M), NEG_INF)
        cl = m.new_zeros(BH, M)
        cn = num.new_zeros(BH, M, num.shape[-1])
    else:
        cm, cn = init
        cl = torch.isfinite(cm).to(m.dtype)
    lse = m.new_empty(BH, K + 1, M)
    u = num.new_empty(BH, K + 1, M, num.shape[-1])
    for kk in range(K + 1):
        lse[:, kk] = cm + torch.log(cl)
        u[:, kk] = cn / cl.clamp_min(torch.finfo(cl.dtype).tiny)[..., None]
        if kk < K:
            cm, cl, cn = _combine(cm, cl, cn, m[:, kk], l[:, kk], num[:, kk])
    return lse, u


class _BRLFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, rq, rk, tau_w, tau_r, lam, kvalid, qvalid, init_lse, init_u, g):
        BH, Np, D = q.shape
        T, c, G = g.chunk, g.bucket, g.group
        nb, ng = T // c, T // G
        scale = D**-0.5
        reservoir = rq is not None
        # Padded once here and saved padded: backward takes k, v as views of these.
        keys = _Keys(F.pad(k, (0, 0, g.window, g.window)), F.pad(v, (0, 0, g.window, g.window)),
                     kvalid, g)
        k_ext, v_ext = keys.k_ext, keys.v_ext
        qs = q * scale
        tiny = torch.finfo(q.dtype).tiny
        chunks = range(0, Np, T)

        # Write hop: partial statistics per group, then LSE-combine or prefix-scan.
        if reservoir:
            rqw = (rq * (scale * tau_w[:, None, None]))[:, None]  # [BH, 1, M, D]
            ms, ls, nums = [], [], []
            for s0 in chunks:
                sl = slice(s0, s0 + T)
                sw = keys.write_scores(rqw, k[:, sl].unflatten(1, (ng, G)), sl)
                mk = sw.amax(-1)
                p = sw.sub_(_safe(mk)[..., None]).exp_()
                ms.append(mk)
                ls.append(p.sum(-1))
                nums.append(p @ v[:, sl].unflatten(1, (ng, G)))
            m_blk, l_blk, num_blk = torch.cat(ms, 1), torch.cat(ls, 1), torch.cat(nums, 1)
            if g.causal:
                init = None if init_lse is None else (init_lse, init_u)
                lse_w, u = _prefix_scan(m_blk, l_blk, num_blk, init)
                has = torch.isfinite(lse_w[:, :-1, 0]).to(q.dtype)  # [BH, K]
            else:
                ref = _safe(m_blk.amax(1, keepdim=True))
                wt = torch.exp(m_blk - ref)
                den = (l_blk * wt).sum(1)
                u = (num_blk * wt[..., None]).sum(1) / den.clamp_min(tiny)[..., None]
                lse_w = ref[:, 0] + torch.log(den)  # [BH, M]
                u, has = u[:, None], q.new_ones(BH, 1)
            rkwT = (rk * tau_r[:, None, None])[:, None].transpose(-1, -2)  # [BH, 1, D, M]
            lam_g = lam[:, None] * has  # per group: empty causal reservoir -> local only

        y = torch.empty_like(q)
        y_loc = torch.empty_like(q)
        for s0 in chunks:
            sl = slice(s0, s0 + T)
            p, _, v_win = keys.local_probs(qs[:, sl].unflatten(1, (nb, c)), s0)
            yl = (p @ v_win).flatten(1, 2)
            y_loc[:, sl] = yl
            if reservoir:
                gsl = slice(s0 // G, s0 // G + ng) if g.causal else slice(0, 1)
                pr = torch.softmax(qs[:, sl].unflatten(1, (ng, G)) @ rkwT, dim=-1)
                yg = pr @ u[:, gsl]
                ylg = yl.unflatten(1, (ng, G))
                y[:, sl] = torch.lerp(ylg, yg, lam_g[:, gsl, None, None]).flatten(1, 2)
            else:
                y[:, sl] = yl
        y *= qvalid[..., None]

        ctx.g = g
        ctx.reservoir = reservoir
        if reservoir:
            ctx.save_for_backward(q, k_ext, v_ext, rq, rk, tau_w, tau_r, lam, kvalid, qvalid, y_loc,
                                  lse_w, u, has)
            if g.causal:
                ctx.mark_non_differentiable(u, lse_w)
                return y, u, lse_w
            ctx.mark_non_differentiable(lse_w)
            return y, u[:, 0], lse_w
        ctx.save_for_backward(q, k_ext, v_ext, kvalid, qvalid, y_loc)
        return y, None, None

    @staticmethod
    def backward(ctx, dy, du_out, _dlse):
        g: _Geometry = ctx.g
        if ctx.reservoir:
            (q, k_ext, v_ext, rq, rk, tau_w, tau_r, lam, kvalid, qvalid, y_loc, lse_w, u,
             has) = ctx.saved_tensors
        else:
            q, k_ext, v_ext, kvalid, qvalid, y_loc = ctx.saved_tensors
        BH, Np, D = q.shape
        w, T, c, G = g.window, g.chunk, g.bucket, g.group
        nb, ng = T // c, T // G
        scale = D**-0.5
        keys = _Keys(k_ext, v_ext, kvalid, g)
        k, v = k_ext[:, w : w + Np], v_ext[:, w : w + Np]
        qs = q * scale
        dy = dy * qvalid[..., None]
        chunks = range(0, Np, T)

        dq = torch.zeros_like(q)
        dk_ext = torch.zeros_like(keys.k_ext)
        dv_ext = torch.zeros_like(keys.v_ext)
        if ctx.reservoir:
            rkw = (rk * tau_r[:, None, None])[:, None]  # [BH, 1, M, D]
            lam_g = lam[:, None] * has
            du = torch.zeros_like(u[:, :-1] if g.causal else u)
            drk_raw = torch.zeros_like(rk)
            dlam = torch.zeros_like(lam)

        # Pass 1: local backward and read-hop backward, chunk by chunk.
        for s0 in chunks:
            sl = slice(s0, s0 + T)
            dyc, ylc = dy[:, sl], y_loc[:, sl]
            if ctx.reservoir:
                gsl = slice(s0 // G, s0 // G + ng) if g.causal else slice(0, 1)
                lg = lam_g[:, gsl, None, None]
                qg = qs[:, sl].unflatten(1, (ng, G))
                pr = torch.softmax(qg @ rkw.transpose(-1, -2), dim=-1)  # [BH, ng, G, M]
                ug = u[:, gsl]
                yg = pr @ ug
                dyg = dyc.unflatten(1, (ng, G))
                dlam += (dyg * (yg - ylc.unflatten(1, (ng, G)))).sum((2, 3)).mul(
                    has[:, gsl]).sum(1)
                dog = dyg * lg
                dug = pr.transpose(-1, -2) @ dog
                if g.causal:
                    du[:, gsl] += dug
                else:
                    du += dug.sum(1, keepdim=True)
                dpr = dog @ ug.transpose(-1, -2)
                dsr = dpr.sub_((dog * yg).sum(-1, keepdim=True)).mul_(pr)
                dq[:, sl] += (dsr @ rkw).flatten(1, 2) * scale
                drk_raw += (dsr.transpose(-1, -2) @ qg).sum(1)
                dol = (dyg * (1 - lg)).flatten(1, 2)
            else:
                dol = dyc
            # Local window backward: recompute the window softmax.
            qs_b = qs[:, sl].unflatten(1, (nb, c))
            p, k_win, v_win = keys.local_probs(qs_b, s0)
            dol_b = dol.unflatten(1, (nb, c))
            dv_win = p.transpose(-1, -2) @ dol_b
            dp = dol_b @ v_win.transpose(-1, -2)
            dl = (dol * ylc).sum(-1).unflatten(1, (nb, c))
            ds = dp.sub_(dl[..., None]).mul_(p)
            dq[:, sl] += (ds @ k_win).flatten(1, 2) * scale
            dk_win = ds.transpose(-1, -2) @ qs_b
            span = slice(s0, s0 + (nb + g.nwin - 1) * c)
            dkb = dk_ext[:, span].unflatten(1, (nb + g.nwin - 1, c))
            dvb = dv_ext[:, span].unflatten(1, (nb + g.nwin - 1, c))
            for o in range(g.nwin):
                dkb[:, o : o + nb] += dk_win[:, :, o * c : (o + 1) * c]
                dvb[:, o : o + nb] += dv_win[:, :, o * c : (o + 1) * c]

        dk = dk_ext[:, w : w + Np]  # views: the write hop adds into them below
        dv = dv_ext[:, w : w + Np]
        if not ctx.reservoir:
            return dq, dk, dv, *([None] * 10)

        # Between passes: what each key's write-hop softmax receives from later reads.
        if g.causal:
            # G_j = sum_{k > j} exp(lse^(j+1) - lse^(k)) du^(k): a reverse scan, factors <= 1.
            K = du.shape[1]
            dd = (du * u[:, :K]).sum(-1)  # [BH, K, M]
            gu = torch.zeros_like(du)
            gd = torch.zeros_like(dd)
            for j in range(K - 2, -1, -1):
                a, b = lse_w[:, j + 1], lse_w[:, j + 2]
                f = torch.where(torch.isfinite(a), torch.exp(a - _safe(b)), 0.0)
                gu[:, j] = du[:, j + 1] + f[..., None] * gu[:, j + 1]
                gd[:, j] = dd[:, j + 1] + f * gd[:, j + 1]
            rho = lse_w[:, 1 : K + 1]
        else:
            gu = du + du_out[:, None] if du_out is not None else du
            gd = (gu * u).sum(-1)
            rho = lse_w[:, None]
        rho = _safe(rho, math.inf)

        # Pass 2: write-hop backward.
        rqw = (rq * (scale * tau_w[:, None, None]))[:, None]
        drq_raw = torch.zeros_like(rq)
        for s0 in chunks:
            sl = slice(s0, s0 + T)
            gsl = slice(s0 // G, s0 // G + ng) if g.causal else slice(0, 1)
            kc = k[:, sl].unflatten(1, (ng, G))
            vc = v[:, sl].unflatten(1, (ng, G))
            pt = keys.write_scores(rqw, kc, sl).sub_(rho[:, gsl][..., None]).exp_()
            gug = gu[:, gsl]
            dv[:, sl] += (pt.transpose(-1, -2) @ gug).flatten(1, 2)
            dpt = gug @ vc.transpose(-1, -2)
            dsw = dpt.sub_(gd[:, gsl][..., None]).mul_(pt)
            dk[:, sl] += (dsw.transpose(-1, -2) @ rqw).flatten(1, 2)
            drq_raw += (dsw @ kc).sum(1)
        # Scores are tau * (s rq . k): d tau = sum_c (s rq_c) . (sum_j dS_cj k_j).
        drq = drq_raw * (scale * tau_w[:, None, None])
        dtau_w = (drq_raw * rq).sum((1, 2)) * scale
        drk = drk_raw * tau_r[:, None, None]
        dtau_r = (drk_raw * rk).sum((1, 2))
        return dq, dk, dv, drq, drk, dtau_w, dtau_r, dlam, None, None, None, None, None


def _tail_start(offset: int, window: int, block: int, block_mode: bool) -> int:
    """First position the next segment still needs: window keys and the open block."""
    need = (offset // window - 1) * window if block_mode else offset - window
    align = block * window // math.gcd(block, window) if block_mode else block
    return max(0, need) // align * align


def _per_head(t: Tensor | float, H: int, like: Tensor) -> Tensor:
    return torch.as_tensor(t, dtype=like.dtype, device=like.device).expand(H)


def chunked_brl_attention(
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
    causal: bool = False,
    window_mode: str = "sliding",
    block_size: int | None = None,
    mask: Tensor | None = None,
    hist: BRLHistory | None = None,
    bucket_size: int | None = None,
    chunk_size: int | None = None,
) -> tuple[Tensor, Tensor | None, BRLHistory | None]:
    """BRL-Attention without n x n tensors. See :func:`brlgraph.ops.brl.brl_attention`."""
    B, H, N, D = q.shape
    out_dtype = q.dtype
    cdt = torch.float64 if q.dtype == torch.float64 else torch.float32
    reservoir = rq is not None
    valid = torch.ones(B, N, dtype=torch.bool, device=q.device) if mask is None else mask.bool()
    qvalid = valid
    start, t_hist = 0, 0
    if causal and hist is not None:
        start, t_hist = hist.start, hist.k.shape[2]
        q = torch.cat([q.new_zeros(B, H, t_hist, D), q], 2)
        k = torch.cat([hist.k.to(k.dtype), k], 2)
        v = torch.cat([hist.v.to(v.dtype), v], 2)
        qvalid = torch.cat([torch.zeros_like(hist.valid, dtype=torch.bool), valid], 1)
        valid = torch.cat([hist.valid.bool(), valid], 1)
    L = q.shape[2]
    g = _geometry(L, window, causal, window_mode, block_size, bucket_size, chunk_size)
    pad = g.n_pad - L

    def flat(x: Tensor) -> Tensor:
        x = x.to(cdt).reshape(B * H, L, D)
        return F.pad(x, (0, 0, 0, pad)) if pad else x

    def flat_mask(m: Tensor) -> Tensor:
        return F.pad(m[:, None, :].expand(B, H, L).reshape(B * H, L), (0, pad), value=False)

    args = [flat(q), flat(k), flat(v)]
    init_lse = init_u = None
    if reservoir:
        M = rq.shape[-2]
        args += [rq.to(cdt).expand(B, H, M, D).reshape(B * H, M, D),
                 rk.to(cdt).expand(B, H, M, D).reshape(B * H, M, D)]
        args += [_per_head(t, H, args[0]).repeat(B) for t in (tau_w, tau_r, lam)]
        if causal and hist is not None:
            den = hist.den.to(cdt).reshape(B * H, M)
            init_lse = torch.where(den > 0, hist.max.to(cdt).reshape(B * H, M) + den.log(),
                                   NEG_INF)
            init_u = hist.num.to(cdt).reshape(B * H, M, D) / den.clamp_min(
                torch.finfo(cdt).tiny)[..., None]
    else:
        args += [None] * 5
    y, u, lse = _BRLFunction.apply(*args, flat_mask(valid), flat_mask(qvalid), init_lse,
                                   init_u, g)
    y = y[:, t_hist:L].reshape(B, H, N, D).to(out_dtype)
    if not causal:
        u_out = None if u is None else u.reshape(B, H, -1, D).to(out_dtype)
        return y, u_out, None

    # Causal: the history for the next segment of the stream.
    offset = start + L
    new_start = _tail_start(offset, window, g.group, g.block_mode)
    keep = slice(new_start - start, L)
    if reservoir:
        kk = (new_start - start) // g.group
        lse_k = lse[:, kk].reshape(B, H, -1)
        finite = torch.isfinite(lse_k)
        num = u[:, kk].reshape(B, H, -1, D).to(out_dtype)
        den = finite.to(out_dtype)
        mx = torch.where(finite, lse_k, 0.0).to(out_dtype)
    else:
        num = den = mx = q.new_zeros(B, H, 0)
    new_hist = BRLHistory(
        num.detach(), den.detach(), mx.detach(),
        k[:, :, keep].detach(), v[:, :, keep].detach(), valid[:, keep], new_start, offset,
    )
    return y, None, new_hist
