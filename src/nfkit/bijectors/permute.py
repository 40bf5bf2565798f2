r"""Permutations of the event dims: Permute and Reverse (volume preserving, log-det 0)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from nfkit.bijectors.base import Bijector, Context, Pair

__all__ = ["Permute", "Reverse"]


class Permute(Bijector):
    r"""Reorder the last dim: :math:`x_i = z_{\pi(i)}`, i.e. ``x = z[..., permutation]``.

    Autoregressive and coupling layers have triangular Jacobians, so some outputs depend on few
    inputs; a permutation between layers lets every dim influence every other (chapter 7.2.1).
    The Jacobian is a permutation matrix, so the log-det is 0.

    Args:
        permutation: a permutation of ``range(D)``.

    Example:
        >>> import torch, nfkit.bijectors as nfb
        >>> nfb.Permute([1, 2, 0]).forward(torch.tensor([-1.0, 0.0, 1.0]))
        tensor([ 0.,  1., -1.])

    """

    forward_min_event_ndims = 1
    is_constant_jacobian = True

    def __init__(self, permutation: Sequence[int] | Tensor) -> None:
        super().__init__()
        perm = torch.as_tensor(permutation, dtype=torch.long)
        if perm.ndim != 1 or not torch.equal(perm.sort().values, torch.arange(perm.numel())):
            raise ValueError(
                f"permutation must hold each of 0..{perm.numel() - 1} once, got {perm.tolist()}"
            )
        self.register_buffer("permutation", perm)
        self.register_buffer("inverse_permutation", torch.argsort(perm))

    def _check(self, value: Tensor) -> None:
        if value.shape[-1] != self.permutation.numel():
            raise ValueError(
                f"Permute of {self.permutation.numel()} dims got trailing shape "
                f"({value.shape[-1]},): the flow was built for {self.permutation.numel()} features"
            )

    def _forward_and_log_det(self, z: Tensor, context: Context) -> Pair:
        self._check(z)
        return z[..., self.permutation], z.new_zeros(())

    def _inverse_and_log_det(self, x: Tensor, context: Context) -> Pair:
        self._check(x)
        return x[..., self.inverse_permutation], x.new_zeros(())

    def extra_repr(self) -> str:
        return f"{self.permutation.tolist()}"


class Reverse(Bijector):
    r"""Reverse the order of the last dim, :math:`x_i = z_{D-1-i}`, for any :math:`D`.

    Example:
        >>> import torch, nfkit.bijectors as nfb
        >>> nfb.Reverse().forward(torch.tensor([1.0, 2.0, 3.0]))
        tensor([3., 2., 1.])

    """

    forward_min_event_ndims = 1
    is_constant_jacobian = True

    def _forward_and_log_det(self, z: Tensor, context: Context) -> Pair:
        return z.flip(-1), z.new_zeros(())

    def _inverse_and_log_det(self, x: Tensor, context: Context) -> Pair:
        return x.flip(-1), x.new_zeros(())
