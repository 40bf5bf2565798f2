r"""Finite mixtures of one family: ``MixtureSameFamily`` (TFP's name), e.g. a Gaussian mixture
as the base of a flow for multimodal data.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nfkit._tensors import ArrayLike, broadcast_shapes, register_tensor
from nfkit.distributions.base import Distribution
from nfkit.distributions.discrete import Categorical

__all__ = ["MixtureSameFamily"]


class MixtureSameFamily(Distribution):
    r"""A mixture of :math:`K` components of one family,
    :math:`p(x) = \sum_k \pi_k\, p_k(x)` with :math:`\pi = \operatorname{softmax}(\ell)`.

    ``log_prob`` is :math:`\operatorname{logsumexp}_k(\log\pi_k + \log p_k(x))`. A sample draws
    a component index from :math:`\pi`, then a point from that component; ``rsample`` passes
    gradients to the components' parameters but not to the logits (a discrete choice has no
    reparametrization; train the logits through ``log_prob``).

    Args:
        mixture_distribution: the weights, TFP's way: a :class:`Categorical` (its logits or
            probs; an ``nn.Parameter`` there trains them), or the logits :math:`\ell`
            themselves, shape ``(*, K)``.
        components_distribution: a distribution with batch shape ``(*, K)`` (the last batch dim
            indexes the components), e.g. ``MultivariateNormalDiag(loc=(K, D) tensor)``.
        logits: the logits by name (as nfkit's first versions took them).

    Example:
        >>> import torch, nfkit.distributions as nfd
        >>> _ = torch.manual_seed(0)
        >>> mix = nfd.MixtureSameFamily(
        ...     torch.zeros(2), nfd.MultivariateNormalDiag(loc=[[-3.0, 0.0], [3.0, 0.0]])
        ... )
        >>> mix.event_shape, mix.sample(1000)[:, 0].gt(0).float().mean().round(decimals=1)
        (torch.Size([2]), tensor(0.5000))

        TFP's spelling, a bimodal mixture of two scalar normals:

        >>> gm = nfd.MixtureSameFamily(
        ...     mixture_distribution=nfd.Categorical(probs=[0.3, 0.7]),
        ...     components_distribution=nfd.Normal(loc=[-1.0, 1.0], scale=[0.1, 0.5]),
        ... )
        >>> round(float(gm.mean()), 2), round(float(gm.variance()), 3)
        (0.4, 1.018)

    """

    def __init__(
        self,
        mixture_distribution: Categorical | ArrayLike | None = None,
        components_distribution: Distribution | None = None,
        *,
        logits: ArrayLike | None = None,
    ) -> None:
        super().__init__()
        if (mixture_distribution is None) == (logits is None):
            raise ValueError("MixtureSameFamily takes mixture_distribution= (or logits=)")
        if components_distribution is None:
            raise ValueError("MixtureSameFamily needs components_distribution=")
        if isinstance(mixture_distribution, Categorical):
            self.mixture_distribution = mixture_distribution
        else:  # logits, kept as this module's own tensor (the state name of nfkit <= 0.3)
            register_tensor(self, "logits", logits if logits is not None else mixture_distribution)
        self.components_distribution = components_distribution
        batch, count = components_distribution.batch_shape, self._log_weights().shape
        if not batch or batch[-1] != count[-1]:
            raise ValueError(
                f"the components' last batch dim must count the {count[-1]} components "
                f"(weights of shape {list(count)}), got batch shape {list(batch)}"
            )
        self._batch_shape = broadcast_shapes(batch[:-1], count[:-1])
        self._event_shape = components_distribution.event_shape

    def _log_weights(self) -> Tensor:
        r""":math:`\log\pi`, shape ``(*, K)``."""
        if "mixture_distribution" in self._modules:
            return self.mixture_distribution.logits_parameter()
        return self.logits.log_softmax(-1)

    def _log_prob(self, value: Tensor, context: Tensor | None) -> Tensor:
        event_ndims = len(self.event_shape)
        per_component = self.components_distribution._log_prob(
            value.unsqueeze(value.ndim - event_ndims), context
        )
        return torch.logsumexp(per_component + self._log_weights(), dim=-1)

    def _weighted(self, per_component: Tensor) -> Tensor:
        r""":math:`\sum_k \pi_k v_k` of per-component values ``(*batch, K, *rest)``."""
        weights = self._log_weights().exp()
        rest = per_component.ndim - len(self.batch_shape) - 1
        weights = weights.reshape(*weights.shape, *[1] * rest)
        return (weights * per_component).sum(len(self.batch_shape))

    def mean(self) -> Tensor:
        r""":math:`\sum_k \pi_k \mu_k`."""
        return self._weighted(self.components_distribution.mean())

    def variance(self) -> Tensor:
        r"""The law of total variance, :math:`\sum_k \pi_k(\sigma_k^2 + \mu_k^2) - \mu^2`."""
        components = self.components_distribution
        second = self._weighted(components.variance() + components.mean() ** 2)
        return second - self.mean() ** 2

    def covariance(self) -> Tensor:
        r""":math:`\sum_k \pi_k(\Sigma_k + \mu_k\mu_k^\top) - \mu\mu^\top` (vector events)."""
        if len(self.event_shape) != 1:
            raise ValueError(f"covariance() needs vector events, got {list(self.event_shape)}")
        components = self.components_distribution
        mu_k, mu = components.mean(), self.mean()
        outer = mu_k[..., :, None] * mu_k[..., None, :]
        return self._weighted(components.covariance() + outer) - mu[..., :, None] * mu[..., None, :]

    def _rsample(self, shape: torch.Size, context: Tensor | None) -> Tensor:
        components = self.components_distribution
        draws = components._rsample(
            shape + components.batch_shape[len(self.batch_shape) :], context
        )
        count = components.batch_shape[-1]
        probs = self._log_weights().detach().exp().expand(*shape, count)
        index = torch.multinomial(probs.reshape(-1, count), 1).reshape(shape)
        event_ndims = len(self.event_shape)
        index = index.reshape(*shape, 1, *([1] * event_ndims))
        index = index.expand(*shape, 1, *self.event_shape)
        draws = draws.expand(*shape, count, *self.event_shape)
        return draws.gather(len(shape), index).squeeze(len(shape))
