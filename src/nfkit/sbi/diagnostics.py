r"""Checks of a posterior estimate: simulation-based calibration (Talts et al. 2018), expected
coverage of highest-density regions, the classifier two-sample test (C2ST) against reference
samples (Lopez-Paz & Oquab 2017; the SBI benchmark's metric) and posterior predictive checks
(Gelman, Meng & Stern 1996).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from nfkit.sbi.simulate import Simulations, simulate_at

__all__ = [
    "PredictiveCheck",
    "c2st",
    "expected_coverage",
    "posterior_predictive",
    "sbc_ranks",
    "sbc_uniformity",
]

Sampler = Callable[[int, Tensor], Tensor]  # (n, x) -> (n, d) posterior samples


def sbc_ranks(sample: Sampler, theta: Tensor, x: Tensor, draws: int = 100) -> Tensor:
    r"""Simulation-based calibration ranks: for each pair :math:`(\theta_i, x_i)` with
    :math:`\theta_i \sim p(\theta)`, :math:`x_i \sim p(x \mid \theta_i)`, the number of the
    ``draws`` posterior samples given :math:`x_i` that lie below :math:`\theta_i`, per
    coordinate. For a calibrated posterior each coordinate's ranks are uniform on
    ``0..draws`` (Talts, Betancourt, Simpson, Vehtari, Gelman 2018, arXiv:1804.06788).

    Args:
        sample: ``sample(n, x)`` returns ``n`` posterior samples ``(n, d)`` given ``x``.
        theta: ``(m, d)`` true parameters, drawn from the prior.
        x: ``(m, *x_shape)`` their simulations.
        draws: posterior samples per pair.

    Returns:
        ``(m, d)`` integer ranks.

    """
    if theta.shape[0] != x.shape[0]:
        raise ValueError(f"theta and x need one row each: {theta.shape[0]} vs {x.shape[0]}")
    ranks = [(sample(draws, x[i]) < theta[i]).sum(0) for i in range(theta.shape[0])]
    return torch.stack(ranks)


def sbc_uniformity(ranks: Tensor, draws: int, bins: int = 10) -> np.ndarray:
    """p-values of a chi-square test that each coordinate's ranks are uniform on
    ``0..draws`` (binned into ``bins`` equal groups of rank values). Small p-values (below,
    say, 0.01 after a Bonferroni correction over coordinates) say the posterior is
    miscalibrated: too narrow gives U-shaped ranks, too wide a hump, biased a slope.
    """
    edges = np.linspace(0, draws + 1, bins + 1)
    p = []
    for column in ranks.T.cpu().numpy():
        counts, _ = np.histogram(column, bins=edges)
        p.append(stats.chisquare(counts).pvalue)
    return np.asarray(p)


def expected_coverage(
    log_prob: Callable[[Tensor, Tensor], Tensor],
    sample: Sampler,
    theta: Tensor,
    x: Tensor,
    draws: int = 200,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Expected coverage of the estimate's highest-density regions: for each pair, the
    credibility level :math:`\alpha_i` of the smallest highest-density region that contains
    :math:`\theta_i` (the fraction of posterior samples denser than :math:`\theta_i`). For a
    calibrated posterior the :math:`\alpha_i` are uniform, so the empirical coverage at level
    :math:`\alpha` (the fraction with :math:`\alpha_i \le \alpha`) equals :math:`\alpha`;
    below the diagonal is over-confident.

    Args:
        log_prob: ``log_prob(theta_rows, x)``: the estimate's log-density given ``x``.
        sample: ``sample(n, x)``, as for :func:`sbc_ranks`.
        theta: ``(m, d)`` true parameters.
        x: their simulations.
        draws: posterior samples per pair.

    Returns:
        ``(levels, coverage)``: 101 levels in [0, 1] and the empirical coverage at each.

    """
    alphas = []
    for i in range(theta.shape[0]):
        samples = sample(draws, x[i])
        dens = log_prob(samples, x[i])
        alphas.append(float((dens > log_prob(theta[i : i + 1], x[i])).double().mean()))
    levels = np.linspace(0.0, 1.0, 101)
    return levels, (np.asarray(alphas)[None, :] <= levels[:, None]).mean(1)


def c2st(p: Tensor, q: Tensor, *, folds: int = 5, seed: int = 0) -> float:
    r"""Classifier two-sample test: the cross-validated accuracy of a neural network telling
    samples of ``p`` from samples of ``q`` (0.5: indistinguishable, 1: disjoint). As in the
    SBI benchmark (Lueckmann et al. 2021): both sets standardized by ``p``'s mean and
    standard deviation, an MLP with two hidden layers of ``10 d`` ReLU units, ``folds``-fold
    cross-validation.

    Example:
        >>> import torch
        >>> a, b = torch.randn(500, 2), torch.randn(500, 2)
        >>> c2st(a, b) < 0.6, c2st(a, b + 3.0) > 0.95
        (True, True)

    """
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neural_network import MLPClassifier

    a, b = p.detach().double().cpu().numpy(), q.detach().double().cpu().numpy()
    mean, std = a.mean(0), a.std(0)
    std[~(std > 0)] = 1.0
    data = (np.concatenate([a, b]) - mean) / std
    labels = np.concatenate([np.zeros(len(a)), np.ones(len(b))])
    width = 10 * data.shape[1]
    clf = MLPClassifier(
        hidden_layer_sizes=(width, width), max_iter=1000, solver="adam", random_state=seed
    )
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return float(np.mean(cross_val_score(clf, data, labels, cv=cv, scoring="accuracy")))


@dataclass
class PredictiveCheck:
    r"""What :func:`posterior_predictive` found.

    A small ``p_values`` entry or ``distance_p`` (say below 0.01) says the posterior's
    simulations do not reproduce the observation: a misfit posterior or a misspecified
    simulator. Values near 0.5 are not proof of a correct posterior (an over-wide one passes).

    Attributes:
        simulations: the predictive pairs :math:`(\theta_j, x_j)`, :math:`\theta_j \sim
            q(\theta \mid x_o)`, :math:`x_j \sim p(x \mid \theta_j)` (failed ones dropped and
            counted, as in :func:`simulate`).
        quantiles: per coordinate of :math:`x`, the fraction of predictive :math:`x_j` below
            :math:`x_o`.
        p_values: per coordinate, the two-sided tail probability :math:`2 \min(u, 1 - u)`.
        distance_p: the joint tail probability: the fraction of :math:`x_j` farther from the
            predictive mean than :math:`x_o`, in the Mahalanobis distance of the predictive
            covariance (pseudo-inverse where it is singular).

    """

    simulations: Simulations
    quantiles: np.ndarray
    p_values: np.ndarray
    distance_p: float


def posterior_predictive(
    posterior: Any,
    simulator: Callable[[Any], Any],
    x_o: Any,
    n: int = 1000,
    *,
    seed: int | None = 0,
    workers: int = 1,
    client: Any = None,
    vectorized: bool = False,
) -> PredictiveCheck:
    r"""Posterior predictive check (Gelman, Meng & Stern 1996): simulate at posterior samples
    and ask where the observation falls among the simulations,
    :math:`p(x \mid x_o) = \int p(x \mid \theta)\, q(\theta \mid x_o)\, d\theta`.

    Args:
        posterior: samples ``(n, d)`` (a tensor or array), or a distribution to draw ``n``
            from (e.g. ``npe.posterior(x_o)``).
        simulator: as for :func:`~nfkit.sbi.simulate`.
        x_o: the observation ``x_shape``.
        n: draws when ``posterior`` is a distribution.
        seed: seeds those draws and the simulator (in-process).
        workers: parallel processes, as for :func:`~nfkit.sbi.simulate`.
        client: a dask client, as for :func:`~nfkit.sbi.simulate`.
        vectorized: the simulator takes the whole batch.

    Example:
        >>> import torch
        >>> from nfkit.sbi import tasks
        >>> task = tasks.gaussian_linear(dim=2)
        >>> x_o = torch.zeros(2)
        >>> good = posterior_predictive(0.1 * torch.randn(500, 2), task.simulator, x_o,
        ...                             vectorized=True)
        >>> bad = posterior_predictive(3.0 + 0.1 * torch.randn(500, 2), task.simulator, x_o,
        ...                            vectorized=True)
        >>> good.distance_p > 0.1, bad.distance_p < 0.01
        (True, True)

    """
    if seed is not None:
        torch.manual_seed(seed)
    theta = posterior.sample(n) if hasattr(posterior, "sample") else posterior
    sims = simulate_at(theta, simulator, workers=workers, client=client, vectorized=vectorized)
    x = sims.x.reshape(len(sims), -1).double().numpy()
    obs = torch.as_tensor(x_o).reshape(-1).double().numpy()
    if obs.shape[0] != x.shape[1]:
        raise ValueError(
            f"x_o has {obs.shape[0]} values but the simulations have {x.shape[1]} per row"
        )
    quantiles = (x < obs).mean(0) + 0.5 * (x == obs).mean(0)
    centre = x.mean(0)
    precision = np.linalg.pinv(np.atleast_2d(np.cov(x, rowvar=False)))

    def distance(rows: np.ndarray) -> np.ndarray:
        d = rows - centre
        return np.einsum("ni,ij,nj->n", d, precision, d)

    distance_p = float((distance(x) >= distance(obs[None])[0]).mean())
    return PredictiveCheck(sims, quantiles, 2 * np.minimum(quantiles, 1 - quantiles), distance_p)
