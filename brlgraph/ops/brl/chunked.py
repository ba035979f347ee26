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
        return torch.zeros(ok.shape, dtype=dtype, device=device).masked_fill_(~ok, NEG_INF)


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
    target = chunk_size or DEFAULT_CHUNK_TOKENS
    T = unit * max(1, round(target / unit))
    T = min(T, unit * math.ceil(n / unit))  # short sequences: one chunk
    n_pad = T * math.ceil(n / T)
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


def _local_scores(qs_b: Tensor, k_ext: Tensor, kbias_ext: Tensor, s0: int, g: _Geometry,
                  pattern: Tensor) -> tuple[Tensor, Tensor]:
    """Scores [BH, nb, c, nwin c] of one chunk's buckets and the key windows."""
    nb = qs_b.shape[1]
    k_win = _windows(k_ext, s0, nb, g)
    s = qs_b @ k_win.transpose(-1, -2)
    s += _windows(kbias_ext, s0, nb, g)[:, :, None, :]
    s += pattern
    return s, k_win


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
        w, T, c, G = g.window, g.chunk, g.bucket, g.group
        scale = D**-0.5
        reservoir = rq is not None
        pattern = g.pattern_bias(q.dtype, q.device)
        qs = q * scale
        k_ext = F.pad(k, (0, 0, w, w))
        v_ext = F.pad(v, (0, 0, w, w))
        kbias = torch.zeros(kvalid.shape, dtype=q.dtype, device=q.device).masked_fill_(
            ~kvalid, NEG_INF)
        kbias_ext = F.pad(kbias, (w, w), value=NEG_INF)
        tiny = torch.finfo(q.dtype).tiny
        chunks = range(0, Np, T)

        # Write hop: partial statistics per group, then LSE-combine or prefix-scan.
        if reservoir:
            rqs = (rq * scale)[:, None]  # [BH, 1, M, D]
            tw = tau_w[:, None, None, None]
            ms, ls, nums = [], [], []
            for s0 in chunks:
                kc = k[:, s0 : s0 + T].unflatten(1, (T // G, G))
                vc = v[:, s0 : s0 + T].unflatten(1, (T // G, G))
                sw = rqs @ kc.transpose(-1, -2)
                sw *= tw
                sw += kbias[:, s0 : s0 + T].unflatten(1, (T // G, G))[:, :, None, :]
                mk = sw.amax(-1)
                p = sw.sub_(_safe(mk)[..., None]).exp_()
                ms.append(mk)
                ls.append(p.sum(-1))
                nums.append(p @ vc)
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
            rkT = rk[:, None].transpose(-1, -2)  # [BH, 1, D, M]
            tr = tau_r[:, None, None, None]
            lm = lam[:, None, None]

        y = torch.empty_like(q)
        y_loc = torch.empty_like(q)
        lse_loc = q.new_empty(BH, Np)
        for s0 in chunks:
            nb = T // c
            qs_b = qs[:, s0 : s0 + T].unflatten(1, (nb, c))
            s, _ = _local_scores(qs_b, k_ext, kbias_ext, s0, g, pattern)
            mx = _safe(s.amax(-1, keepdim=True))
            p = s.sub_(mx).exp_()
            den = p.sum(-1, keepdim=True)
            yl = (p @ _windows(v_ext, s0, nb, g)) / den.clamp_min(tiny)
            yl = yl.flatten(1, 2)
            y_loc[:, s0 : s0 + T] = yl
            lse_loc[:, s0 : s0 + T] = (mx + torch.log(den)).flatten(1)
            if reservoir:
                ng = T // G
                qg = qs[:, s0 : s0 + T].unflatten(1, (ng, G))
                pr = torch.softmax((qg @ rkT) * tr, dim=-1)
                ug = u[:, s0 // G : s0 // G + ng] if g.causal else u
                yg = (pr @ ug).flatten(1, 2)
                hg = (has[:, s0 // G : s0 // G + ng] if g.causal else has)
                lam_eff = (lm * hg[:, :, None]).expand(BH, ng, G).reshape(BH, T, 1)
                y[:, s0 : s0 + T] = yl + lam_eff * (yg - yl)
            else:
                y[:, s0 : s0 + T] = yl
        y *= qvalid[..., None]

        ctx.g = g
        ctx.reservoir = reservoir
        if reservoir:
            ctx.save_for_backward(q, k, v, rq, rk, tau_w, tau_r, lam, kvalid, qvalid, y_loc,
                                  lse_loc, lse_w, u, has)
            if g.causal:
                ctx.mark_non_differentiable(u, lse_w)
                return y, u, lse_w
            ctx.mark_non_differentiable(lse_w)
            return y, u[:, 0], lse_w
        ctx.save_for_backward(q, k, v, kvalid, qvalid, y_loc, lse_loc)
        return y, None, None

    @staticmethod
    def backward(ctx, dy, du_out, _dlse):
        g: _Geometry = ctx.g
        if ctx.reservoir:
            (q, k, v, rq, rk, tau_w, tau_r, lam, kvalid, qvalid, y_loc, lse_loc, lse_w, u,
             has) = ctx.saved_tensors
        else:
            q, k, v, kvalid, qvalid, y_loc, lse_loc = ctx.saved_tensors
        BH, Np, D = q.shape
        w, T, c, G = g.window, g.chunk, g.bucket, g.group
        scale = D**-0.5
        pattern = g.pattern_bias(q.dtype, q.device)
        qs = q * scale
        k_ext = F.pad(k, (0, 0, w, w))
        v_ext = F.pad(v, (0, 0, w, w))
        kbias = torch.zeros(kvalid.shape, dtype=q.dtype, device=q.device).masked_fill_(
            ~kvalid, NEG_INF)
        kbias_ext = F.pad(kbias, (w, w), value=NEG_INF)
        dy = dy * qvalid[..., None]
        lse_loc = _safe(lse_loc, math.inf)
        chunks = range(0, Np, T)

        dq = torch.zeros_like(q)
        dk_ext = torch.zeros_like(k_ext)
        dv_ext = torch.zeros_like(v_ext)
        if ctx.reservoir:
            rkT = rk[:, None].transpose(-1, -2)
            tr = tau_r[:, None, None, None]
            lm = lam[:, None, None]
            du = torch.zeros_like(u[:, :-1] if g.causal else u)
            drk = torch.zeros_like(rk)
            dtau_r = torch.zeros_like(tau_r)
            dlam = torch.zeros_like(lam)

        # Pass 1: local backward and read-hop backward, chunk by chunk.
        for s0 in chunks:
            nb = T // c
            sl = slice(s0, s0 + T)
            dyc, ylc = dy[:, sl], y_loc[:, sl]
            if ctx.reservoir:
                ng = T // G
                gsl = slice(s0 // G, s0 // G + ng) if g.causal else slice(0, 1)
                lam_eff = (lm * has[:, gsl][:, :, None]).expand(BH, ng, G).reshape(BH, T, 1)
                qg = qs[:, sl].unflatten(1, (ng, G))
                R = qg @ rkT  # [BH, ng, G, M]
                pr = torch.softmax(R * tr, dim=-1)
                ug = u[:, gsl]
                yg = pr @ ug
                dyg = dyc.unflatten(1, (ng, G))
                dlam += (dyg * (yg - ylc.unflatten(1, (ng, G)))).sum((2, 3)).mul(
                    has[:, gsl]).sum(1)
                dog = (dyc * lam_eff).unflatten(1, (ng, G))
                dug = pr.transpose(-1, -2) @ dog
                if g.causal:
                    du[:, gsl] += dug
                else:
                    du += dug.sum(1, keepdim=True)
                dpr = dog @ ug.transpose(-1, -2)
                dsr = dpr.sub_((dog * yg).sum(-1, keepdim=True)).mul_(pr)
                dq[:, sl] += ((dsr @ rk[:, None]) * (tr * scale)).flatten(1, 2)
                drk += (dsr.transpose(-1, -2) @ qg).sum(1) * tau_r[:, None, None]
                dtau_r += (dsr * R).sum((1, 2, 3))
                dol = dyc * (1 - lam_eff)
            else:
                dol = dyc
            # Local window backward: recompute P from the saved log-sum-exp.
            qs_b = qs[:, sl].unflatten(1, (nb, c))
            s, k_win = _local_scores(qs_b, k_ext, kbias_ext, s0, g, pattern)
            p = s.sub_(lse_loc[:, sl].unflatten(1, (nb, c))[..., None]).exp_()
            dol_b = dol.unflatten(1, (nb, c))
            v_win = _windows(v_ext, s0, nb, g)
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

        dk = dk_ext[:, w : w + Np]
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
        rqs = (rq * scale)[:, None]
        tw = tau_w[:, None, None, None]
        drq = torch.zeros_like(rq)
        dtau_w = torch.zeros_like(tau_w)
        dk, dv = dk.clone(), dv.clone()
        for s0 in chunks:
            ng = T // G
            sl = slice(s0, s0 + T)
            gsl = slice(s0 // G, s0 // G + ng) if g.causal else slice(0, 1)
            kc = k[:, sl].unflatten(1, (ng, G))
            vc = v[:, sl].unflatten(1, (ng, G))
            Rw = rqs @ kc.transpose(-1, -2)  # [BH, ng, M, G]
            sw = Rw * tw
            sw += kbias[:, sl].unflatten(1, (ng, G))[:, :, None, :]
            pt = sw.sub_(rho[:, gsl][..., None]).exp_()
            gug = gu[:, gsl]
            dv[:, sl] += (pt.transpose(-1, -2) @ gug).flatten(1, 2)
            dpt = gug @ vc.transpose(-1, -2)
            dsw = dpt.sub_(gd[:, gsl][..., None]).mul_(pt)
            dk[:, sl] += (dsw.transpose(-1, -2) @ rqs).flatten(1, 2) * tau_w[:, None, None]
            drq += (dsw @ kc).sum(1) * (tau_w[:, None, None] * scale)
            dtau_w += (dsw * Rw).sum((1, 2, 3))
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
        return F.pad(x.to(cdt).reshape(B * H, L, D), (0, 0, 0, pad))

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
