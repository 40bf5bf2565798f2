r"""Annealed importance sampling (Neal 2001, Statistics and Computing 11) from a flow to an
unnormalized target, with HMC or Metropolis transitions vectorized over chains.

Start chains at :math:`x_0 \sim q` (the flow) and move them through the geometric path

.. math:: \log\pi_k(x) = (1 - \alpha\beta_k)\log q(x) + \alpha\beta_k\log\tilde p(x),
          \qquad 0 = \beta_0 < \beta_1 < \dots < \beta_K < \beta_{K+1} = 1,

with one MCMC transition :math:`T_k` that keeps :math:`\pi_k` invariant at each intermediate
:math:`\beta_k`. The end point :math:`\pi_{K+1}` is :math:`\tilde p` for :math:`\alpha = 1`, and
:math:`\tilde p^\alpha / q^{\alpha - 1}` otherwise: :math:`\alpha = 2` gives
:math:`\tilde p^2 / q`, the importance-sampling distribution of least variance for the
:math:`\alpha=2` divergence, which is what FAB trains on (Midgley et al. 2023, ICLR, eq. 8).
The log-weight of a chain,

.. math:: \log w = \sum_{k=1}^{K+1}\big[\log\pi_k(x_{k-1}) - \log\pi_{k-1}(x_{k-1})\big]
          = \log\pi_{K+1}(x_K) - \log q(x_0) + \sum_{k=1}^{K}\big[\log\pi_k(x_{k-1})
          - \log\pi_k(x_k)\big],

gives :math:`E[w] = \int\pi_{K+1}` (for :math:`\alpha = 1`, :math:`Z`) and self-normalized
expectations under :math:`\pi_{K+1}` for any transitions that keep their :math:`\pi_k`
invariant; better transitions only lower the variance. The second form is the one computed
(the bracket is each Metropolis kernel's :math:`\Delta S`, as in :mod:`nfkit.stochastic`): one
evaluation of the target per transition beyond the kernel's own.

Step sizes adapt between runs towards a target acceptance (0.65 as in FAB's code), never within
one, so each run's weights stay exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from nfkit.distributions.base import Distribution
from nfkit.reweight import ImportanceSamples
from nfkit.stochastic import HMCLayer, MetropolisLayer, StochasticNormalizingFlow

__all__ = ["AnnealedImportanceSampler", "AnnealedSamples", "ais"]

LogProb = Callable[[Tensor], Tensor]

_KERNELS = {"hmc": HMCLayer, "metropolis": MetropolisLayer}


@dataclass
class AnnealedSamples(ImportanceSamples):
    r"""The end points of AIS chains with their log-weights (float64), as
    :class:`~nfkit.reweight.ImportanceSamples` (``ess``, ``log_z``, ``log_z_se``,
    ``expectation``, ``resample``), for the path's end :math:`\pi_{K+1}`.

    Attributes:
        acceptance: each transition's mean acceptance rate, in path order.
        dropped: chains left out because a log-density along the path was not finite.
        log_q: :math:`\log q` of the end points (the flow's), float64.
        proposal_log_weights: :math:`\log\tilde p(x_0) - \log q(x_0)` of the chains' starts:
            plain importance sampling from the flow, for comparison.

    """

    acceptance: list[float] = field(default_factory=list)
    dropped: int = 0
    log_q: Tensor | None = None
    proposal_log_weights: Tensor | None = None


class AnnealedImportanceSampler(nn.Module):
    r"""AIS from a flow :math:`q` to :math:`\tilde p^\alpha / q^{\alpha-1}` through
    ``distributions`` intermediate densities (the path and weights in :mod:`nfkit.annealing`).

    Args:
        distributions: :math:`K`, the intermediate densities (one transition each);
            ``0`` is plain importance sampling from the flow.
        kernel: ``"hmc"`` (Duane et al. 1987) or ``"metropolis"`` (random walk).
        steps: MCMC steps per transition.
        leapfrog: leapfrog steps per HMC step.
        step_size: the initial step size of every transition.
        spacing: ``"linear"`` (:math:`\beta_k = k / (K + 1)`) or ``"geometric"`` (a quarter
            of the points linear up to 0.01, the rest geometric from 0.01 to 1, as FAB's code).
        adapt: after each run with gradients off in training mode, multiply each step size
            by 1.1 when its acceptance was above ``target_acceptance`` and divide it otherwise.
        target_acceptance: the acceptance the adaptation aims at.

    Example:
        >>> import math, torch, nfkit.distributions as nfd
        >>> from nfkit.annealing import AnnealedImportanceSampler
        >>> from nfkit.reweight import kish_ess
        >>> _ = torch.manual_seed(0)
        >>> q = nfd.MultivariateNormalDiag(loc=[0.0, 0.0], scale_diag=[3.0, 3.0])
        >>> target = lambda x: -0.5 * ((x - 1.0) / 0.5).square().sum(-1)  # log Z = log(pi/2)
        >>> result = AnnealedImportanceSampler(8, step_size=0.3).sample(q, target, 4000)
        >>> abs(result.log_z - math.log(math.pi / 2)) < 4 * result.log_z_se
        True
        >>> result.ess > 3 * kish_ess(result.proposal_log_weights)  # vs the flow's own weights
        True

    """

    def __init__(
        self,
        distributions: int = 4,
        *,
        kernel: str = "hmc",
        steps: int = 1,
        leapfrog: int = 5,
        step_size: float = 0.5,
        spacing: str = "linear",
        adapt: bool = True,
        target_acceptance: float = 0.65,
    ) -> None:
        super().__init__()
        if distributions < 0:
            raise ValueError(f"distributions must be >= 0, got {distributions}")
        if kernel not in _KERNELS:
            raise ValueError(f"unknown kernel {kernel!r}; choose one of {', '.join(_KERNELS)}")
        if not 0.0 < target_acceptance < 1.0:
            raise ValueError(f"target_acceptance must be in (0, 1), got {target_acceptance}")
        self.register_buffer("betas", _spacing(spacing, distributions))
        options = {"steps": steps, "step_size": step_size}
        if kernel == "hmc":
            options["leapfrog"] = leapfrog
        self.transitions = nn.ModuleList(
            _KERNELS[kernel](lam=float(b), **options) for b in self.betas[1:-1]
        )
        self.adapt, self.target_acceptance = adapt, target_acceptance

    @property
    def step_sizes(self) -> list[float]:
        """The current step size of each transition."""
        return [float(t.step_size) for t in self.transitions]

    def sample(
        self,
        flow: Distribution,
        log_prob_fn: LogProb,
        n: int,
        *,
        alpha: float = 1.0,
        batch_size: int = 65_536,
    ) -> AnnealedSamples:
        r"""Run ``n`` chains (in passes of ``batch_size``) and return their end points and
        log-weights for :math:`\tilde p^\alpha / q^{\alpha - 1}` (:math:`\tilde p` itself for
        the default :math:`\alpha = 1`). No gradient flows back to the flow's parameters.

        Raises:
            ValueError: ``n < 1``, a flow without a tractable density (a stochastic flow), or a
                run in which every chain was lost to non-finite values.

        """
        if n < 1:
            raise ValueError(f"n must be positive, got {n}")
        if isinstance(flow, StochasticNormalizingFlow):
            raise ValueError("AIS needs a flow with a tractable log_prob to interpolate from")
        was_training = flow.training
        flow.eval()
        parts = []
        with torch.no_grad():
            for start in range(0, n, batch_size):
                parts.append(self._run(flow, log_prob_fn, min(batch_size, n - start), alpha))
        flow.train(was_training)
        acceptance = [
            sum(p[5][k] for p in parts) / len(parts) for k in range(len(self.transitions))
        ]
        if self.adapt and self.training:
            for transition, rate in zip(self.transitions, acceptance, strict=True):
                step = 1.1 if rate > self.target_acceptance else 1 / 1.1
                transition.log_step.add_(math.log(step))
        x, log_w, log_q, log_w0 = (torch.cat([p[i] for p in parts]) for i in range(4))
        dropped = sum(p[4] for p in parts)
        if x.shape[0] == 0:
            raise ValueError(
                f"every one of {n} AIS chains reached a non-finite log-density; check the "
                "target (return -inf, not NaN, outside its support) and lower the step size"
            )
        return AnnealedSamples(x, log_w, acceptance, dropped, log_q, log_w0)

    def _run(
        self, flow: Distribution, log_prob_fn: LogProb, n: int, alpha: float
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, int, list[float]]:
        x, log_q0 = flow.sample_and_log_prob((n,))
        x = x.detach()
        log_p0 = log_prob_fn(x)
        log_w = -log_q0.double()
        acceptance = []
        for transition in self.transitions:
            a = alpha * transition.lam

            def log_pi(y: Tensor, a: float = a) -> Tensor:
                return (1 - a) * flow.log_prob(y) + a * log_prob_fn(y)

            x, delta = transition.transition(x, log_pi)
            x = x.detach()
            log_w = log_w + delta.double()
            acceptance.append(float(transition.acceptance or 0.0))
        log_q, log_p = flow.log_prob(x).double(), log_prob_fn(x).double()
        log_w = log_w + alpha * log_p - (alpha - 1) * log_q
        keep = torch.isfinite(log_w) & torch.isfinite(log_q)
        log_w0 = (log_p0.double() - log_q0.double())[keep]
        return x[keep], log_w[keep], log_q[keep], log_w0, int((~keep).sum()), acceptance


def _spacing(kind: str, distributions: int) -> Tensor:
    if kind == "linear":
        return torch.linspace(0.0, 1.0, distributions + 2, dtype=torch.float64)
    if kind == "geometric":
        linear = distributions // 4
        geometric = distributions - linear - 1
        if geometric < 0:
            return torch.linspace(0.0, 1.0, distributions + 2, dtype=torch.float64)
        head = torch.linspace(0.0, 0.01, linear + 2, dtype=torch.float64)[:-1]
        tail = torch.logspace(-2.0, 0.0, geometric + 2, dtype=torch.float64)
        return torch.cat([head, tail])
    raise ValueError(f"unknown spacing {kind!r}; choose 'linear' or 'geometric'")


def ais(
    flow: Distribution,
    log_prob_fn: LogProb,
    n: int,
    *,
    distributions: int = 8,
    alpha: float = 1.0,
    batch_size: int = 65_536,
    **options: object,
) -> AnnealedSamples:
    r"""Annealed importance sampling from ``flow`` to ``log_prob_fn`` with ``n`` chains: the
    one-call form of :class:`AnnealedImportanceSampler` (``options``: its keywords, e.g.
    ``kernel="metropolis"``, ``step_size=1.0``), without adaptation.

    Returns:
        :class:`AnnealedSamples`: ``log_z`` and ``log_z_se`` estimate :math:`\log Z`, ``ess``
        the normalized Kish effective sample size, ``proposal_log_weights`` the flow's own
        importance weights at the chains' starts.

    Example:
        >>> import math, torch, nfkit, nfkit.distributions as nfd
        >>> _ = torch.manual_seed(0)
        >>> q = nfd.MultivariateNormalDiag(loc=[0.0], scale_diag=[1.0])
        >>> result = nfkit.ais(q, lambda x: -0.5 * x.square().sum(-1) + 3.0, 1000)  # q = p
        >>> round(result.ess, 6), round(result.log_z - 3.0 - 0.5 * math.log(2 * math.pi), 6)
        (1.0, 0.0)

    """
    sampler = AnnealedImportanceSampler(distributions, adapt=False, **options)  # type: ignore[arg-type]
    return sampler.sample(flow, log_prob_fn, n, alpha=alpha, batch_size=batch_size)
