"""Simulation-based inference: from a simulator and one observation to a posterior.

>>> from nfkit.sbi import simulate, tasks
>>> task = tasks.gaussian_linear(dim=3)
>>> theta, x = simulate(task.prior, task.simulator, 100, vectorized=True)
>>> tuple(theta.shape), tuple(x.shape)
((100, 3), (100, 3))

See :class:`NPE` and :class:`NLE` for the posteriors, :func:`sequential` for rounds focused
on one observation, :mod:`nfkit.sbi.diagnostics` for checks.
"""

from nfkit.sbi import tasks
from nfkit.sbi.atomic import AtomicLoss
from nfkit.sbi.diagnostics import (
    PredictiveCheck,
    c2st,
    expected_coverage,
    posterior_predictive,
    sbc_ranks,
    sbc_uniformity,
)
from nfkit.sbi.estimators import NLE, NPE, Posterior
from nfkit.sbi.mcmc import slice_sample
from nfkit.sbi.prior import as_prior, support_bijector
from nfkit.sbi.sequential import Round, sequential
from nfkit.sbi.simulate import SimulationError, Simulations, simulate, simulate_at

__all__ = [
    "NLE",
    "NPE",
    "AtomicLoss",
    "Posterior",
    "PredictiveCheck",
    "Round",
    "SimulationError",
    "Simulations",
    "as_prior",
    "c2st",
    "expected_coverage",
    "posterior_predictive",
    "sbc_ranks",
    "sbc_uniformity",
    "sequential",
    "simulate",
    "simulate_at",
    "slice_sample",
    "support_bijector",
    "tasks",
]
