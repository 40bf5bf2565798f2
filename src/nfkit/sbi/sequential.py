r"""Sequential inference for one observation: each round simulates from the current posterior
at :math:`x_o` instead of the prior, so the simulations concentrate where the posterior is.

- NPE's rounds (SNPE-C, Greenberg, Nonnenmacher & Macke 2019): the first round is plain
  maximum likelihood on prior simulations; later rounds train on every simulation so far with
  APT's atomic loss (:class:`~nfkit.sbi.atomic.AtomicLoss`), which corrects for the proposal.
- NLE's rounds (SNL, Papamakarios, Sterratt & Murray 2019): the likelihood
  :math:`q(x \mid \theta)` is the same whichever proposal drew :math:`\theta`, so every round
  refits it by maximum likelihood on all simulations so far; the proposal is the MCMC
  posterior :math:`\propto q(x_o \mid \theta)\,p(\theta)`.

Both go on training the previous round's flow (a warm start, as the ``sbi`` package does).
The result is focused on :math:`x_o`: unlike a single-round NPE it is not amortized.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import Tensor

from nfkit.sbi.estimators import NPE, _Estimator
from nfkit.sbi.simulate import simulate

__all__ = ["Round", "sequential"]

E = TypeVar("E", bound=_Estimator)


@dataclass
class Round:
    """What one round did: simulations kept (and dropped), epochs trained, seconds."""

    simulations: int
    dropped: int
    epochs: int
    seconds: float
    val_loss: float | None = field(default=None)


def sequential(
    estimator: E,
    simulator: Callable[[Any], Any],
    x_o: Any,
    *,
    rounds: int = 4,
    simulations: int = 1000,
    seed: int | None = 0,
    workers: int = 1,
    client: Any = None,
    vectorized: bool = False,
    **fit_options: Any,
) -> E:
    r"""Run ``rounds`` rounds of ``simulations`` simulations each: the first from the prior,
    the others from ``estimator.posterior(x_o)``, training after each.

    Args:
        estimator: an unfitted :class:`~nfkit.sbi.NPE` or :class:`~nfkit.sbi.NLE`.
        simulator: as in :func:`~nfkit.sbi.simulate`.
        x_o: the observation.
        rounds: rounds (1 is plain NPE/NLE).
        simulations: simulations per round (the budget is ``rounds * simulations``).
        seed: seeds each round's draws (``seed + round``).
        workers: parallel processes, as in :func:`~nfkit.sbi.simulate`.
        client: a dask client, as in :func:`~nfkit.sbi.simulate`.
        vectorized: the simulator takes a batch, as in :func:`~nfkit.sbi.simulate`.
        fit_options: go to the estimator's ``fit`` every round.

    Returns:
        The estimator, trained; ``estimator.rounds_`` lists a :class:`Round` per round.

    Example:
        >>> from nfkit.sbi import NPE, sequential, tasks
        >>> task = tasks.gaussian_linear(dim=2)
        >>> _, x_o = task.observation(0)
        >>> npe = NPE(task.prior, layers=1, hidden=[16], epochs=3)
        >>> npe = sequential(npe, task.simulator, x_o, rounds=2, simulations=200, vectorized=True)
        >>> [r.simulations for r in npe.rounds_], npe.sample(5, x=x_o).shape
        ([200, 200], torch.Size([5, 2]))

    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    thetas: list[Tensor] = []
    xs: list[Tensor] = []
    estimator.rounds_ = []
    proposal: Any = estimator.prior
    for index in range(rounds):
        sims = simulate(
            proposal,
            simulator,
            simulations,
            seed=None if seed is None else seed + index,
            workers=workers,
            client=client,
            vectorized=vectorized,
        )
        thetas.append(sims.theta)
        xs.append(sims.x)
        options = dict(fit_options, warm_start=index > 0)
        if isinstance(estimator, NPE) and index > 0:
            options["loss"] = "atomic"
        history = estimator.fit(torch.cat(thetas), torch.cat(xs), **options).history_
        assert history is not None  # fit always records one
        val = history.history.get("val_loss")
        estimator.rounds_.append(
            Round(
                simulations=len(sims),
                dropped=sims.failed + sims.nonfinite,
                epochs=len(history.epoch),
                seconds=history.seconds,
                val_loss=min(val) if val else None,
            )
        )
        proposal = estimator.posterior(x_o)
    return estimator
