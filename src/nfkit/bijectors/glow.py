r"""Glow (Kingma & Dhariwal 2018) as one bijector: the multi-scale levels that
:func:`nfkit.flows.glow` stacks, and TFP's ``tfb.Glow``, a map from a flat latent vector to an
image ``(H, W, C)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from nfkit.bijectors.affine import InvertibleConv1x1
from nfkit.bijectors.base import Bijector, Chain, Invert
from nfkit.bijectors.multiscale import FactorOut, FlatImage, GlowCoupling, Squeeze
from nfkit.bijectors.normalization import ActNorm
from nfkit.bijectors.reshape import Reshape, Transpose
from nfkit.nets import ConvNet

__all__ = ["Glow", "glow_level"]


def glow_level(
    channels: int, level: int, levels: int, steps: int, hidden: int, *, actnorm: bool = True
) -> Bijector:
    """One Glow level on images ``(C, H, W)`` (channels first): squeeze, ``steps`` steps of
    ActNorm, invertible 1x1 convolution and affine coupling, the next level on half the
    channels, unsqueeze (listed in the density direction's order: the data is squeezed first).
    """
    channels *= 4
    parts: list[Bijector] = [Invert(Squeeze())]
    for _ in range(steps):
        if actnorm:
            parts.append(ActNorm(channels, forward_min_event_ndims=3))
        # the coupling network built now (not on first use), so the level's own arguments
        # rebuild it whole from a model file
        kept = channels // 2
        net = ConvNet(hidden, in_features=kept, units=channels - kept)
        parts += [InvertibleConv1x1(channels), GlowCoupling(net, hidden_channels=hidden)]
    if level + 1 < levels:
        step = glow_level(channels // 2, level + 1, levels, steps, hidden, actnorm=actnorm)
        parts.append(FactorOut(step))
    parts.append(Squeeze())
    return Chain(parts)


def _refuse(name: str, value: Any, why: str) -> None:
    if value is not None:
        raise NotImplementedError(f"Glow({name}=...) is not supported in nfkit: {why}")


class Glow(Chain):
    r"""TFP's ``tfb.Glow``: a bijector from a flat latent vector of :math:`HWC` numbers to an
    image ``(H, W, C)`` (channels last, as TFP's), with nfkit's Glow levels inside
    (:func:`glow_level`: squeeze, steps of ActNorm, invertible 1x1 convolution and affine
    coupling with a convolutional network, half the channels factored out after each block).

    ``z_shape = glow.inverse_event_shape(output_shape)`` gives the latent's shape, and
    ``glow(tfd.Sample(tfd.Normal(0., 1.), z_shape))`` the distribution over images.

    Args:
        output_shape: ``(H, W, C)``; H and W divisible by :math:`2^{blocks}`.
        num_glow_blocks: the levels.
        num_steps_per_block: Glow steps per level.
        coupling_bijector_fn: only ``None``: nfkit's coupling network (``hidden_channels``
            wide) stands for TFP's ``GlowDefaultNetwork``.
        exit_bijector_fn: only ``None``: the factored-out channels go to the base as they are
            (TFP's ``GlowDefaultExitNetwork`` transforms them first).
        grab_after_block: only ``None`` or halves (``0.5`` after every block but the last).
        use_actnorm: ActNorm in every step (initialized from the first batch: call
            ``nfkit.bijectors.data_init`` or train with ``nfkit.fit``).
        seed: accepted (torch's global generator draws the weights).
        hidden_channels: the coupling networks' width (TFP's ``num_hidden`` = 400).

    Example:
        >>> import torch, nfkit.bijectors as tfb, nfkit.distributions as tfd
        >>> glow = tfb.Glow(output_shape=(8, 8, 3), num_glow_blocks=2, num_steps_per_block=1,
        ...                 hidden_channels=8)
        >>> z_shape = glow.inverse_event_shape((8, 8, 3))
        >>> px = glow(tfd.Sample(tfd.Normal(0.0, 1.0), z_shape))
        >>> list(z_shape), px.sample(2).shape
        ([192], torch.Size([2, 8, 8, 3]))

    """

    def __init__(
        self,
        output_shape: Sequence[int] = (32, 32, 3),
        num_glow_blocks: int = 3,
        num_steps_per_block: int = 32,
        coupling_bijector_fn: Callable[..., Any] | None = None,
        exit_bijector_fn: Callable[..., Any] | None = None,
        grab_after_block: Sequence[float] | None = None,
        use_actnorm: bool = True,
        seed: int | None = None,
        *,
        hidden_channels: int = 400,
    ) -> None:
        _refuse("coupling_bijector_fn", coupling_bijector_fn, "its coupling network is nfkit's")
        _refuse("exit_bijector_fn", exit_bijector_fn, "exiting channels go to the base as is")
        if grab_after_block is not None and any(g != 0.5 for g in grab_after_block):
            raise NotImplementedError("Glow(grab_after_block=) supports halves (0.5) only")
        height, width, channels = (int(n) for n in output_shape)
        if height % 2**num_glow_blocks or width % 2**num_glow_blocks:
            raise ValueError(
                f"Glow with {num_glow_blocks} blocks needs H and W divisible by "
                f"{2**num_glow_blocks}, got output_shape {list(output_shape)}"
            )
        chw = (channels, height, width)
        level = glow_level(
            channels, 0, num_glow_blocks, num_steps_per_block, hidden_channels, actnorm=use_actnorm
        )
        super().__init__(
            [
                Transpose(perm=[1, 2, 0]),  # (C, H, W) to TFP's (H, W, C)
                Reshape(list(chw), [math.prod(chw)]),
                FlatImage(level, chw),
            ]
        )
