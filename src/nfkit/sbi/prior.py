r"""Priors for simulation-based inference: any nfkit or torch distribution over a vector
:math:`\theta`, and the bijection from :math:`\mathbb{R}^d` onto its support that lets a flow
model a bounded parameter without putting mass outside it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from nfkit.bijectors import Bijector, Chain, Exp, Identity, Scale, Shift, Sigmoid
from nfkit.distributions import Distribution, Independent, Uniform
from nfkit.distributions.torch_compat import TorchDistribution

__all__ = ["as_prior", "support_bijector"]


def as_prior(prior: Any) -> Distribution:
    """``prior`` as an nfkit distribution over vectors ``(d,)``."""
    if isinstance(prior, torch.distributions.Distribution):
        prior = TorchDistribution(prior)
    if not isinstance(prior, Distribution):
        raise TypeError(f"prior must be an nfkit or torch distribution, got {type(prior).__name__}")
    if len(prior.event_shape) != 1 or len(prior.batch_shape) != 0:
        raise ValueError(
            "the prior must be a distribution over vectors, event shape (d,) and no batch shape; "
            f"got event shape {list(prior.event_shape)}, batch shape {list(prior.batch_shape)}: "
            "wrap independent scalars in Independent(..., 1)"
        )
    return prior


def _box(prior: Distribution) -> tuple[Tensor, Tensor] | None:
    """``(low, high)`` of a box-uniform prior, else ``None``."""
    inner = prior.distribution if isinstance(prior, Independent) else prior
    if isinstance(inner, Uniform):
        d = prior.event_shape[0]
        return inner.low.expand(d), inner.high.expand(d)
    if isinstance(inner, TorchDistribution):
        constraint = inner.distribution.support
        while isinstance(constraint, torch.distributions.constraints.independent):
            constraint = constraint.base_constraint
        if isinstance(constraint, torch.distributions.constraints.interval):
            d = prior.event_shape[0]
            low = torch.as_tensor(constraint.lower_bound, dtype=prior.dtype).expand(d)
            return low, torch.as_tensor(constraint.upper_bound, dtype=prior.dtype).expand(d)
    return None


def support_bijector(prior: Distribution) -> Bijector:
    r"""A bijection from :math:`\mathbb{R}^d` onto the prior's support: for a box
    :math:`[a, b]^d`, :math:`\theta = a + (b - a)\,\sigma(u)`; for a positive support
    :math:`\theta = e^u`; otherwise the identity (the support is all of
    :math:`\mathbb{R}^d`). A flow on :math:`u` pushed through it is a density on the support.

    Example:
        >>> import torch, nfkit.distributions as nfd
        >>> prior = nfd.Independent(nfd.Uniform(torch.full((2,), -1.0), torch.ones(2)), 1)
        >>> support_bijector(prior).forward(torch.tensor([[-30.0, 0.0]]))
        tensor([[-1.,  0.]])

    """
    box = _box(prior)
    if box is not None:
        low, high = box
        return Chain([Shift(low.detach().clone()), Scale((high - low).detach().clone()), Sigmoid()])
    if isinstance(prior, TorchDistribution):
        constraint = prior.distribution.support
        while isinstance(constraint, torch.distributions.constraints.independent):
            constraint = constraint.base_constraint
        if constraint is torch.distributions.constraints.positive:
            return Exp()
        if constraint is not torch.distributions.constraints.real:
            raise ValueError(
                f"a prior with support {constraint} is not handled yet: use a box-uniform, "
                "positive or unbounded prior, or reparametrize"
            )
    return Identity()
