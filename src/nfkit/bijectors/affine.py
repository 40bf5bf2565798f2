r"""Affine bijectors: Shift, Scale, ScaleMatvecDiag, ScaleMatvecTriL."""

from __future__ import annotations

import torch
from torch import Tensor

from nfkit._tensors import ArrayLike, register_tensor
from nfkit.bijectors.base import Bijector, Context, Pair

__all__ = ["Scale", "ScaleMatvecDiag", "ScaleMatvecTriL", "Shift"]


class Shift(Bijector):
    r"""Translation :math:`x = z + s`, with log-det 0.

    Args:
        shift: the offset :math:`s`, broadcast against the input (shape ``(*, D)`` or scalar).
            Pass an ``nn.Parameter`` to train it.

    Example:
        >>> import torch, nfkit.bijectors as nfb
        >>> nfb.Shift([0.5, 0.25]).forward(torch.zeros(2))
        tensor([0.5000, 0.2500])

    """

    is_constant_jacobian = True

    def __init__(self, shift: ArrayLike) -> None:
        super().__init__()
        self.shift = register_tensor(self, "shift", shift)

    def _forward_and_log_det(self, z: Tensor, context: Context) -> Pair:
        return z + self.shift, z.new_zeros(())

    def _inverse_and_log_det(self, x: Tensor, context: Context) -> Pair:
        return x - self.shift, x.new_zeros(())

    def extra_repr(self) -> str:
        return f"shape={list(self.shift.shape)}"


class Scale(Bijector):
    r"""Elementwise scaling :math:`x = c \odot z` with log-det :math:`\log|c|` per element.

    Args:
        scale: the factor :math:`c \neq 0`, broadcast against the input.
        log_scale: alternatively :math:`\log c` (keeps :math:`c > 0` when trained).

    Example:
        >>> import torch, nfkit.bijectors as nfb
        >>> nfb.Scale(2.0).forward_log_det_jacobian(torch.zeros(2), event_ndims=1)
        tensor(1.3863)

    """

    is_constant_jacobian = True

    def __init__(
        self, scale: ArrayLike | None = None, *, log_scale: ArrayLike | None = None
    ) -> None:
        super().__init__()
        if (scale is None) == (log_scale is None):
            raise ValueError("Scale takes exactly one of scale= and log_scale=")
        self._use_log = log_scale is not None
        register_tensor(self, "param", log_scale if self._use_log else scale)

    def _log_abs_scale(self) -> Tensor:
        return self.param if self._use_log else self.param.abs().log()

    def _scale(self) -> Tensor:
        return self.param.exp() if self._use_log else self.param

    def _forward_and_log_det(self, z: Tensor, context: Context) -> Pair:
        return z * self._scale(), self._log_abs_scale()

    def _inverse_and_log_det(self, x: Tensor, context: Context) -> Pair:
        return x / self._scale(), -self._log_abs_scale()

    def extra_repr(self) -> str:
        return f"shape={list(self.param.shape)}"


class ScaleMatvecDiag(Bijector):
    r"""Diagonal matrix-vector scaling :math:`x = \mathrm{diag}(d)\, z` on vectors.

    Log-det :math:`\sum_i \log|d_i|`, one value per vector (event rank 1).

    Args:
        scale_diag: the diagonal :math:`d`, shape ``(*, D)``.

    Example:
        >>> import torch, nfkit.bijectors as nfb
        >>> nfb.ScaleMatvecDiag([1.0, 0.5]).forward_and_log_det(torch.ones(2))
        (tensor([1.0000, 0.5000]), tensor(-0.6931))

    """

    forward_min_event_ndims = 1
    is_constant_jacobian = True

    def __init__(self, scale_diag: ArrayLike) -> None:
        super().__init__()
        self.scale_diag = register_tensor(self, "scale_diag", scale_diag)
        if self.scale_diag.ndim < 1:
            raise ValueError("scale_diag must have at least one dim (the event dim)")

    def _forward_and_log_det(self, z: Tensor, context: Context) -> Pair:
        return z * self.scale_diag, self.scale_diag.abs().log().sum(-1)

    def _inverse_and_log_det(self, x: Tensor, context: Context) -> Pair:
        return x / self.scale_diag, -self.scale_diag.abs().log().sum(-1)

    def extra_repr(self) -> str:
        return f"shape={list(self.scale_diag.shape)}"


class ScaleMatvecTriL(Bijector):
    r"""Lower-triangular matrix-vector product :math:`x = L z`.

    The Jacobian is :math:`L` itself, so :math:`\log|\det J| = \sum_i \log|L_{ii}|`; the inverse
    solves the triangular system by forward substitution, :math:`O(D^2)`.

    Args:
        scale_tril: :math:`L`, shape ``(*, D, D)``; entries above the diagonal are ignored and
            the diagonal must be non-zero.

    Example:
        >>> import torch, nfkit.bijectors as nfb
        >>> b = nfb.ScaleMatvecTriL([[2.0, 0.0], [1.0, 1.0]])
        >>> b.inverse(b.forward(torch.tensor([1.0, -1.0])))
        tensor([ 1., -1.])

    """

    forward_min_event_ndims = 1
    is_constant_jacobian = True

    def __init__(self, scale_tril: ArrayLike) -> None:
        super().__init__()
        register_tensor(self, "scale_tril", scale_tril)
        if self.scale_tril.ndim < 2 or self.scale_tril.shape[-1] != self.scale_tril.shape[-2]:
            raise ValueError(
                f"scale_tril must be a square matrix (*, D, D), got {tuple(self.scale_tril.shape)}"
            )

    def _tril(self) -> Tensor:
        return torch.tril(self.scale_tril)

    def _log_abs_det(self) -> Tensor:
        return torch.diagonal(self.scale_tril, dim1=-2, dim2=-1).abs().log().sum(-1)

    def _forward_and_log_det(self, z: Tensor, context: Context) -> Pair:
        x = (self._tril() @ z.unsqueeze(-1)).squeeze(-1)
        return x, self._log_abs_det()

    def _inverse_and_log_det(self, x: Tensor, context: Context) -> Pair:
        tril = self._tril()
        batch = torch.broadcast_shapes(tril.shape[:-2], x.shape[:-1])
        rhs = x.unsqueeze(-1).expand(*batch, x.shape[-1], 1)
        lhs = tril.expand(*batch, *tril.shape[-2:])
        z = torch.linalg.solve_triangular(lhs, rhs, upper=False).squeeze(-1)
        return z, -self._log_abs_det()

    def extra_repr(self) -> str:
        return f"shape={list(self.scale_tril.shape)}"
