r"""Flows for sequences ``(*, C, T)`` (channels first): ``SqueezeTime`` and the WaveNet affine
coupling of FloWaveNet (Kim et al. 2019).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nfkit.bijectors.autoregressive import Scale
from nfkit.bijectors.base import Bijector, Context, Pair
from nfkit.bijectors.multiscale import ChannelCoupling
from nfkit.nets import WaveNet

__all__ = ["SqueezeTime", "WaveNetCoupling"]


class SqueezeTime(Bijector):
    r"""Fold pairs of time steps into channels: ``(*, C, T)`` to ``(*, 2C, T/2)`` in the forward
    direction, channel :math:`2c + i` at step :math:`t` holding :math:`x_{c, 2t + i}`. A
    permutation: log-det 0.

    Example:
        >>> import torch, nfkit.bijectors as nfb
        >>> nfb.SqueezeTime().forward(torch.arange(4.0).reshape(1, 4))
        tensor([[0., 2.],
                [1., 3.]])

    """

    forward_min_event_ndims = 2
    is_constant_jacobian = True

    def _forward_and_log_det(self, z: Tensor, context: Context) -> Pair:
        *batch, c, t = z.shape
        if t % 2:
            raise ValueError(f"SqueezeTime needs an even number of time steps, got {t}")
        x = z.reshape(*batch, c, t // 2, 2).transpose(-1, -2)  # (c, i, t')
        return x.reshape(*batch, 2 * c, t // 2), z.new_zeros(())

    def _forward_event_shape(self, input_shape: torch.Size) -> torch.Size:
        *batch, c, t = input_shape
        return torch.Size([*batch, 2 * c, t // 2])

    def _inverse_event_shape(self, output_shape: torch.Size) -> torch.Size:
        *batch, c2, t = output_shape
        return torch.Size([*batch, c2 // 2, 2 * t])

    def _inverse_and_log_det(self, x: Tensor, context: Context) -> Pair:
        *batch, c2, t = x.shape
        if c2 % 2:
            raise ValueError(f"SqueezeTime's inverse needs an even number of channels, got {c2}")
        z = x.reshape(*batch, c2 // 2, 2, t).transpose(-1, -2)  # (c, t', i)
        return z.reshape(*batch, c2 // 2, 2 * t), x.new_zeros(())


class WaveNetCoupling(ChannelCoupling):
    r"""FloWaveNet's affine coupling over the channels of a sequence ``(*, C, T)``: one half of
    the channels gives, through a WaveNet of dilated causal convolutions, a shift and scale
    for every step of the other half (see :class:`ChannelCoupling`).

    Args:
        conditioner: a conditioner from ``(*, C_a, T)`` and ``units = C_b`` to
            ``(*, C_b, 2, T)``; defaults to a :class:`~nfkit.nets.WaveNet`.
        hidden_channels: width of the default WaveNet.
        layers: residual blocks of the default WaveNet.
        scale: ``"softplus"`` or ``"exp"``.
        swap: keep the second half of the channels instead of the first (alternate it between
            layers, as FloWaveNet changes the order).

    References:
        Kim, Lee, Song, Kim, Yoon, "FloWaveNet: A Generative Flow for Raw Audio", ICML 2019,
        https://arxiv.org/abs/1811.02155.

    """

    forward_min_event_ndims = 2

    def __init__(
        self,
        conditioner: nn.Module | None = None,
        *,
        hidden_channels: int = 32,
        layers: int = 4,
        scale: Scale = "softplus",
        swap: bool = False,
    ) -> None:
        super().__init__(conditioner or WaveNet(hidden_channels, layers=layers), scale, swap)
        self.hidden_channels, self.layers = hidden_channels, layers
