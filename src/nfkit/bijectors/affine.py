r"""Affine bijectors: Shift, Scale, ScaleMatvecDiag, ScaleMatvecTriL, ScaleMatvecLU and its
image form, the invertible 1x1 convolution.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from nfkit._tensors import ArrayLike, broadcast_shapes, register_tensor
from nfkit.bijectors.base import Bijector, Context, Pair, parameter_batch_shape

__all__ = [
    "InvertibleConv1x1",
    "Scale",
    "ScaleMatvecDiag",
    "ScaleMatvecLU",
    "ScaleMatvecTriL",
    "Shift",
]


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

    def _parameter_batch_shape(self, event_ndims: int) -> torch.Size:
        return parameter_batch_shape(self.shift, event_ndims)

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

    def _parameter_batch_shape(self, event_ndims: int) -> torch.Size:
        return parameter_batch_shape(self.param, event_ndims)

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

    def _parameter_batch_shape(self, event_ndims: int) -> torch.Size:
        return parameter_batch_shape(self.scale_diag, event_ndims)

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
        batch = broadcast_shapes(tril.shape[:-2], x.shape[:-1])
        rhs = x.unsqueeze(-1).expand(*batch, x.shape[-1], 1)
        lhs = tril.expand(*batch, *tril.shape[-2:])
        z = torch.linalg.solve_triangular(lhs, rhs, upper=False).squeeze(-1)
        return z, -self._log_abs_det()

    def _parameter_batch_shape(self, event_ndims: int) -> torch.Size:
        return parameter_batch_shape(self.scale_tril, event_ndims, extra=1)

    def extra_repr(self) -> str:
        return f"shape={list(self.scale_tril.shape)}"


class ScaleMatvecLU(Bijector):
    r"""An invertible linear map :math:`x = W z` with :math:`W = P L U` kept in LU form.

    :math:`P` is a fixed permutation, :math:`L` unit lower-triangular and :math:`U` upper
    triangular, both trained, so :math:`\log|\det J| = \sum_i \log|U_{ii}|` costs
    :math:`O(D)` and the inverse is two triangular solves. This is Glow's invertible
    :math:`1\times1` convolution in its LU form, acting on vectors.

    Args:
        lower_upper: ``(D, D)``: :math:`L` below the diagonal (its unit diagonal implied) and
            :math:`U` on and above it, as TFP's ``ScaleMatvecLU``; an ``nn.Parameter`` trains.
        permutation: ``(D,)`` integers :math:`\pi` as ``tf.linalg.lu`` returns them (TFP's
            convention): :math:`W_{\pi_i, :} = (LU)_{i, :}`, so that
            ``ScaleMatvecLU(*tf.linalg.lu(w))`` is :math:`W`. (Model files of format 2 and
            earlier stored the inverse permutation; they are read as they were written.)
        features: alternatively :math:`D`: start from a random rotation (as Glow), trained.

    References:
        Kingma, Dhariwal, "Glow: Generative Flow with Invertible 1x1 Convolutions", NeurIPS
        2018, https://arxiv.org/abs/1807.03039.

    Example:
        >>> import torch, nfkit.bijectors as nfb
        >>> _ = torch.manual_seed(0)
        >>> b = nfb.ScaleMatvecLU(features=3)
        >>> z = torch.randn(2, 3)
        >>> torch.allclose(b.inverse(b.forward(z)), z, atol=1e-6)
        True
        >>> float(b.forward_log_det_jacobian(z)[0].detach().abs()) < 1e-5  # a rotation to start
        True

    """

    forward_min_event_ndims = 1
    is_constant_jacobian = True

    def __init__(
        self,
        lower_upper: ArrayLike | None = None,
        permutation: ArrayLike | None = None,
        *,
        features: int | None = None,
    ) -> None:
        super().__init__()
        if (lower_upper is None) == (features is None):
            raise ValueError("ScaleMatvecLU takes lower_upper (and permutation) or features")
        if features is not None:
            q = torch.linalg.qr(torch.randn(features, features, dtype=torch.float64))[0]
            p, lower, upper = torch.linalg.lu(q)  # q = p @ lower @ upper
            lower_upper = torch.nn.Parameter((lower.tril(-1) + upper).to(torch.get_default_dtype()))
            permutation = p.argmax(0)  # q[permutation] = lower @ upper
        register_tensor(self, "lower_upper", lower_upper)
        size = self.lower_upper.shape[-1]
        if self.lower_upper.shape != (size, size):
            raise ValueError(f"lower_upper must be (D, D), got {tuple(self.lower_upper.shape)}")
        perm = torch.arange(size) if permutation is None else torch.as_tensor(permutation)
        if sorted(perm.tolist()) != list(range(size)):
            raise ValueError(f"permutation must reorder 0..{size - 1}, got {perm.tolist()}")
        self.register_buffer("permutation", perm.long())
        self.register_buffer("inverse_permutation", torch.argsort(perm), persistent=False)

    def _parts(self) -> tuple[Tensor, Tensor]:
        lower = self.lower_upper.tril(-1) + torch.eye(
            self.lower_upper.shape[-1], dtype=self.lower_upper.dtype, device=self.lower_upper.device
        )
        return lower, self.lower_upper.triu()

    def _log_abs_det(self) -> Tensor:
        return self.lower_upper.diagonal().abs().log().sum()

    def _matvec(self, z: Tensor) -> Tensor:
        """``z`` of shape (*, D) to :math:`W z`, the rows of :math:`L U z` put back in order."""
        lower, upper = self._parts()
        return (z @ upper.T @ lower.T)[..., self.inverse_permutation]

    def _solve(self, x: Tensor) -> Tensor:
        r"""``x`` of shape (*, D) to :math:`U^{-1} L^{-1} x_\pi`."""
        lower, upper = self._parts()
        y = x[..., self.permutation].unsqueeze(-1)
        y = torch.linalg.solve_triangular(lower, y, upper=False, unitriangular=True)
        return torch.linalg.solve_triangular(upper, y, upper=True).squeeze(-1)

    def _forward_and_log_det(self, z: Tensor, context: Context) -> Pair:
        return self._matvec(z), self._log_abs_det()

    def _inverse_and_log_det(self, x: Tensor, context: Context) -> Pair:
        return self._solve(x), -self._log_abs_det()

    def get_config(self) -> dict[str, Any]:
        # Rebuilt from the trained matrix, not from a new random draw.
        return {"lower_upper": self.lower_upper, "permutation": self.permutation}

    def extra_repr(self) -> str:
        return f"features={self.lower_upper.shape[-1]}"


class InvertibleConv1x1(ScaleMatvecLU):
    r"""Glow's invertible :math:`1\times1` convolution on images ``(*, C, H, W)``: the same
    :math:`W = PLU` mixes the channels at every pixel, so
    :math:`\log|\det J| = H W \sum_i \log|U_{ii}|`.

    Args:
        channels: :math:`C` (a random rotation to start), or ``lower_upper`` and
            ``permutation`` as :class:`ScaleMatvecLU`.

    References:
        Kingma, Dhariwal, "Glow", 2018, https://arxiv.org/abs/1807.03039.

    Example:
        >>> import torch, nfkit.bijectors as nfb
        >>> b = nfb.InvertibleConv1x1(4)
        >>> b.forward(torch.randn(2, 4, 3, 3)).shape
        torch.Size([2, 4, 3, 3])

    """

    forward_min_event_ndims = 3

    def __init__(
        self,
        channels: int | None = None,
        *,
        lower_upper: ArrayLike | None = None,
        permutation: ArrayLike | None = None,
    ) -> None:
        super().__init__(lower_upper, permutation, features=channels)

    def _forward_and_log_det(self, z: Tensor, context: Context) -> Pair:
        x = self._matvec(z.movedim(-3, -1)).movedim(-1, -3)
        return x, self._log_abs_det() * z.shape[-1] * z.shape[-2]

    def _inverse_and_log_det(self, x: Tensor, context: Context) -> Pair:
        z = self._solve(x.movedim(-3, -1)).movedim(-1, -3)
        return z, -self._log_abs_det() * x.shape[-1] * x.shape[-2]
