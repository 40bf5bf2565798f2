r"""The gamma distribution (TFP's ``tfd.Gamma``): positive scalars, a prior for scales and
rates.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from nfkit._tensors import ArrayLike, broadcast_shapes, register_tensor
from nfkit.distributions.base import Distribution

__all__ = ["Gamma"]


class Gamma(Distribution):
    r"""Gamma with shape :math:`\alpha` and rate :math:`\beta` on :math:`x > 0`:

    .. math:: \log p(x) = \alpha\log\beta + (\alpha - 1)\log x - \beta x - \log\Gamma(\alpha)

    (:math:`-\infty` for :math:`x \le 0`). Samples are reparametrized (torch's implicit
    gradients, Figurnov et al. 2018).

    Args:
        concentration: :math:`\alpha > 0`.
        rate: :math:`\beta > 0` (or ``log_rate``, TFP's alternative).
        log_rate: :math:`\log\beta`.

    Example:
        >>> import torch, nfkit.distributions as nfd
        >>> g = nfd.Gamma(concentration=[1.0, 2.0], rate=2.0)
        >>> g.mean().tolist(), g.mode().tolist(), round(float(g.log_prob(torch.ones(2))[0]), 4)
        ([0.5, 1.0], [nan, 0.5], -1.3069)

    """

    def __init__(
        self,
        concentration: ArrayLike,
        rate: ArrayLike | None = None,
        log_rate: ArrayLike | None = None,
    ) -> None:
        super().__init__()
        if (rate is None) == (log_rate is None):
            raise ValueError("Gamma takes exactly one of rate= and log_rate=")
        register_tensor(self, "concentration", concentration)
        register_tensor(
            self, "rate" if log_rate is None else "log_rate", rate if log_rate is None else log_rate
        )
        if bool((self.concentration <= 0).any()) or bool((self.rate_parameter() <= 0).any()):
            raise ValueError("Gamma needs concentration > 0 and rate > 0")
        self._batch_shape = broadcast_shapes(self.concentration.shape, self.rate_parameter().shape)

    def rate_parameter(self) -> Tensor:
        r""":math:`\beta`."""
        return self.log_rate.exp() if hasattr(self, "log_rate") else self.rate

    def _rsample(self, shape: torch.Size, context: Tensor | None) -> Tensor:
        draws = torch._standard_gamma(self.concentration.expand(shape))
        tiny = torch.finfo(draws.dtype).tiny  # a draw that underflowed to 0 is off the support
        return draws.clamp(min=tiny) / self.rate_parameter()

    def _log_prob(self, value: Tensor, context: Tensor | None) -> Tensor:
        alpha, beta = self.concentration, self.rate_parameter()
        positive = value > 0
        x = torch.where(positive, value, 1.0)
        log_p = alpha * beta.log() + (alpha - 1) * x.log() - beta * x - torch.lgamma(alpha)
        return torch.where(positive, log_p, -math.inf)

    def mean(self) -> Tensor:
        return (self.concentration / self.rate_parameter()).expand(self.batch_shape)

    def variance(self) -> Tensor:
        return (self.concentration / self.rate_parameter() ** 2).expand(self.batch_shape)

    def mode(self) -> Tensor:
        r""":math:`(\alpha - 1)/\beta`; NaN where :math:`\alpha \le 1`, as TFP's (at 1 the
        density peaks on the boundary).
        """
        alpha = self.concentration
        mode = (alpha - 1) / self.rate_parameter()
        return torch.where(alpha > 1, mode, math.nan).expand(self.batch_shape)

    def entropy(self) -> Tensor:
        alpha = self.concentration
        value = (
            alpha
            - self.rate_parameter().log()
            + torch.lgamma(alpha)
            + (1 - alpha) * torch.digamma(alpha)
        )
        return value.expand(self.batch_shape)
