"""The dense reference (brlgraph/ops/brl/naive.py): the matrix P of spec 1."""

from __future__ import annotations

import pytest
import torch

from brlgraph.ops.brl import (
    brl_attention_matrix,
)
from tests.ops.brl.cases import MODES, make_inputs


@pytest.mark.parametrize("causal,mode", MODES)
def test_rows_of_P_are_distributions(causal, mode):
    (q, k, v, rq, rk, tw, tr, lam), mask = make_inputs(33, 5, padded=True)
    P, _ = brl_attention_matrix(q, k, rq, rk, tw, tr, lam, 8, causal, mode, None, mask)
    assert (P >= 0).all()
    rows = P.sum(-1)
    valid = mask[:, None, :].expand_as(rows)
    torch.testing.assert_close(rows[valid], torch.ones_like(rows[valid]))
    assert (rows[~valid] == 0).all()
