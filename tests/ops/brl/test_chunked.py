"""The chunked path (brlgraph/ops/brl/chunked.py) against the dense reference (spec 3)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from brlgraph.ops.brl import (
    brl_attention,
    chunked_brl_attention,
    naive_brl_attention,
)
from tests.ops.brl.cases import CUDA, MODES, SIZES, make_inputs, run


@pytest.mark.parametrize("causal,mode", MODES)
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("n,w,m", SIZES)
def test_chunked_matches_naive_fp32(causal, mode, padded, n, w, m):
    ins, mask = make_inputs(n, m, padded=padded)
    ref = run(naive_brl_attention, ins, mask, window=w, causal=causal, mode=mode)
    ins32 = [t.float() for t in ins]
    # A small chunk so that several chunks (and reservoir blocks) are exercised.
    got = run(chunked_brl_attention, ins32, mask, window=w, causal=causal, mode=mode,
              chunk_size=16)
    torch.testing.assert_close(got[0].double(), ref[0], atol=1e-5, rtol=1e-5)
    if not causal:
        torch.testing.assert_close(got[1].double(), ref[1], atol=1e-5, rtol=1e-5)
    names = ["q", "k", "v", "rq", "rk", "tau_w", "tau_r", "lam"]
    for name, a, b in zip(names, got[2], ref[2], strict=True):
        torch.testing.assert_close(a.double(), b, atol=1e-5, rtol=1e-5, msg=lambda s, n=name: f"d{n}: {s}")


@CUDA
@pytest.mark.parametrize("causal,mode", MODES)
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-4), (torch.bfloat16, 3e-2)])
def test_chunked_on_cuda_matches_naive(causal, mode, dtype, tol):
    # the fast path on the GPU, several chunks and padding, against the float64 reference on
    # the CPU computed from the same (rounded) inputs
    ins, mask = make_inputs(300, 16, padded=True)
    ins = [t.to(dtype).double() for t in ins]
    ref = run(naive_brl_attention, ins, mask, window=32, causal=causal, mode=mode)
    got = run(chunked_brl_attention, [t.to("cuda", dtype) for t in ins], mask.cuda(), window=32,
              causal=causal, mode=mode, chunk_size=64)
    assert got[0].device.type == "cuda" and got[0].dtype == dtype
    torch.testing.assert_close(got[0].cpu().double(), ref[0], atol=tol, rtol=tol)
    if not causal:
        torch.testing.assert_close(got[1].cpu().double(), ref[1], atol=tol, rtol=tol)
    for a, b in zip(got[2], ref[2], strict=True):
        torch.testing.assert_close(a.cpu().double(), b, atol=tol, rtol=tol)


@pytest.mark.parametrize("causal,mode", MODES)
def test_chunked_matches_naive_bf16(causal, mode):
    ins, mask = make_inputs(40, 8, padded=True, dtype=torch.float32)
    ins = [t.bfloat16() for t in ins]
    ref = run(naive_brl_attention, [t.float() for t in ins], mask, window=8, causal=causal,
              mode=mode)
    got = run(chunked_brl_attention, ins, mask, window=8, causal=causal, mode=mode)
    assert got[0].dtype == torch.bfloat16
    torch.testing.assert_close(got[0].float(), ref[0], atol=2e-2, rtol=2e-2)
    for a, b in zip(got[2], ref[2], strict=True):
        torch.testing.assert_close(a.float(), b, atol=2e-2, rtol=2e-2)


def test_default_chunking_long_sequence():
    """Default geometry (half-window buckets, several chunks) on a longer sequence."""
    ins, mask = make_inputs(700, 16, B=1, padded=True)
    for causal in (False, True):
        ref = run(naive_brl_attention, ins, mask, window=32, causal=causal, mode="sliding")
        got = run(chunked_brl_attention, ins, mask, window=32, causal=causal, mode="sliding")
        torch.testing.assert_close(got[0], ref[0], atol=1e-10, rtol=1e-10)
        for a, b in zip(got[2], ref[2], strict=True):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("mode", ["sliding", "block"])
def test_causality(mode):
    ins, mask = make_inputs(70, 6, padded=True)
    q, k, v, rq, rk, tw, tr, lam = ins
    kw = dict(tau_w=tw, tau_r=tr, lam=lam, window=8, causal=True, window_mode=mode, mask=mask)
    y, _, _ = brl_attention(q, k, v, rq, rk, **kw)
    for i in (0, 7, 8, 33, 68):
        q2, k2, v2 = (t.clone() for t in (q, k, v))
        for t in (q2, k2, v2):
            t[:, :, i + 1 :] = torch.randn_like(t[:, :, i + 1 :]) * 3
        mask2 = mask.clone()
        mask2[:, i + 1 :] = torch.rand_like(mask2[:, i + 1 :], dtype=torch.float) > 0.5
        y2, _, _ = brl_attention(q2, k2, v2, rq, rk, **{**kw, "mask": mask2})
        torch.testing.assert_close(y2[:, :, : i + 1], y[:, :, : i + 1], atol=1e-12, rtol=0)


@pytest.mark.parametrize("mode", ["sliding", "block"])
@pytest.mark.parametrize("block_size", [None, 5])
@pytest.mark.parametrize("splits", [(0, 13, 70), (0, 8, 16, 70), (0, 3, 4, 41, 70), (0, 1, 70)])
def test_stream_in_segments_equals_whole(mode, block_size, splits):
    ins, mask = make_inputs(70, 6, padded=True)
    q, k, v, rq, rk, tw, tr, lam = ins
    kw = dict(tau_w=tw, tau_r=tr, lam=lam, window=8, causal=True, window_mode=mode,
              block_size=block_size)
    whole, _, _ = brl_attention(q, k, v, rq, rk, mask=mask, **kw)
    hist, parts = None, []
    for a, b in itertools.pairwise(splits):
        sl = slice(a, b)
        y, _, hist = brl_attention(q[:, :, sl], k[:, :, sl], v[:, :, sl], rq, rk,
                                   mask=mask[:, sl], hist=hist, **kw)
        parts.append(y)
        assert hist.offset == b
        # The carried tail: the window plus the open block, aligned to block starts.
        b_res = block_size or 8
        align = b_res if mode == "sliding" else math.lcm(b_res, 8)
        assert hist.k.shape[2] < (8 if mode == "sliding" else 16) + align
    torch.testing.assert_close(torch.cat(parts, 2), whole, atol=1e-12, rtol=1e-12)


def test_stream_history_starts_from_zeros():
    """A history of zeros (the spec's x_hist at the start) behaves as no history."""
    (q, k, v, rq, rk, tw, tr, lam), _ = make_inputs(20, 4, B=1)
    kw = dict(tau_w=tw, tau_r=tr, lam=lam, window=4, causal=True)
    y, _, hist = brl_attention(q, k, v, rq, rk, **kw)
    zero = hist._replace(num=torch.zeros_like(hist.num), den=torch.zeros_like(hist.den),
                         max=torch.zeros_like(hist.max), k=k[:, :, :0], v=v[:, :, :0],
                         valid=torch.ones(1, 0, dtype=torch.bool), start=0, offset=0)
    y0, _, _ = brl_attention(q, k, v, rq, rk, hist=zero, **kw)
    torch.testing.assert_close(y0, y)


@pytest.mark.parametrize("causal,mode", MODES)
def test_padded_tokens_do_not_matter(causal, mode):
    ins, mask = make_inputs(40, 5, padded=True)
    q, k, v, rq, rk, tw, tr, lam = ins
    kw = dict(tau_w=tw, tau_r=tr, lam=lam, window=8, causal=causal, window_mode=mode, mask=mask)
    y, u, _ = brl_attention(q, k, v, rq, rk, **kw)
    pad = ~mask[:, None, :, None]
    q2, k2, v2 = (torch.where(pad, torch.randn_like(t) * 5, t) for t in (q, k, v))
    y2, u2, _ = brl_attention(q2, k2, v2, rq, rk, **kw)
    torch.testing.assert_close(y2, y, atol=1e-12, rtol=0)
    assert (y[pad.expand_as(y)] == 0).all()
    if u is not None:
        torch.testing.assert_close(u2, u, atol=1e-12, rtol=0)


@pytest.mark.parametrize("causal", [False, True])
def test_single_valid_token_and_fully_padded_rows(causal):
    ins, _ = make_inputs(20, 4, dtype=torch.float32)
    ins = [t.requires_grad_() for t in ins]
    q, k, v, rq, rk, tw, tr, lam = ins
    mask = torch.zeros(2, 20, dtype=torch.bool)
    mask[0, 7] = True  # one valid token; sequence 1 fully padded
    y, u, _ = brl_attention(q, k, v, rq, rk, tau_w=tw, tau_r=tr, lam=lam, window=4,
                            causal=causal, mask=mask)
    assert torch.isfinite(y).all()
    assert (y[1] == 0).all() and (y[0, :, :7] == 0).all()
    # One valid token: it attends to itself (window) and reads u = v_7 (non-causal).
    if not causal:
        torch.testing.assert_close(y[0, :, 7], v[0, :, 7])
        assert (u[1] == 0).all()
    grads = torch.autograd.grad(y.sum() + (0 if u is None else u.sum()), ins)
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("causal,mode", [(False, "sliding"), (True, "sliding"), (False, "block"),
                                         (True, "block")])
def test_gradcheck_fast_path(causal, mode):
    ins, mask = make_inputs(11, 3, B=1, H=2, D=3, padded=True)
    ins = [t.requires_grad_() for t in ins]

    def f(q, k, v, rq, rk, tw, tr, lam):
        y, u, _ = chunked_brl_attention(q, k, v, rq, rk, tau_w=tw, tau_r=tr, lam=lam, window=4,
                                        causal=causal, window_mode=mode, mask=mask,
                                        chunk_size=4, block_size=2 if causal else None)
        return (y,) if u is None else (y, u)

    assert torch.autograd.gradcheck(f, ins, eps=1e-6, atol=1e-6, fast_mode=True)


@pytest.mark.parametrize("n", [54, 256, 260, 2048, 2052, 5000])
@pytest.mark.parametrize("causal", [False, True])
def test_chunks_are_balanced_so_padding_stays_small(n, causal):
    from brlgraph.ops.brl.chunked import DEFAULT_CHUNK_TOKENS, _geometry

    g = _geometry(n, 16, causal, "sliding", None, None, None)
    chunks = g.n_pad // g.chunk
    unit = 16  # lcm(bucket c = 16, block b = 16 (causal) or 1)
    assert g.n_pad % g.chunk == 0 and g.chunk % 16 == 0 and g.chunk <= DEFAULT_CHUNK_TOKENS
    assert chunks == max(1, math.ceil(n / DEFAULT_CHUNK_TOKENS))  # as few chunks as the target allows
    assert n <= g.n_pad < n + chunks * unit  # less than one unit of padding per chunk
