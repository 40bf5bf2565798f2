r"""TFP's ``tfd.Autoregressive``: a density built by feeding a distribution its own samples."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from nfkit.distributions.base import Distribution

__all__ = ["Autoregressive"]


class Autoregressive(Distribution):
    r"""The distribution :math:`p(x) = f(x).\mathrm{prob}(x)` of a function :math:`f` from a
    value to a distribution with the autoregressive property (coordinate :math:`i` of
    :math:`f(x)` depends on :math:`x_{<i}` only, in some order), so that
    :math:`p(x) = \prod_i p(x_i \mid x_{<i})` (Papamakarios et al. 2017; van den Oord et al.
    2016).

    A sample is :math:`f(\dots f(f(x_0).\mathrm{sample}()).\mathrm{sample}() \dots)
    .\mathrm{sample}()`: a draw of :math:`f(x_0)`, then ``num_steps`` more, each from
    :math:`f` of the last and with the same noise (TFP reuses the seed), so coordinate
    :math:`i` settles once its predecessors have: after :math:`D` steps every coordinate is
    drawn given its final predecessors.

    Args:
        distribution_fn: value ``(*, *event_shape)`` -> an nfkit distribution over it (for
            the samples ``(n, *batch, *event)``, one with that batch shape).
        sample0: :math:`x_0`; without it, ``distribution_fn()`` must work.
        num_steps: draws after the first (default: the event size :math:`D`).

    Example:
        >>> import torch, nfkit.distributions as nfd
        >>> def chain(x):  # x_1 ~ N(0, 1), x_2 | x_1 ~ N(x_1, 0.5^2)
        ...     loc = torch.stack([torch.zeros_like(x[..., 0]), x[..., 0]], -1)
        ...     return nfd.MultivariateNormalDiag(loc, torch.tensor([1.0, 0.5]).expand_as(loc))
        >>> ar = nfd.Autoregressive(chain, sample0=torch.zeros(2))
        >>> x = ar.sample(20_000, seed=0)
        >>> x.shape, round(float(torch.corrcoef(x.T)[0, 1]), 1)  # 1 / sqrt(1.25)
        (torch.Size([20000, 2]), 0.9)

    """

    def __init__(
        self,
        distribution_fn: Callable[..., Distribution],
        sample0: Tensor | None = None,
        num_steps: int | None = None,
    ) -> None:
        super().__init__()
        self.distribution_fn = distribution_fn
        self.sample0 = sample0
        self.distribution0 = distribution_fn() if sample0 is None else distribution_fn(sample0)
        if not isinstance(self.distribution0, Distribution):
            raise TypeError(
                "distribution_fn must return an nfkit distribution, got "
                f"{type(self.distribution0).__name__}"
            )
        self._batch_shape = self.distribution0.batch_shape
        self._event_shape = self.distribution0.event_shape
        self.num_steps = self._event_shape.numel() if num_steps is None else num_steps
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be at least 1, got {self.num_steps}")

    def _reference(self) -> Tensor | None:
        return self.distribution0._reference()

    def _rsample(self, shape: torch.Size, context: Tensor | None) -> Tensor:
        sample_shape = shape[: len(shape) - len(self.batch_shape)]
        cuda = self.device.type == "cuda"
        state = torch.cuda.get_rng_state(self.device) if cuda else torch.get_rng_state()
        x = self.distribution0.rsample(sample_shape)
        for _ in range(self.num_steps):
            # the same noise at every step: the fixed point of x = f(x).sample(noise)
            torch.cuda.set_rng_state(state, self.device) if cuda else torch.set_rng_state(state)
            x = self.distribution_fn(x).rsample()
        return x

    def _log_prob(self, value: Tensor, context: Tensor | None) -> Tensor:
        return self.distribution_fn(value).log_prob(value)
