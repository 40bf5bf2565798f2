r"""Discrete distributions, TFP's ``tfd.Categorical`` and ``tfd.Bernoulli``: mixture weights,
binary observations (an SBI simulator's spikes), labels. Samples are integers (``torch.long``;
TFP's default is int32); ``log_prob`` is float and :math:`-\infty` off the support.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from nfkit._tensors import ArrayLike, broadcast_shapes, register_tensor
from nfkit.distributions.base import Distribution

__all__ = ["Bernoulli", "Categorical"]


def _logits_or_probs(
    module: Distribution, logits: ArrayLike | None, probs: ArrayLike | None, what: str
) -> Tensor:
    """Register exactly one of ``logits`` and ``probs`` and return it; ``module.by_logits``
    says which.
    """
    if (logits is None) == (probs is None):
        raise ValueError(f"{what} takes exactly one of logits= and probs=")
    module.by_logits = logits is not None
    if logits is not None:
        return register_tensor(module, "logits", logits)
    tensor = register_tensor(module, "probs", probs)
    if bool(((tensor < 0) | (tensor > 1)).any()):
        raise ValueError(f"{what}'s probs must lie in [0, 1]")
    return tensor


def _on_integers(value: Tensor, low: int, high: int) -> Tensor:
    """Where ``value`` is an integer in ``[low, high]``."""
    return (value == value.round()) & (value >= low) & (value <= high)


class Categorical(Distribution):
    r"""One of :math:`K` classes, :math:`P(k) = \pi_k`, :math:`\pi = \operatorname{softmax}
    (\ell)` or given as ``probs`` (normalized over the last dim). Scalar events in
    :math:`\{0, \dots, K-1\}`; leading dims of the parameter are batch dims.

    Args:
        logits: :math:`\ell`, shape ``(*, K)``.
        probs: :math:`\pi`, shape ``(*, K)`` (rows are normalized).

    Example:
        >>> import torch, nfkit.distributions as nfd
        >>> c = nfd.Categorical(probs=[0.3, 0.2, 0.5])
        >>> float(c.prob(torch.tensor(2))), c.sample(4, seed=0).dtype
        (0.5, torch.int64)

    """

    def __init__(self, logits: ArrayLike | None = None, probs: ArrayLike | None = None) -> None:
        super().__init__()
        tensor = _logits_or_probs(self, logits, probs, "Categorical")
        if tensor.ndim < 1:
            raise ValueError("Categorical needs a class dim: logits or probs of shape (*, K)")
        self._batch_shape = tensor.shape[:-1]

    @property
    def num_categories(self) -> int:
        """:math:`K`."""
        return self.logits_parameter().shape[-1]

    def logits_parameter(self) -> Tensor:
        r"""Normalized logits :math:`\log\pi`, shape ``(*, K)``."""
        if self.by_logits:
            return self.logits.log_softmax(-1)
        return (self.probs / self.probs.sum(-1, keepdim=True)).log()

    def probs_parameter(self) -> Tensor:
        r""":math:`\pi`, shape ``(*, K)``."""
        return self.logits_parameter().exp()

    def _rsample(self, shape: torch.Size, context: Tensor | None) -> Tensor:
        probs = self.probs_parameter().detach().expand(*shape, self.num_categories)
        flat = torch.multinomial(probs.reshape(-1, self.num_categories), 1, replacement=True)
        return flat.reshape(shape)

    def _log_prob(self, value: Tensor, context: Tensor | None) -> Tensor:
        log_pi = self.logits_parameter()
        valid = _on_integers(value, 0, self.num_categories - 1)
        index = torch.where(valid, value, 0).long()
        shape = broadcast_shapes(index.shape, log_pi.shape[:-1])
        picked = log_pi.expand(*shape, self.num_categories).gather(
            -1, index.expand(shape)[..., None]
        )[..., 0]
        return torch.where(valid, picked, -math.inf)

    def mode(self) -> Tensor:
        return self.logits_parameter().argmax(-1)

    def entropy(self) -> Tensor:
        log_pi = self.logits_parameter()
        return -(log_pi.exp() * log_pi).nan_to_num().sum(-1)


class Bernoulli(Distribution):
    r"""A coin, :math:`P(1) = p = \sigma(\ell)`, :math:`P(0) = 1 - p`; scalar events,
    batched by the parameter's shape. :math:`\log P(k) = k\ell - \operatorname{softplus}(\ell)`.

    Args:
        logits: :math:`\ell`.
        probs: :math:`p \in [0, 1]`.

    Example:
        >>> import torch, nfkit.distributions as nfd
        >>> b = nfd.Bernoulli(probs=[0.25, 0.5])
        >>> b.log_prob(torch.tensor([1.0, 0.0])).exp().tolist(), b.mean().tolist()
        ([0.25, 0.5], [0.25, 0.5])

    """

    def __init__(self, logits: ArrayLike | None = None, probs: ArrayLike | None = None) -> None:
        super().__init__()
        self._batch_shape = _logits_or_probs(self, logits, probs, "Bernoulli").shape

    def logits_parameter(self) -> Tensor:
        r""":math:`\ell = \log p - \log(1-p)`."""
        if self.by_logits:
            return self.logits
        return self.probs.log() - (-self.probs).log1p()

    def probs_parameter(self) -> Tensor:
        """:math:`p`."""
        return self.logits.sigmoid() if self.by_logits else self.probs

    def _rsample(self, shape: torch.Size, context: Tensor | None) -> Tensor:
        p = self.probs_parameter().detach().expand(shape)
        return torch.bernoulli(p).long()

    def _log_prob(self, value: Tensor, context: Tensor | None) -> Tensor:
        logits = self.logits_parameter()
        log_p = torch.where(value == 1, -F.softplus(-logits), -F.softplus(logits))
        return torch.where(_on_integers(value, 0, 1), log_p, -math.inf)

    def mean(self) -> Tensor:
        return self.probs_parameter().expand(self.batch_shape).to(self.dtype)

    def variance(self) -> Tensor:
        p = self.mean()
        return p * (1 - p)

    def mode(self) -> Tensor:
        return (self.probs_parameter() > 0.5).long().expand(self.batch_shape)

    def entropy(self) -> Tensor:
        p = self.mean()
        return -(torch.special.xlogy(p, p) + torch.special.xlogy(1 - p, 1 - p))
