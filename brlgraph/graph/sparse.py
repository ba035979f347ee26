"""A constant sparse matrix stored for fast products and their gradients.

Node features of HGB are bag-of-words rows (0.2-6 % non-zero) and the adjacency
blocks of the relation-aware encoders are sparse: both are multiplied at every
step with a gradient flowing to the dense side only. :class:`SparseMatrix` keeps
the matrix and its transpose as CSR, so no backward pass sorts or transposes.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor


class SparseMatrix:
    r"""A constant sparse matrix A [N, F], stored for products and their gradients.

    A is kept twice, row-major (CSR [N, F]) and transposed (CSR [F, N]), with
    ``perm`` mapping the non-zeros of A (``values``, in row-major order) to those of
    :math:`A^T`, so that no gradient transposes, sorts or coalesces at every step, as
    ``torch.sparse.mm`` does in its backward. Two products use it:

    - :meth:`project`, :math:`A W^T + b` with gradients to W and b (A: mostly-zero
      input features); the weight gradient :math:`G^T A = (A^T G)^T` runs on the
      transpose. Input dropout drops ``values`` and passes them in; the transpose
      takes the same dropped values through ``perm``.
    - :meth:`mm`, :math:`A H` with the gradient :math:`A^T G` to H (A: a row-normalised
      adjacency block of a relation-aware encoder or of the type-path means).

    :meth:`project_reference` and :meth:`mm_reference` are the plain ``torch.sparse``
    products the tests compare them with.
    """

    def __init__(self, x: Tensor, device: torch.device | str | None = None) -> None:
        """From a dense [N, F] tensor (its non-zeros)."""
        coo = x.to_sparse().coalesce().to(device)  # row-major: the order of CSR's non-zeros
        rows, cols = coo.indices()
        crow = torch.zeros(coo.shape[0] + 1, dtype=torch.long, device=coo.device)
        crow[1:] = torch.bincount(rows, minlength=coo.shape[0]).cumsum(0)
        self._store(crow, cols, coo.values(), (coo.shape[0], coo.shape[1]))

    @classmethod
    def from_csr(cls, crow: Tensor, col: Tensor, values: Tensor, shape: tuple[int, int]) -> SparseMatrix:
        """From CSR arrays (columns sorted within each row; on any one device)."""
        out = cls.__new__(cls)
        out._store(crow, col, values, shape)
        return out

    def _store(self, crow: Tensor, col: Tensor, values: Tensor, shape: tuple[int, int]) -> None:
        n, f = shape
        self.shape = (int(n), int(f))
        self.crow, self.col, self.values = crow, col, values
        rows = torch.repeat_interleave(torch.arange(n, device=crow.device), crow.diff())
        self.perm = torch.argsort(col * n + rows, stable=True)  # column-major order of the same non-zeros
        self.crow_t = torch.zeros(f + 1, dtype=torch.long, device=crow.device)
        self.crow_t[1:] = torch.bincount(col, minlength=f).cumsum(0)
        self.col_t = rows[self.perm]

    def matrices(self, values: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(A, A^T) as CSR tensors, with ``values`` (default: the stored ones) as A's non-zeros."""
        v = self.values if values is None else values
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            x = torch.sparse_csr_tensor(self.crow, self.col, v, self.shape, check_invariants=False)
            xt = torch.sparse_csr_tensor(self.crow_t, self.col_t, v[self.perm], self.shape[::-1],
                                         check_invariants=False)
        return x, xt

    def project(self, weight: Tensor, bias: Tensor | None, values: Tensor | None = None) -> Tensor:
        """:math:`A W^T + b` [N, d] for ``weight`` [d, F]; gradients reach ``weight`` and
        ``bias`` (not A)."""
        out = _SparseProduct.apply(weight, *self.matrices(values))
        return out if bias is None else out + bias

    def project_reference(self, weight: Tensor, bias: Tensor | None, values: Tensor | None = None) -> Tensor:
        """:meth:`project` with ``torch.sparse.mm`` on a COO matrix (autograd does the rest)."""
        out = torch.sparse.mm(self._coo(values), weight.t())
        return out if bias is None else out + bias

    def mm(self, h: Tensor) -> Tensor:
        """:math:`A H` [N, d] for H [F, d]; the gradient reaches H (not A)."""
        return _SparseMatmul.apply(h, *self.matrices())

    def mm_reference(self, h: Tensor) -> Tensor:
        """:meth:`mm` with ``torch.sparse.mm`` on the CSR matrix (autograd does the rest)."""
        return torch.sparse.mm(self.matrices()[0], h)

    def rows(self, rows: Tensor) -> Tensor:
        """Rows ``rows`` [R] of A as a CSR tensor [R, F] (repeats allowed); a product with
        it takes the ``torch.sparse`` backward, which is cheap for a batch of rows."""
        first, count = self.crow[rows], self.crow[rows + 1] - self.crow[rows]
        new_crow = torch.cat([count.new_zeros(1), count.cumsum(0)])
        take = torch.repeat_interleave(first - new_crow[:-1], count) + torch.arange(
            int(new_crow[-1]), device=self.crow.device)
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(new_crow, self.col[take], self.values[take],
                                           (len(rows), self.shape[1]), check_invariants=False)

    def _coo(self, values: Tensor | None = None) -> Tensor:
        v = self.values if values is None else values
        rows = torch.repeat_interleave(torch.arange(self.shape[0], device=v.device), self.crow.diff())
        return torch.sparse_coo_tensor(torch.stack([rows, self.col]), v, self.shape, is_coalesced=True,
                                       check_invariants=False)


class _SparseProduct(torch.autograd.Function):
    """:math:`X W^T` for a constant sparse X; backward :math:`(X^T G)^T` from the stored transpose."""

    @staticmethod
    def forward(ctx, weight: Tensor, x: Tensor, xt: Tensor) -> Tensor:  # type: ignore[override]
        ctx.xt = xt
        return x @ weight.t()

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return (ctx.xt @ grad).t(), None, None


class _SparseMatmul(torch.autograd.Function):
    """:math:`A H` for a constant sparse A; backward :math:`A^T G` from the stored transpose."""

    @staticmethod
    def forward(ctx, h: Tensor, a: Tensor, at: Tensor) -> Tensor:  # type: ignore[override]
        ctx.at = at
        return a @ h

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return ctx.at @ grad, None, None
