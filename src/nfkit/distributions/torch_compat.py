r"""Bridges to ``torch.distributions``: use a torch distribution as a base, or hand a flow out."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor
from torch.distributions import constraints

from nfkit.distributions.base import Distribution

__all__ = ["AsTorchDistribution", "TorchDistribution"]


class TorchDistribution(Distribution):
    """Wrap a ``torch.distributions.Distribution`` so it can serve as a flow's base.

    Its tensors are not module buffers (torch distributions are plain objects): build it on the
    device you train on.

    Args:
        distribution: any torch distribution; ``rsample`` is used when it has one.

    """

    def __init__(self, distribution: torch.distributions.Distribution) -> None:
        super().__init__(distribution.batch_shape, distribution.event_shape)
        self.distribution = distribution
        self._probe = distribution.sample()

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the wrapped distribution's samples."""
        return self._probe.dtype

    @property
    def device(self) -> torch.device:
        """Device of the wrapped distribution's samples."""
        return self._probe.device

    def _rsample(self, shape: torch.Size, context: Tensor | None) -> Tensor:
        sample_shape = shape[: len(shape) - len(self.batch_shape)]
        if self.distribution.has_rsample:
            return self.distribution.rsample(sample_shape)
        return self.distribution.sample(sample_shape)

    def _log_prob(self, value: Tensor, context: Tensor | None) -> Tensor:
        return self.distribution.log_prob(value)


class AsTorchDistribution(torch.distributions.Distribution):
    """An nfkit distribution seen as a ``torch.distributions.Distribution``.

    Made by :meth:`Distribution.as_torch`; methods delegate to the flow, so gradients reach its
    parameters.
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, distribution: Distribution) -> None:
        self.flow = distribution
        super().__init__(distribution.batch_shape, distribution.event_shape, validate_args=False)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:  # noqa: B008
        """Reparametrized samples from the flow."""
        return self.flow.rsample(sample_shape)

    def log_prob(self, value: Tensor) -> Tensor:
        """Log-density from the flow."""
        return self.flow.log_prob(value)
