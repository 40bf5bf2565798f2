r"""Finite mixtures of one family: ``MixtureSameFamily`` (TFP's name), e.g. a Gaussian mixture
as the base of a flow for multimodal data.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nfkit._tensors import ArrayLike, register_tensor
from nfkit.distributions.base import Distribution

__all__ = ["MixtureSameFamily"]


class MixtureSameFamily(Distribution):
    r"""A mixture of :math:`K` components of one family,
    :math:`p(x) = \sum_k \pi_k\, p_k(x)` with :math:`\pi = \operatorname{softmax}(\ell)`.

    ``log_prob`` is :math:`\operatorname{logsumexp}_k(\log\pi_k + \log p_k(x))`. A sample draws
    a component index from :math:`\pi`, then a point from that component; ``rsample`` passes
    gradients to the components' parameters but not to the logits (a discrete choice has no
    reparametrization; train the logits through ``log_prob``).

    Args:
        logits: :math:`\ell`, shape ``(*, K)``; an ``nn.Parameter`` trains the weights.
        components_distribution: a distribution with batch shape ``(*, K)`` (the last batch dim
            indexes the components), e.g. ``MultivariateNormalDiag(loc=(K, D) tensor)``.

    Example:
        >>> import torch, nfkit.distributions as nfd
        >>> _ = torch.manual_seed(0)
        >>> mix = nfd.MixtureSameFamily(
        ...     torch.zeros(2), nfd.MultivariateNormalDiag(loc=[[-3.0, 0.0], [3.0, 0.0]])
        ... )
        >>> mix.event_shape, mix.sample(1000)[:, 0].gt(0).float().mean().round(decimals=1)
        (torch.Size([2]), tensor(0.5000))

    """

    def __init__(self, logits: ArrayLike, components_distribution: Distribution) -> None:
        super().__init__()
        register_tensor(self, "logits", logits)
        self.components_distribution = components_distribution
        batch = components_distribution.batch_shape
        if not batch or batch[-1] != self.logits.shape[-1]:
            raise ValueError(
                f"the components' last batch dim must count the {self.logits.shape[-1]} "
                f"components (logits shape {list(self.logits.shape)}), got batch shape "
                f"{list(batch)}"
            )
        self._batch_shape = torch.broadcast_shapes(batch[:-1], self.logits.shape[:-1])
        self._event_shape = components_distribution.event_shape

    def _log_prob(self, value: Tensor, context: Tensor | None) -> Tensor:
        event_ndims = len(self.event_shape)
        per_component = self.components_distribution._log_prob(
            value.unsqueeze(value.ndim - event_ndims), context
        )
        return torch.logsumexp(per_component + self.logits.log_softmax(-1), dim=-1)

    def _rsample(self, shape: torch.Size, context: Tensor | None) -> Tensor:
        components = self.components_distribution
        draws = components._rsample(
            shape + components.batch_shape[len(self.batch_shape) :], context
        )
        probs = self.logits.detach().softmax(-1).expand(*shape, self.logits.shape[-1])
        index = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1).reshape(shape)
        event_ndims = len(self.event_shape)
        index = index.reshape(*shape, 1, *([1] * event_ndims))
        index = index.expand(*shape, 1, *self.event_shape)
        draws = draws.expand(*shape, self.logits.shape[-1], *self.event_shape)
        return draws.gather(len(shape), index).squeeze(len(shape))
