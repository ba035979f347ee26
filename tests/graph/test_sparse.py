"""SparseMatrix: sparse products and projections against torch's own sparse tensors."""

from __future__ import annotations

import pytest
import torch


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_sparse_features_project_like_the_coo_reference(dropout):
    from brlgraph.graph import SparseMatrix

    g = torch.Generator().manual_seed(0)
    x = torch.rand(40, 23, generator=g) * (torch.rand(40, 23, generator=g) < 0.15)
    x[7] = 0.0  # an empty row
    x[:, 3] = 0.0  # and an empty column
    feats = SparseMatrix(x)
    xs, xt = feats.matrices()
    assert torch.equal(xs.to_dense(), x) and torch.equal(xt.to_dense(), x.t())
    weight = torch.randn(6, 23, requires_grad=True)
    bias = torch.randn(6, requires_grad=True)
    torch.manual_seed(0)
    values = torch.nn.functional.dropout(feats.values, dropout) if dropout else None
    upstream = torch.randn(40, 6, generator=g)
    results = []
    for project in (feats.project, feats.project_reference):
        weight.grad = bias.grad = None
        out = project(weight, bias, values)
        (out * upstream).sum().backward()
        results.append((out.detach(), weight.grad.clone(), bias.grad.clone()))
    for fast, ref in zip(*results, strict=True):
        torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-6)
    kept = x if values is None else torch.sparse_csr_tensor(feats.crow, feats.col, values, x.shape).to_dense()
    torch.testing.assert_close(results[0][0], kept @ weight.detach().t() + bias.detach(), rtol=1e-5, atol=1e-5)


def test_sparse_matrix_products_and_rows_match_torch_sparse():
    from brlgraph.graph import SparseMatrix

    g = torch.Generator().manual_seed(1)
    a = torch.rand(30, 17, generator=g) * (torch.rand(30, 17, generator=g) < 0.2)
    a[4] = 0.0  # an empty row
    a[:, 9] = 0.0  # and an empty column
    dense = SparseMatrix(a)
    csr = a.to_sparse_csr()
    block = SparseMatrix.from_csr(csr.crow_indices(), csr.col_indices(), csr.values(), (30, 17))
    for m in (dense, block):
        xs, xt = m.matrices()
        assert torch.equal(xs.to_dense(), a) and torch.equal(xt.to_dense(), a.t())
    h = torch.randn(17, 5, generator=g, requires_grad=True)
    upstream = torch.randn(30, 5, generator=g)
    results = []
    for mm in (block.mm, block.mm_reference):
        h.grad = None
        out = mm(h)
        (out * upstream).sum().backward()
        results.append((out.detach(), h.grad.clone()))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])
    torch.testing.assert_close(results[0][0], a @ h.detach())
    torch.testing.assert_close(results[0][1], a.t() @ upstream)
    rows = torch.tensor([29, 4, 0, 4, 11])  # unsorted, an empty row, a repeat
    assert torch.equal(block.rows(rows).to_dense(), a[rows])
