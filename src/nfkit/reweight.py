r"""Importance sampling with a flow as the proposal: weights, effective sample size, the
normalizer :math:`\log Z` with its standard error, reweighted expectations and resampling.

For draws :math:`x_i \sim q` and an unnormalized target :math:`\tilde p = Z p`, the weights
:math:`w_i = \tilde p(x_i) / q(x_i)` give the unbiased estimate :math:`\hat Z = \frac1n\sum_i w_i`
and the self-normalized estimate :math:`\hat E_p[f] = \sum_i w_i f(x_i) / \sum_i w_i`
(e.g. Owen 2013, *Monte Carlo theory, methods and examples*, ch. 9). Kish's effective sample
size :math:`(\sum w)^2 / \sum w^2` divided by :math:`n` is 1 exactly when :math:`q = p`.
A :class:`~nfkit.stochastic.StochasticNormalizingFlow` proposes whole paths; its path weights
make the same estimates unbiased (Wu et al. 2020).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from nfkit.distributions.base import Distribution

__all__ = ["ImportanceSamples", "importance", "kish_ess"]


def kish_ess(log_weights: Tensor) -> float:
    r"""Normalized Kish effective sample size :math:`(\sum_i w_i)^2 / (n \sum_i w_i^2)` in
    :math:`[1/n, 1]`, computed from log-weights without overflow.

    Example:
        >>> import torch
        >>> from nfkit.reweight import kish_ess
        >>> kish_ess(torch.zeros(10)), kish_ess(torch.tensor([0.0] + [-1e9] * 9))
        (1.0, 0.1)

    """
    lw = log_weights.double()
    ess = torch.exp(2 * torch.logsumexp(lw, 0) - torch.logsumexp(2 * lw, 0)) / lw.numel()
    return min(float(ess), 1.0)  # <= 1 exactly; rounding can add an ulp


@dataclass
class ImportanceSamples:
    r"""Draws from a proposal with their importance log-weights
    :math:`\log w_i = \log\tilde p(x_i) - \log q(x_i)` (float64).

    Attributes:
        samples: the draws, ``(n, *event_shape)``.
        log_weights: :math:`\log w_i`, ``(n,)``; :math:`-\infty` where the target is zero.

    """

    samples: Tensor
    log_weights: Tensor

    @property
    def ess(self) -> float:
        """Normalized Kish effective sample size (1 for a perfect proposal)."""
        return kish_ess(self.log_weights)

    def _normalized(self) -> Tensor:
        return torch.softmax(self.log_weights, 0)

    @property
    def log_z(self) -> float:
        r""":math:`\log\hat Z = \log\frac1n\sum_i w_i` (:math:`\hat Z` is unbiased; its log is
        biased low by about half the squared relative standard error).
        """
        n = self.log_weights.numel()
        return float(torch.logsumexp(self.log_weights, 0) - math.log(n))

    @property
    def log_z_se(self) -> float:
        r"""Standard error of :attr:`log_z` by the delta method, :math:`\operatorname{sd}(w) /
        (\bar w \sqrt n)`; with heavy-tailed weights it understates the error, so read it with
        :attr:`ess`.
        """
        w = self._normalized() * self.log_weights.numel()  # w_i / mean(w)
        return float(w.std() / math.sqrt(w.numel()))

    def expectation(self, fn: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor]:
        r"""Self-normalized estimate of :math:`E_p[f]` and its delta-method standard error
        :math:`\sqrt{\sum_i \bar w_i^2 (f_i - \hat\mu)^2}`, :math:`\bar w_i = w_i / \sum w`.

        ``fn`` maps the samples ``(n, ...)`` to values ``(n, ...)``; the result has the
        trailing shape.
        """
        values = fn(self.samples).double()
        weights = self._normalized().reshape(-1, *([1] * (values.ndim - 1)))
        mean = (weights * values).sum(0)
        se = (weights.square() * (values - mean).square()).sum(0).sqrt()
        return mean, se

    def resample(self, n: int | None = None, *, seed: int | None = None) -> Tensor:
        """``n`` draws (default: as many as there are samples) picked with replacement with
        probability proportional to the weights: approximately distributed as the target.
        """
        generator = torch.Generator(device="cpu")
        generator.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, ())))
        count = self.log_weights.numel() if n is None else n
        index = torch.multinomial(self._normalized().cpu(), count, True, generator=generator)
        return self.samples[index.to(self.samples.device)]


def importance(
    flow: Distribution,
    log_prob_fn: Callable[[Tensor], Tensor],
    n: int,
    *,
    batch_size: int = 65_536,
    context: Tensor | None = None,
    ais: Any = None,
) -> ImportanceSamples:
    r"""Draw ``n`` samples from ``flow`` and weight them against the unnormalized target.

    Args:
        flow: the proposal :math:`q`; any distribution with ``sample_and_log_prob`` (a flow,
            or a stochastic normalizing flow, whose path term replaces :math:`\log q`).
        log_prob_fn: :math:`\log\tilde p`, points ``(N, D)`` to ``(N,)`` (a
            :class:`nfkit.targets.Target` works).
        n: number of draws.
        batch_size: draws per pass (memory).
        context: conditioning row for a conditional flow.
        ais: anneal each draw towards the target before weighting it: the number of
            intermediate densities, or an :class:`~nfkit.annealing.AnnealedImportanceSampler`
            (see :func:`nfkit.ais`); the weights stay exact and their variance falls.

    Returns:
        :class:`ImportanceSamples` with ``ess``, ``log_z``, ``log_z_se``, ``expectation`` and
        ``resample``.

    Raises:
        ValueError: NaN target values, or a proposal log-density that is not finite.

    Example:
        >>> import math, torch, nfkit, nfkit.distributions as nfd
        >>> _ = torch.manual_seed(0)
        >>> q = nfd.MultivariateNormalDiag(loc=[0.0], scale_diag=[2.0])
        >>> result = nfkit.importance(q, lambda x: -0.5 * x.square().sum(-1), 100_000)
        >>> abs(result.log_z - 0.5 * math.log(2 * math.pi)) < 4 * result.log_z_se  # exact log Z
        True
        >>> mean, se = result.expectation(lambda x: x.square()); round(float(mean), 2)
        1.0

    """
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    if ais is not None:
        from nfkit.annealing import AnnealedImportanceSampler  # builds on this
        from nfkit.annealing import ais as anneal

        if context is not None:
            raise ValueError("annealing a conditional flow is not supported: drop ais= or context=")
        if isinstance(ais, AnnealedImportanceSampler):
            return ais.sample(flow, log_prob_fn, n, batch_size=batch_size)
        return anneal(flow, log_prob_fn, n, distributions=ais, batch_size=batch_size)
    samples, log_weights = [], []
    was_training = flow.training
    flow.eval()
    with torch.no_grad():
        for start in range(0, n, batch_size):
            x, log_q = flow.sample_and_log_prob(min(batch_size, n - start), context=context)
            log_p = log_prob_fn(x)
            if bool(torch.isnan(log_p).any()):
                raise ValueError(
                    f"the target log-density is NaN at {int(torch.isnan(log_p).sum())} of "
                    f"{x.shape[0]} samples; return -inf where the density is zero"
                )
            if not bool(torch.isfinite(log_q).all()):
                raise ValueError(
                    "the proposal's log-density is not finite at some samples: the flow is "
                    "numerically broken there (check its training)"
                )
            samples.append(x.detach())
            log_weights.append((log_p.double() - log_q.double()).detach())
    flow.train(was_training)
    return ImportanceSamples(torch.cat(samples), torch.cat(log_weights))
