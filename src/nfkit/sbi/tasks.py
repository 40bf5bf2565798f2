r"""Benchmark problems of simulation-based inference, defined as in Lueckmann, Boelts,
Greenberg, Gonçalves, Macke, "Benchmarking Simulation-Based Inference", AISTATS 2021
(https://arxiv.org/abs/2101.04653, appendix T): a prior, a vectorized simulator and, where the
problem has one, the analytic posterior.

Observations here are drawn by :meth:`Task.observation` from our own seeds; the SBI benchmark's
ten fixed observations and reference posterior samples come with the ``sbibm`` package (the
``bench`` extra), which ``benchmarks/`` reads.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from nfkit.distributions import Distribution, Independent, MultivariateNormalDiag, Uniform
from nfkit.distributions.torch_compat import TorchDistribution

__all__ = [
    "TASKS",
    "Task",
    "bernoulli_glm",
    "gaussian_linear",
    "gaussian_mixture",
    "slcp",
    "two_moons",
]


@dataclass
class Task:
    r"""A prior, a simulator ``theta (n, d) -> x (n, k)`` and maybe an analytic posterior.

    Attributes:
        name: the benchmark's name.
        prior: :math:`p(\\theta)`.
        simulator: vectorized: ``simulator(theta)`` draws one :math:`x` per row.
        posterior: ``posterior(x_o)`` samples function ``(n) -> (n, d)`` of the exact
            posterior, or ``None`` when the problem has no closed form.

    """

    name: str
    prior: Distribution
    simulator: Callable[[Tensor], Tensor]
    posterior: Callable[[Tensor, int], Tensor] | None = None

    def observation(self, seed: int) -> tuple[Tensor, Tensor]:
        r"""A true :math:`\theta` from the prior and one observation :math:`x_o` of it."""
        generator_state = torch.get_rng_state()
        torch.manual_seed(seed)
        try:
            theta = self.prior.sample(1)
            return theta[0], self.simulator(theta)[0]
        finally:
            torch.set_rng_state(generator_state)

    def reference_samples(self, x: Tensor, n: int) -> Tensor:
        """``n`` exact posterior samples given ``x`` (tasks with an analytic posterior)."""
        if self.posterior is None:
            raise ValueError(f"{self.name} has no analytic posterior")
        return self.posterior(x, n)


def _box(low: float, high: float, d: int) -> Distribution:
    return Independent(Uniform(torch.full((d,), low), torch.full((d,), high)), 1)


def gaussian_linear(dim: int = 10) -> Task:
    r"""Gaussian linear: :math:`\theta \sim N(0, 0.1 I)`, :math:`x \mid \theta \sim
    N(\theta, 0.1 I)`; the posterior is :math:`N(x/2, 0.05 I)`.

    Example:
        >>> task = gaussian_linear()
        >>> theta, x = task.observation(0)
        >>> theta.shape, x.shape, task.reference_samples(x, 5).shape
        (torch.Size([10]), torch.Size([10]), torch.Size([5, 10]))

    """
    scale = math.sqrt(0.1)
    prior = MultivariateNormalDiag(loc=[0.0] * dim, scale_diag=[scale] * dim)

    def simulator(theta: Tensor) -> Tensor:
        return theta + scale * torch.randn_like(theta)

    def posterior(x: Tensor, n: int) -> Tensor:
        return x / 2 + math.sqrt(0.05) * torch.randn(n, dim, dtype=x.dtype)

    return Task("gaussian_linear", prior, simulator, posterior)


def two_moons() -> Task:
    r"""Two moons: :math:`\theta \sim U(-1, 1)^2`; :math:`a \sim U(-\pi/2, \pi/2)`,
    :math:`r \sim N(0.1, 0.01^2)`, :math:`p = (r\cos a + 0.25,\ r \sin a)` and
    :math:`x = p + \big(-|\theta_1 + \theta_2|/\sqrt2,\ (-\theta_1 + \theta_2)/\sqrt2\big)`: a
    crescent-shaped, bimodal posterior.
    """

    def simulator(theta: Tensor) -> Tensor:
        n = theta.shape[0]
        a = (torch.rand(n, dtype=theta.dtype) - 0.5) * math.pi
        r = 0.1 + 0.01 * torch.randn(n, dtype=theta.dtype)
        p = torch.stack([r * a.cos() + 0.25, r * a.sin()], -1)
        shift = torch.stack(
            [-(theta[:, 0] + theta[:, 1]).abs(), -theta[:, 0] + theta[:, 1]], -1
        ) / math.sqrt(2)
        return p + shift

    return Task("two_moons", _box(-1.0, 1.0, 2), simulator)


def gaussian_mixture() -> Task:
    r"""Gaussian mixture: :math:`\theta \sim U(-10, 10)^2`, :math:`x \mid \theta \sim
    \tfrac12 N(\theta, I) + \tfrac12 N(\theta, 0.01 I)`; the posterior is the same mixture
    centred on :math:`x`, cut to the prior's box (sampled exactly, by rejection).
    """
    prior = _box(-10.0, 10.0, 2)

    def simulator(theta: Tensor) -> Tensor:
        narrow = torch.rand(theta.shape[0], 1, dtype=theta.dtype) < 0.5
        scale = torch.where(narrow, 0.1, 1.0)
        return theta + scale * torch.randn_like(theta)

    def posterior(x: Tensor, n: int) -> Tensor:
        kept: list[Tensor] = []
        while sum(len(k) for k in kept) < n:
            draws = simulator(x.expand(2 * n, 2))  # symmetric in theta and x
            kept.append(draws[((draws > -10) & (draws < 10)).all(-1)])
        return torch.cat(kept)[:n]

    return Task("gaussian_mixture", prior, simulator, posterior)


def slcp() -> Task:
    r"""Simple likelihood, complex posterior: :math:`\theta \sim U(-3, 3)^5`; four independent
    draws of a 2-D Gaussian with mean :math:`(\theta_1, \theta_2)`, standard deviations
    :math:`\theta_3^2, \theta_4^2` and correlation :math:`\tanh\theta_5`, concatenated into
    :math:`x \in \mathbb{R}^8`. The posterior has four symmetric modes.
    """

    def simulator(theta: Tensor) -> Tensor:
        m = theta[:, :2]
        s1, s2, rho = theta[:, 2] ** 2, theta[:, 3] ** 2, torch.tanh(theta[:, 4])
        z = torch.randn(theta.shape[0], 4, 2, dtype=theta.dtype)
        a = s1[:, None] * z[..., 0]
        b = s2[:, None] * (rho[:, None] * z[..., 0] + (1 - rho[:, None] ** 2).sqrt() * z[..., 1])
        return (torch.stack([a, b], -1) + m[:, None, :]).reshape(-1, 8)

    return Task("slcp", _box(-3.0, 3.0, 5), simulator)


def _glm_design(bins: int = 100, taps: int = 9) -> Tensor:
    """The benchmark's design matrix: a column of ones and ``taps`` lagged copies of a white
    noise stimulus (``numpy.random.RandomState(42)``, as the benchmark draws it).
    """
    stimulus = torch.from_numpy(np.random.RandomState(42).randn(bins).astype(np.float32))
    design = torch.zeros(bins, taps + 1)
    design[:, 0] = 1.0
    for lag in range(taps):
        design[lag:, lag + 1] = stimulus[: bins - lag]
    return design


def bernoulli_glm() -> Task:
    r"""Bernoulli GLM: a neuron's spikes :math:`y_t \sim \mathrm{Bernoulli}(\sigma(X_t
    \theta))` over 100 bins of a white-noise stimulus, :math:`\theta = (\beta_0, h)` an offset
    and a 9-tap filter; :math:`x = X^\top y` (spike count and spike-triggered sums, the
    sufficient statistics). Prior :math:`N(0, B^{-1})` with :math:`B_{00} = 0.5` and
    :math:`B_{hh} = F^\top F`, :math:`F = D^2 + \mathrm{diag}(\sqrt{j/9})` (``D``: first
    differences), which favours smooth filters.

    Because :math:`x` is sufficient, the posterior is known up to a constant,
    :math:`\log p(\theta \mid x) = \log p(\theta) + \theta^\top x - \sum_t
    \log(1 + e^{X_t \theta}) + c`; it is log-concave, and ``reference_samples`` draws from
    it by slice sampling (the benchmark used Pólya-Gamma Gibbs sampling on the same density;
    the two sets of samples are indistinguishable, C2ST 0.50 on its first observation).
    """
    design = _glm_design()
    m = design.shape[1] - 1
    d = torch.eye(m) - torch.diag(torch.ones(m - 1), -1)
    f = d @ d + torch.diag(torch.arange(m) / m) ** 0.5
    precision = torch.zeros(m + 1, m + 1)
    precision[0, 0] = 0.5
    precision[1:, 1:] = f.T @ f
    prior = TorchDistribution(
        torch.distributions.MultivariateNormal(torch.zeros(m + 1), precision_matrix=precision)
    )

    def simulator(theta: Tensor) -> Tensor:
        rates = torch.sigmoid(theta @ design.to(theta.dtype).T)
        return (torch.rand_like(rates) < rates).to(theta.dtype) @ design.to(theta.dtype)

    def log_posterior(theta: Tensor, x: Tensor) -> Tensor:  # up to a constant
        psi = theta @ design.to(theta.dtype).T
        quadratic = ((theta @ precision.to(theta.dtype)) * theta).sum(-1)
        return (theta * x).sum(-1) - torch.nn.functional.softplus(psi).sum(-1) - quadratic / 2

    def posterior(x: Tensor, n: int) -> Tensor:
        from nfkit.sbi.mcmc import slice_sample

        chains = 100
        start = prior.sample(chains).to(x.dtype)
        draws = slice_sample(lambda t: log_posterior(t, x), start, 200 + 5 * -(-n // chains))
        return draws[200::5].reshape(-1, m + 1)[:n]

    return Task("bernoulli_glm", prior, simulator, posterior)


TASKS: dict[str, Callable[[], Task]] = {
    "gaussian_linear": gaussian_linear,
    "two_moons": two_moons,
    "gaussian_mixture": gaussian_mixture,
    "slcp": slcp,
    "bernoulli_glm": bernoulli_glm,
}
