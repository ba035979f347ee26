"""The fused C++ CPU kernel (brlgraph/ops/brl/fused.py, fused_cpu.cpp) against the dense
reference.

The kernel is built on first use. Without a C++ compiler these tests skip, except in CI
(``CI=true``), where the build is part of what is tested.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch

from brlgraph.ops.brl import fused_brl_attention, naive_brl_attention
from brlgraph.ops.brl.fused import (
    HEAD_SIZES,
    build_directory,
    build_error,
    fused_supported,
    load_extension,
)
from tests.ops.brl.cases import make_inputs, run


@pytest.fixture(scope="module", autouse=True)
def extension():
    try:
        return load_extension()
    except RuntimeError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))


def fused(q, k, v, rq=None, rk=None, *, causal, **kw):
    """The fused path under the signature of the others (it is non-causal only)."""
    assert not causal
    return fused_brl_attention(q, k, v, rq, rk, **kw)


NAMES = ["q", "k", "v", "rq", "rk", "tau_w", "tau_r", "lam"]
# (n, w, m, D): n below, at and around the tile of 4 queries and the 16-key score vector,
# m not a multiple of the tile, every compiled head size
FUSED_SIZES = [(1, 4, 3, 8), (3, 8, 5, 8), (5, 8, 3, 16), (37, 8, 4, 8), (64, 16, 16, 32),
               (50, 16, 17, 64), (70, 6, 5, 8), (130, 16, 16, 32)]


def assert_all_close(got, ref, tol):
    torch.testing.assert_close(got[0].double(), ref[0], atol=tol, rtol=tol)
    if ref[1] is not None:
        torch.testing.assert_close(got[1].double(), ref[1], atol=tol, rtol=tol)
    for name, a, b in zip(NAMES, got[2], ref[2], strict=True):
        torch.testing.assert_close(a.double(), b, atol=tol, rtol=tol,
                                   msg=lambda s, n=name: f"d{n}: {s}")


@pytest.mark.parametrize("mode", ["sliding", "block"])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("n,w,m,D", FUSED_SIZES)
def test_fused_matches_naive_fp32(mode, padded, n, w, m, D):
    ins, mask = make_inputs(n, m, D=D, padded=padded and n > 2)
    ref = run(naive_brl_attention, ins, mask, window=w, causal=False, mode=mode)
    got = run(fused, [t.float() for t in ins], mask, window=w, causal=False, mode=mode)
    assert got[0].dtype == torch.float32
    assert_all_close(got, ref, 2e-5)


@pytest.mark.parametrize("mode", ["sliding", "block"])
def test_fused_float64_shared_reservoir_and_gradient_into_u(mode):
    """float64 agrees to rounding; a reservoir broadcast over the batch works; ``run`` puts
    a cotangent on ``u`` too, so the write hop's backward sees a gradient from outside."""
    ins, mask = make_inputs(33, 5, padded=True)
    ins[3], ins[4] = ins[3][:1], ins[4][:1]  # [1, H, M, D], as one learned reservoir
    ref = run(naive_brl_attention, ins, mask, window=4, causal=False, mode=mode)
    got = run(fused, ins, mask, window=4, causal=False, mode=mode)
    assert got[0].dtype == torch.float64
    assert_all_close(got, ref, 1e-10)


@pytest.mark.parametrize("layout", ["merged_heads", "transposed"])
def test_fused_gradient_into_u_in_any_layout(layout):
    """The gradient reaching ``u`` from outside comes in the layout of whatever read it:
    heads merged for ``W_Oc`` ([B, M, H, D] in memory) or with a last axis that is not
    contiguous; the kernel starts the write hop's backward from it either way."""
    ins, mask = make_inputs(21, 6, D=16, padded=True)
    ins = [t.float().requires_grad_() for t in ins]
    B, H, M, D = ins[3].shape
    weight = torch.randn(H * D, 8)
    grads = []
    for fn in (naive_brl_attention, fused_brl_attention):
        y, u, _ = fn(*ins[:5], tau_w=ins[5], tau_r=ins[6], lam=ins[7], window=5, mask=mask)
        if layout == "merged_heads":
            tail = (u.transpose(1, 2).flatten(2) @ weight).square().sum()
        else:
            tail = (u.transpose(-1, -2) * torch.arange(M * D).view(M, D).t()).sum()
        grads.append(torch.autograd.grad(y.square().sum() + tail, ins))
    for name, a, b in zip(NAMES, *grads, strict=True):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4, msg=lambda s, n=name: f"d{n}: {s}")


@pytest.mark.parametrize("mode", ["sliding", "block"])
@pytest.mark.parametrize("padded", [False, True])
def test_fused_local_only_matches_naive(mode, padded):
    (q, k, v, *_), mask = make_inputs(45, 4, D=16, padded=padded)
    gy = torch.randn(q.shape, dtype=torch.float64)

    def y_and_grads(fn, dtype):
        ins = [t.to(dtype).requires_grad_() for t in (q, k, v)]
        y, u, _ = fn(*ins, window=8, window_mode=mode, mask=mask)
        assert u is None
        return [y, *torch.autograd.grad(y, ins, gy.to(dtype))]

    got = y_and_grads(fused_brl_attention, torch.float32)
    for a, b in zip(got, y_and_grads(naive_brl_attention, torch.float64), strict=True):
        torch.testing.assert_close(a.double(), b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["sliding", "block"])
def test_fused_matches_naive_bf16(mode):
    ins, mask = make_inputs(40, 8, D=16, padded=True, dtype=torch.float32)
    ins = [t.bfloat16() for t in ins]
    ref = run(naive_brl_attention, [t.float() for t in ins], mask, window=8, causal=False,
              mode=mode)
    got = run(fused, ins, mask, window=8, causal=False, mode=mode)
    assert got[0].dtype == torch.bfloat16 and got[1].dtype == torch.bfloat16
    # bf16 rounding of the inputs' gradients and of the cotangents (drawn in bf16 here,
    # in fp32 for the reference): errors about 0.4% of a tensor's largest entry, the same
    # as the sdpa path's; sums that cancel (lambda's gradient) need the scale of the tensor
    for a, b in zip([got[0], got[1], *got[2]], [ref[0], ref[1], *ref[2]], strict=True):
        torch.testing.assert_close(a.float(), b, atol=2e-2 * max(1.0, b.abs().max().item()),
                                   rtol=2e-2)


def test_fused_fully_padded_sequence_and_split_head_layout():
    """A sequence with no valid token gives zeros and zero gradients (no NaN); inputs in the
    layout the modules pass ([B, N, H, D] memory seen as [B, H, N, D]) give the same as
    contiguous ones."""
    ins, _ = make_inputs(20, 4, D=8)
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[1] = False
    ref = run(naive_brl_attention, ins, mask, window=4, causal=False, mode="sliding")
    got = run(fused, ins, mask, window=4, causal=False, mode="sliding")
    assert_all_close(got, ref, 1e-10)
    assert not got[0][1].any() and not got[1][1].any()
    strided = [t.transpose(1, 2).contiguous().transpose(1, 2) for t in ins[:3]] + ins[3:]
    again = run(fused, strided, mask, window=4, causal=False, mode="sliding")
    assert_all_close(again, [got[0].double(), got[1].double(), [g.double() for g in got[2]]],
                     1e-12)


@pytest.mark.parametrize("mode", ["sliding", "block"])
def test_gradcheck_fused(mode):
    ins, mask = make_inputs(11, 5, B=2, H=2, D=8, padded=True)
    ins = [t.requires_grad_() for t in ins]

    def f(q, k, v, rq, rk, tw, tr, lam):
        return fused_brl_attention(q, k, v, rq, rk, tau_w=tw, tau_r=tr, lam=lam, window=2,
                                   window_mode=mode, mask=mask)[:2]

    assert torch.autograd.gradcheck(f, ins, eps=1e-6, atol=1e-6, fast_mode=True)


def test_supported_cases_and_build_folder():
    q = torch.zeros(2, 2, 30, 8)
    assert fused_supported(q)
    assert not fused_supported(q, causal=True)
    assert not fused_supported(torch.zeros(2, 2, 30, 12))  # head size without a build
    assert set(HEAD_SIZES) == {8, 16, 32, 64}
    with pytest.raises(RuntimeError, match="head size 12"):
        fused_brl_attention(*(torch.zeros(1, 1, 4, 12) for _ in range(3)), window=2)
    # one folder per source, PyTorch version, flags and CPU: a rebuild after any change
    assert build_directory().name.startswith("brlgraph_fused_cpu_")
    assert build_directory() == build_directory()


def test_fused_threads_give_the_same_result():
    """(sequence, head) pairs are shared out over threads, each writing its own rows: two
    threads give bit for bit what one gives."""
    ins, mask = make_inputs(40, 6, B=3, H=4, D=16, padded=True, dtype=torch.float32)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run(fused, ins, mask, window=4, causal=False, mode="sliding")
        torch.set_num_threads(2)
        two = run(fused, ins, mask, window=4, causal=False, mode="sliding")
    finally:
        torch.set_num_threads(before)
    for a, b in zip([one[0], one[1], *one[2]], [two[0], two[1], *two[2]], strict=True):
        assert torch.equal(a, b)


def test_build_error_names_the_compilers_error_line():
    out = ("Error building extension 'brlgraph_fused_cpu': [1/2] c++ -MMD -c fused_cpu.cpp\n"
           "fused_cpu.cpp:12:3: error: 'foo' was not declared in this scope\n"
           "ninja: build stopped: subcommand failed.")
    assert build_error(RuntimeError(out)) == (
        "RuntimeError: fused_cpu.cpp:12:3: error: 'foo' was not declared in this scope")
    assert build_error(RuntimeError("Ninja is required to load C++ extensions")) == (
        "RuntimeError: Ninja is required to load C++ extensions")


def test_a_failed_build_falls_back_to_sdpa_with_one_warning(monkeypatch):
    from brlgraph.ops.brl import fused as fused_module
    from brlgraph.ops.brl import select_impl

    monkeypatch.setattr(fused_module, "_EXT", None)
    monkeypatch.setattr(fused_module, "_ERROR", "brlgraph's fused CPU kernel could not be built "
                                                "(RuntimeError: no compiler)")
    monkeypatch.setattr(fused_module.fused_available, "_warned", False, raising=False)
    q = torch.zeros(2, 2, 30, 8)
    with pytest.warns(RuntimeWarning, match="could not be built"):
        assert select_impl(q) == "sdpa"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once per process
        assert select_impl(q) == "sdpa"
    with pytest.raises(RuntimeError, match="no compiler"):
        fused_brl_attention(q, q, q, window=2)


def test_a_read_only_cache_folder_builds_in_the_temporary_folder(tmp_path, monkeypatch):
    """The extension is loaded again through a cache root that cannot be created (a path
    under a file): the build goes to the temporary folder and the kernel still runs."""
    from brlgraph.ops.brl import fused as fused_module

    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(blocker / "cache"))
    monkeypatch.setattr(fused_module, "_EXT", None)
    monkeypatch.setattr(fused_module, "_ERROR", None)
    ext = fused_module.load_extension()
    assert Path(ext.__file__).parent.parent.name == f"brlgraph-{os.getuid()}"
    y, _, _ = fused_brl_attention(*(torch.ones(1, 1, 4, 8) for _ in range(3)), window=2)
    torch.testing.assert_close(y, torch.ones(1, 1, 4, 8))
