r"""Image flows: ``Squeeze`` (space to depth), ``FactorOut`` (the multi-scale architecture of
RealNVP) and ``GlowCoupling`` (affine coupling over channels with a convolutional network).

Images are channels first, ``(*, C, H, W)``, and every layer here has event rank 3.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nfkit.bijectors.autoregressive import Scale, affine_transform, check_scale
from nfkit.bijectors.base import Bijector, Context, Pair
from nfkit.bijectors.conditioned import _BASES, ConditionedBijector
from nfkit.nets import ConvNet

__all__ = ["FactorOut", "FlatImage", "GlowCoupling", "Squeeze"]


class Squeeze(Bijector):
    r"""Space to depth: ``(*, C, H, W)`` to ``(*, 4C, H/2, W/2)`` in the forward direction,
    each 2x2 block of pixels becoming 4 channels (Dinh et al. 2017). A permutation: log-det 0.

    Example:
        >>> import torch, nfkit.bijectors as nfb
        >>> x = torch.arange(16.0).reshape(1, 4, 4)
        >>> nfb.Squeeze().forward(x).shape
        torch.Size([4, 2, 2])
        >>> torch.equal(nfb.Squeeze().inverse(nfb.Squeeze().forward(x)), x)
        True

    """

    forward_min_event_ndims = 3
    is_constant_jacobian = True

    def _forward_and_log_det(self, z: Tensor, context: Context) -> Pair:
        *batch, c, h, w = z.shape
        if h % 2 or w % 2:
            raise ValueError(f"Squeeze needs even height and width, got {h}x{w}")
        n = len(batch)
        x = z.reshape(*batch, c, h // 2, 2, w // 2, 2)  # (c, h', i, w', j)
        x = x.permute(*range(n), n, n + 2, n + 4, n + 1, n + 3)  # (c, i, j, h', w')
        return x.reshape(*batch, 4 * c, h // 2, w // 2), z.new_zeros(())

    def _forward_event_shape(self, input_shape: torch.Size) -> torch.Size:
        *batch, c, h, w = input_shape
        return torch.Size([*batch, 4 * c, h // 2, w // 2])

    def _inverse_event_shape(self, output_shape: torch.Size) -> torch.Size:
        *batch, c4, h, w = output_shape
        return torch.Size([*batch, c4 // 4, 2 * h, 2 * w])

    def _inverse_and_log_det(self, x: Tensor, context: Context) -> Pair:
        *batch, c4, h, w = x.shape
        if c4 % 4:
            raise ValueError(f"Squeeze's inverse needs channels divisible by 4, got {c4}")
        n = len(batch)
        z = x.reshape(*batch, c4 // 4, 2, 2, h, w)  # (c, i, j, h', w')
        z = z.permute(*range(n), n, n + 3, n + 1, n + 4, n + 2)  # (c, h', i, w', j)
        return z.reshape(*batch, c4 // 4, 2 * h, 2 * w), x.new_zeros(())


class FactorOut(Bijector):
    r"""Apply ``bijector`` to the first channels of an image and pass the rest through: the
    factored-out channels go straight to the base distribution, as in RealNVP's multi-scale
    architecture, so the deeper levels work on a quarter of the pixels (after a
    :class:`Squeeze`) and half of the channels.

    Args:
        bijector: the flow for the kept channels (event rank 3).
        keep: how many leading channels it gets; default half of them.

    References:
        Dinh, Sohl-Dickstein, Bengio, "Density estimation using Real NVP", ICLR 2017,
        https://arxiv.org/abs/1605.08803.

    """

    forward_min_event_ndims = 3

    def __init__(self, bijector: Bijector, keep: int | None = None) -> None:
        super().__init__()
        self.bijector, self.keep = bijector, keep

    def _run(self, value: Tensor, context: Context, inverse: bool) -> Pair:
        keep = value.shape[-3] // 2 if self.keep is None else self.keep
        if not 0 < keep < value.shape[-3]:
            raise ValueError(f"FactorOut keeps {keep} of {value.shape[-3]} channels")
        head, tail = value[..., :keep, :, :], value[..., keep:, :, :]
        method = self.bijector.inverse_and_log_det if inverse else self.bijector.forward_and_log_det
        head, log_det = method(head, event_ndims=3, context=context)
        return torch.cat([head, tail], dim=-3), log_det

    def _forward_and_log_det(self, z: Tensor, context: Context) -> Pair:
        return self._run(z, context, inverse=False)

    def _inverse_and_log_det(self, x: Tensor, context: Context) -> Pair:
        return self._run(x, context, inverse=True)


class ChannelCoupling(ConditionedBijector):
    r"""Base of affine couplings over the channels of images or sequences: one half of the
    channels passes through and a conditioner of it gives a shift and scale for every element
    of the other half,

    .. math:: z_b = s(x_a) \odot x_b + t(x_a), \qquad \log|\det J_{f^{-1}}| = \sum \log s,

    with the softplus scale of :class:`MaskedAutoregressiveFlow` by default (``scale="exp"``
    for :math:`s = e^{\cdot}`). Channels are the first event dim; the conditioner is called
    ``conditioner(x_a, C_b[, context=])`` and returns ``(*, C_b, 2, *rest)`` (see
    :class:`nfkit.nets.Conditioner`). Not a layer by itself: :class:`GlowCoupling` (images)
    and :class:`~nfkit.bijectors.WaveNetCoupling` (sequences) set the event rank.
    """

    params = (2,)

    def __init__(self, conditioner: nn.Module, scale: Scale, swap: bool) -> None:
        super().__init__(conditioner)
        check_scale(scale, None)
        self.scale, self.swap = scale, swap

    def _couple(self, value: Tensor, context: Context, inverse: bool) -> Pair:
        nd = self.forward_min_event_ndims
        channels = value.shape[-nd]
        if channels < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 2 channels; squeeze the input first"
            )
        first, second = value.split([channels // 2, channels - channels // 2], dim=-nd)
        kept, part = (second, first) if self.swap else (first, second)
        params = self._condition(kept, part.shape[-nd], context, rest=part.shape[1 - nd :])
        shift = params.select(-nd, 0).flatten(-nd)
        raw = params.select(-nd, 1).flatten(-nd)
        out, log_det = affine_transform(part.flatten(-nd), (shift, raw), self.scale, None, inverse)
        out = out.unflatten(-1, part.shape[-nd:])
        return torch.cat([out, kept] if self.swap else [kept, out], dim=-nd), log_det

    def _forward_and_log_det(self, z: Tensor, context: Context) -> Pair:
        return self._couple(z, context, inverse=False)

    def _inverse_and_log_det(self, x: Tensor, context: Context) -> Pair:
        return self._couple(x, context, inverse=True)


_BASES.add(ChannelCoupling)


class GlowCoupling(ChannelCoupling):
    r"""Glow's affine coupling over the channels of images ``(*, C, H, W)``: the first half of
    the channels gives, through a convolutional network, a shift and scale for every pixel of
    the other half (see :class:`ChannelCoupling`). The network's last layer starts at zero.

    Args:
        conditioner: a conditioner from ``(*, C_a, H, W)`` and ``units = C_b`` to
            ``(*, C_b, 2, H, W)``; defaults to a :class:`~nfkit.nets.ConvNet` with
            ``hidden_channels``.
        hidden_channels: width of the default network.
        scale: ``"softplus"`` or ``"exp"``.
        swap: keep the second half of the channels instead of the first.

    References:
        Kingma, Dhariwal, "Glow", 2018, https://arxiv.org/abs/1807.03039.

    """

    forward_min_event_ndims = 3

    def __init__(
        self,
        conditioner: nn.Module | None = None,
        *,
        hidden_channels: int = 64,
        scale: Scale = "softplus",
        swap: bool = False,
    ) -> None:
        super().__init__(conditioner or ConvNet(hidden_channels), scale, swap)
        self.hidden_channels = hidden_channels


class FlatImage(Bijector):
    r"""An image (or sequence) bijector seen as a bijector on flat rows: ``(*, C*H*W)`` is
    reshaped to ``(*, C, H, W)``, transformed, and flattened back (a reshape has log-det 0), so
    that tables of pixels — the command line, the scikit-learn estimator — can use image flows.

    Args:
        bijector: a bijector on images (event rank 3) or sequences (rank 2) that keeps their
            shape (a lone :class:`Squeeze` does not; a Glow level, squeezed and unsqueezed,
            does).
        image_shape: ``(C, H, W)``, or ``(C, T)`` for sequences.

    Example:
        >>> import torch, nfkit.bijectors as nfb
        >>> b = nfb.FlatImage(nfb.ActNorm(1, forward_min_event_ndims=3), (1, 2, 2))
        >>> b.forward(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
        tensor([[1., 2., 3., 4.]], grad_fn=<ViewBackward0>)

    """

    forward_min_event_ndims = 1

    def __init__(self, bijector: Bijector, image_shape: Sequence[int]) -> None:
        super().__init__()
        if len(image_shape) not in (2, 3):
            raise ValueError(f"image_shape must be (C, H, W) or (C, T), got {tuple(image_shape)}")
        self.bijector, self.image_shape = bijector, [int(n) for n in image_shape]

    def _run(self, value: Tensor, context: Context, method: str) -> Pair:
        size = math.prod(self.image_shape)
        if value.shape[-1] != size:
            raise ValueError(
                f"expected rows of {size} pixels (image {self.image_shape}), got {value.shape[-1]}"
            )
        nd = len(self.image_shape)
        image = value.unflatten(-1, self.image_shape)
        out, log_det = getattr(self.bijector, method)(image, event_ndims=nd, context=context)
        if list(out.shape[-nd:]) != self.image_shape:
            raise ValueError(
                f"FlatImage needs a bijector that keeps the shape {self.image_shape}; "
                f"{type(self.bijector).__name__} returned {list(out.shape[-nd:])}"
            )
        return out.flatten(-nd), log_det

    def _forward_and_log_det(self, z: Tensor, context: Context) -> Pair:
        return self._run(z, context, "forward_and_log_det")

    def _inverse_and_log_det(self, x: Tensor, context: Context) -> Pair:
        return self._run(x, context, "inverse_and_log_det")
