r"""``Conditional``: a conditional distribution whose context passes through an embedding
network first, trained with it (summary statistics of observations, standardization).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nfkit.distributions.base import (
    BijectorKwargs,
    Distribution,
    PushedForward,
    SampleShape,
)

__all__ = ["Conditional"]


class Conditional(PushedForward):
    r""":math:`q(x \mid c) = q_0(x \mid e(c))`: ``distribution`` conditioned on
    ``embedding(context)`` instead of the raw context.

    The embedding is part of the model: its parameters train with the flow's, it moves with
    ``.to()`` and is saved in model files (when it is an nfkit module). Shapes follow the
    context rules of every nfkit distribution: a context ``(C,)`` gives ``sample(n)`` of shape
    ``(n, *event)``; a batch ``(B, C)`` gives ``(n, B, *event)``.

    Args:
        distribution: a conditional distribution (a flow built with ``context=`` the
            embedding's output width).
        embedding: a module from contexts ``(*, *context_shape)`` to ``(*, k)``.

    Example:
        >>> import torch, nfkit
        >>> from nfkit.nets import ContextEmbedding
        >>> flow = nfkit.flows.maf(2, layers=1, hidden=[8], context=3)
        >>> q = Conditional(flow, ContextEmbedding([0.0] * 3, [2.0] * 3))
        >>> q.sample(5, context=torch.zeros(4, 3)).shape
        torch.Size([5, 4, 2])

    """

    def __init__(self, distribution: Distribution, embedding: nn.Module) -> None:
        super().__init__()
        self.distribution, self.embedding = distribution, embedding
        self._batch_shape = distribution.batch_shape
        self._event_shape = distribution.event_shape

    def _embed(self, context: Tensor | None) -> Tensor:
        if context is None:
            raise ValueError("this distribution is conditional: pass context=")
        return self.embedding(context)

    def rsample(
        self,
        sample_shape: SampleShape = (),
        *,
        context: Tensor | None = None,
        bijector_kwargs: BijectorKwargs = None,
    ) -> Tensor:
        # The embedded context sets the batch (a context need not be a vector: a time series).
        sample_shape, context = self._sampling_context(sample_shape, context, bijector_kwargs)
        return self.distribution.rsample(sample_shape, context=self._embed(context))

    def _rsample(self, shape: torch.Size, context: Tensor | None) -> Tensor:
        return self.distribution._rsample(shape, self._embed(context))

    def _log_prob(self, value: Tensor, context: Tensor | None) -> Tensor:
        return self.distribution._log_prob(value, self._embed(context))

    def sample_and_log_prob(
        self,
        sample_shape: SampleShape = (),
        *,
        context: Tensor | None = None,
        bijector_kwargs: BijectorKwargs = None,
    ) -> tuple[Tensor, Tensor]:
        sample_shape, context = self._sampling_context(sample_shape, context, bijector_kwargs)
        return self.distribution.sample_and_log_prob(sample_shape, context=self._embed(context))
