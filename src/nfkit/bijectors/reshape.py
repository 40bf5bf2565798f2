r"""``Reshape``: a bijector that changes the event shape (and rank) without moving a number."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from nfkit.bijectors.base import Bijector, Context, Pair

__all__ = ["Reshape", "Transpose"]


def _resolve(shape: Sequence[int], size: int, what: str) -> list[int]:
    """``shape`` with its one ``-1`` (if any) filled in so that it holds ``size`` numbers."""
    known = math.prod(n for n in shape if n != -1)
    if -1 in shape:
        if known == 0 or size % known:
            raise ValueError(f"cannot reshape {size} numbers into {what} {list(shape)}")
        return [size // known if n == -1 else n for n in shape]
    if known != size:
        raise ValueError(f"cannot reshape {size} numbers into {what} {list(shape)}")
    return list(shape)


class Reshape(Bijector):
    r"""Reshape the trailing event dims: ``(*, *event_shape_in)`` to ``(*, *event_shape_out)``
    in the forward direction, as TFP's ``Reshape``. A relabelling of coordinates, so
    :math:`\log|\det J| = 0`. The event rank can change (``[6]`` to ``[2, 3]``): in a
    :class:`Chain` or a :class:`~nfkit.distributions.TransformedDistribution` the parts before
    and after see their own ranks.

    Args:
        event_shape_out: the event shape after ``forward``; one entry may be ``-1``.
        event_shape_in: the event shape before; one entry may be ``-1`` (default ``[-1]``:
            any vector).

    Example:
        >>> import nfkit.bijectors as nfb
        >>> r = nfb.Reshape(event_shape_out=[1, -1])
        >>> r.forward([3.0, 4.0]).tolist(), r.inverse([[3.0, 4.0]]).tolist()
        ([[3.0, 4.0]], [3.0, 4.0])
        >>> list(r.forward_event_shape([2])), list(r.inverse_event_shape([1, 2]))
        ([1, 2], [2])

    """

    is_constant_jacobian = True

    def __init__(
        self, event_shape_out: Sequence[int], event_shape_in: Sequence[int] = (-1,)
    ) -> None:
        super().__init__()
        self.event_shape_out = [int(n) for n in event_shape_out]
        self.event_shape_in = [int(n) for n in event_shape_in]
        for name, shape in (("event_shape_out", self.event_shape_out), ("event_shape_in",
                            self.event_shape_in)):  # fmt: skip
            if shape.count(-1) > 1 or any(n < -1 for n in shape):
                raise ValueError(f"{name} may hold one -1 and sizes >= 0, got {shape}")
        self.forward_min_event_ndims = len(self.event_shape_in)
        self._inverse_min_event_ndims = len(self.event_shape_out)

    def _reshaped(self, shape: torch.Size, source: list[int], target: list[int]) -> torch.Size:
        nd = len(source)
        if len(shape) < nd:
            raise ValueError(f"Reshape needs events of shape {source}, got {list(shape)}")
        event = list(shape[len(shape) - nd :]) if nd else []
        size = math.prod(event)
        if event != _resolve(source, size, "the event shape"):
            raise ValueError(f"Reshape needs events of shape {source}, got {event}")
        return torch.Size([*shape[: len(shape) - nd], *_resolve(target, size, "event shape")])

    def _forward_event_shape(self, input_shape: torch.Size) -> torch.Size:
        return self._reshaped(input_shape, self.event_shape_in, self.event_shape_out)

    def _inverse_event_shape(self, output_shape: torch.Size) -> torch.Size:
        return self._reshaped(output_shape, self.event_shape_out, self.event_shape_in)

    def _forward_and_log_det(self, z: Tensor, context: Context) -> Pair:
        return z.reshape(self._forward_event_shape(z.shape)), z.new_zeros(())

    def _inverse_and_log_det(self, x: Tensor, context: Context) -> Pair:
        return x.reshape(self._inverse_event_shape(x.shape)), x.new_zeros(())

    def extra_repr(self) -> str:
        return f"event_shape_out={self.event_shape_out}, event_shape_in={self.event_shape_in}"


class Transpose(Bijector):
    r"""Permute the event dims, as TFP's ``Transpose``: event dim ``i`` of the output is dim
    ``perm[i]`` of the input. A relabelling of coordinates, so :math:`\log|\det J| = 0`.

    Args:
        perm: a permutation of ``0..n-1`` over the rightmost ``n`` dims.
        rightmost_transposed_ndims: alternatively ``n``: reverse the rightmost ``n`` dims.

    Example:
        >>> import torch, nfkit.bijectors as nfb
        >>> t = nfb.Transpose(perm=[1, 2, 0])  # channels first to channels last
        >>> t.forward(torch.zeros(5, 3, 4, 6)).shape, list(t.inverse_event_shape([4, 6, 3]))
        (torch.Size([5, 4, 6, 3]), [3, 4, 6])

    """

    is_constant_jacobian = True

    def __init__(
        self, perm: Sequence[int] | None = None, rightmost_transposed_ndims: int | None = None
    ) -> None:
        super().__init__()
        if (perm is None) == (rightmost_transposed_ndims is None):
            raise ValueError("Transpose takes perm= or rightmost_transposed_ndims=")
        if perm is None:
            perm = list(reversed(range(int(rightmost_transposed_ndims))))  # type: ignore[arg-type]
        self.perm = [int(p) for p in perm]
        if sorted(self.perm) != list(range(len(self.perm))):
            raise ValueError(f"perm must reorder 0..{len(self.perm) - 1}, got {self.perm}")
        self.inverse_perm = [self.perm.index(i) for i in range(len(self.perm))]
        self.forward_min_event_ndims = len(self.perm)

    def _moved(self, shape: torch.Size, perm: list[int]) -> torch.Size:
        lead = len(shape) - len(perm)
        return torch.Size([*shape[:lead], *(shape[lead + p] for p in perm)])

    def _forward_event_shape(self, input_shape: torch.Size) -> torch.Size:
        return self._moved(input_shape, self.perm)

    def _inverse_event_shape(self, output_shape: torch.Size) -> torch.Size:
        return self._moved(output_shape, self.inverse_perm)

    def _permuted(self, value: Tensor, perm: list[int]) -> Tensor:
        lead = value.ndim - len(perm)
        return value.permute(*range(lead), *(lead + p for p in perm))

    def _forward_and_log_det(self, z: Tensor, context: Context) -> Pair:
        return self._permuted(z, self.perm), z.new_zeros(())

    def _inverse_and_log_det(self, x: Tensor, context: Context) -> Pair:
        return self._permuted(x, self.inverse_perm), x.new_zeros(())

    def extra_repr(self) -> str:
        return f"perm={self.perm}"
