r"""``TransformedDistribution``: a base distribution pushed through a bijector (a flow)."""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from nfkit._tensors import broadcast_shapes
from nfkit.bijectors.base import Bijector
from nfkit.distributions.base import (
    BijectorKwargs,
    Distribution,
    PushedForward,
)
from nfkit.distributions.torch_compat import TorchDistribution

__all__ = ["TransformedDistribution"]


class TransformedDistribution(PushedForward):
    r"""The distribution of :math:`x = f(z)`, :math:`z \sim p_Z`, for a bijector :math:`f`.

    Sampling runs the bijector's ``forward`` (base → data); densities run its ``inverse``
    (data → base) and the change of variables (chapter eq. 7.1):

    .. math:: \log p_X(x) = \log p_Z\!\left(f^{-1}(x)\right)
              + \log\left|\det J_{f^{-1}}(x)\right|.

    ``sample_and_log_prob`` uses the forward direction only,
    :math:`\log p_X(x) = \log p_Z(z) - \log|\det J_f(z)|`, which is the cheap path for flows
    whose inverse is slow (IAF).

    Args:
        distribution: the base :math:`p_Z`: an nfkit distribution or any
            ``torch.distributions.Distribution``.
        bijector: :math:`f`. Its event rank must not exceed the base's.

    Example:
        >>> import torch, nfkit.distributions as nfd, nfkit.bijectors as nfb
        >>> zdist = nfd.MultivariateNormalDiag(loc=[0.0] * 2)
        >>> td = nfd.TransformedDistribution(zdist, bijector=nfb.Shift([0.5, 0.25]))
        >>> td
        <nfkit.distributions.TransformedDistribution 'TransformedDistribution'
        batch_shape=[] event_shape=[2] dtype=float32>
        >>> td.sample(10000).shape
        torch.Size([10000, 2])

    """

    def __init__(
        self, distribution: Distribution | torch.distributions.Distribution, bijector: Bijector
    ) -> None:
        super().__init__()
        if isinstance(distribution, torch.distributions.Distribution):
            distribution = TorchDistribution(distribution)
        if not isinstance(bijector, Bijector):
            raise TypeError(f"bijector must be an nfkit Bijector, got {type(bijector).__name__}")
        self.distribution = distribution
        self.bijector = bijector
        self._base_ndims = len(distribution.event_shape)
        if bijector.forward_min_event_ndims > self._base_ndims:
            name = type(distribution).__name__
            raise ValueError(
                f"{type(bijector).__name__} acts on vectors (event rank "
                f"{bijector.forward_min_event_ndims}) but {name} has event shape "
                f"{list(distribution.event_shape)}; use MultivariateNormalDiag(loc=[0.0] * D) or "
                f"Independent({name}(...), 1) as the base"
            )
        # A batch of bijectors (Shift([-1., 0., 1.]) on a scalar) makes a batch of
        # distributions; a bijector that reshapes events (Reshape, Squeeze) gives the data
        # its own event shape.
        self._batch_shape = broadcast_shapes(
            distribution.batch_shape, bijector.experimental_batch_shape(self._base_ndims)
        )
        lead = len(self._batch_shape) - len(distribution.batch_shape)
        if self._batch_shape[lead:] != distribution.batch_shape:
            raise ValueError(
                f"the base's batch shape {list(distribution.batch_shape)} and the bijector's "
                f"{list(bijector.batch_shape)} broadcast to {list(self._batch_shape)}; give the "
                "base that batch shape (nfkit draws the base at the batch's trailing dims)"
            )
        self._extra_batch = self._batch_shape[:lead]  # drawn as sample dims of the base
        self._event_shape = bijector.forward_event_shape(distribution.event_shape)
        self._event_ndims = len(self._event_shape)

    def _rsample(self, shape: torch.Size, context: Tensor | None) -> Tensor:
        z = self.distribution._rsample(shape, context)  # all the noise at once: same draws
        forward = functools.partial(self.bijector.forward, context=context)
        return self.in_chunks(forward, z, context)

    def _log_prob(self, value: Tensor, context: Tensor | None) -> Tensor:
        z, log_det = self.bijector.inverse_and_log_det(
            value, event_ndims=self._event_ndims, context=context
        )
        return self.distribution._log_prob(z, context) + log_det

    def sample_and_log_prob(
        self,
        sample_shape: int | tuple[int, ...] | torch.Size = (),
        *,
        context: Tensor | None = None,
        bijector_kwargs: BijectorKwargs = None,
    ) -> tuple[Tensor, Tensor]:
        """Reparametrized samples and their log-density, using only the forward direction."""
        sample_shape, context = self._sampling_context(sample_shape, context, bijector_kwargs)
        if self._extra_batch and context is None:
            sample_shape = sample_shape + self._extra_batch
        z, base_log_prob = self.distribution.sample_and_log_prob(sample_shape, context=context)
        x, log_det = self.bijector.forward_and_log_det(
            z, event_ndims=self._base_ndims, context=context
        )
        return x, base_log_prob - log_det
