r"""Training against an energy: ``fit_energy(flow, log_prob_fn, method=...)``.

``method="reverse_kl"`` (the default) minimizes the reverse Kullback–Leibler divergence from
samples of the flow, optionally mixed with maximum likelihood on whatever samples exist (the
Boltzmann-generator loss of Noé et al. 2019, Science 365, eq. 3–5); ``"fab"`` minimizes the
mass-covering :math:`\alpha=2` divergence through annealed importance sampling
(:mod:`nfkit.train.fab`); ``"forward_kl"`` is maximum likelihood on samples of the target.

With :math:`x = f_\theta(z)`, :math:`z \sim \mu_0` (reparametrized), and
:math:`\log\tilde p = -u/T`,

.. math:: J_{KL}(\theta) = E_{z}\big[\log q_\theta(x) - \log\tilde p(x)\big]
          = \mathrm{KL}(q_\theta \,\|\, p) - \log Z,

so the reported loss plus :math:`\log Z` is the KL divergence, and its minimum is
:math:`-\log Z`. The mixed loss is :math:`w_{KL} J_{KL} + w_{ML} J_{ML}` with
:math:`J_{ML} = -E_{x \sim \text{data}}[\log q_\theta(x)]`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from nfkit.annealing import AnnealedImportanceSampler
from nfkit.distributions.base import Distribution
from nfkit.reweight import kish_ess
from nfkit.train.callbacks import NonFiniteLossError
from nfkit.train.fab import FABObjective, ObjectiveState
from nfkit.train.fit import History, fit

__all__ = ["EnergyObjective", "fit_energy", "tempered"]

METHODS = ("reverse_kl", "fab", "forward_kl")


def tempered(
    log_prob_fn: Callable[[Tensor], Tensor], temperature: float, max_energy: float | None
) -> Callable[[Tensor], Tensor]:
    r""":math:`\log\tilde p(x) / T`, with energies :math:`E = -\log\tilde p / T` above
    :math:`E_{max}` softened to :math:`E_{max} + \log(1 + E - E_{max})` (Noé et al. 2019,
    Methods) when ``max_energy`` is given.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")

    def log_target(x: Tensor) -> Tensor:
        log_p = log_prob_fn(x).to(x.dtype) / temperature
        if max_energy is None:
            return log_p
        excess = torch.relu(-log_p - max_energy)
        return log_p + excess - torch.log1p(excess)

    return log_target


class EnergyObjective:
    r"""The reverse-KL (plus optional maximum-likelihood) loss of one training step.

    Energies can be huge where the flow strays: samples whose target or flow log-density is
    not finite are left out of the step (and counted in ``nonfinite``), and with
    ``max_energy`` the energy :math:`E = -\log\tilde p` above :math:`E_{max}` is softened to
    :math:`E_{max} + \log(1 + E - E_{max})` (Noé et al. 2019, Methods). A step where every
    sample is non-finite raises :class:`~nfkit.train.NonFiniteLossError`.

    ``pop_metrics()`` returns, for the epoch so far, the mean normalized Kish ESS of the
    training batches and the number of samples left out.
    """

    def __init__(
        self,
        log_prob_fn: Callable[[Tensor], Tensor],
        samples: int,
        *,
        temperature: float = 1.0,
        kl_weight: float = 1.0,
        ml_weight: float = 1.0,
        max_energy: float | None = None,
    ) -> None:
        if samples < 1 or temperature <= 0:
            raise ValueError(f"need samples >= 1 and temperature > 0, got {samples}, {temperature}")
        self.log_prob_fn, self.samples, self.temperature = log_prob_fn, samples, temperature
        self.kl_weight, self.ml_weight, self.max_energy = kl_weight, ml_weight, max_energy
        self.log_target = tempered(log_prob_fn, temperature, max_energy)
        self._ess: list[float] = []
        self._nonfinite = 0

    def __call__(self, distribution: Distribution, batch: Tensor | None, context: Any) -> Tensor:
        x, log_q = distribution.sample_and_log_prob((self.samples,))
        log_p = self.log_target(x)
        finite = torch.isfinite(log_p) & torch.isfinite(log_q)
        if not bool(finite.all()):
            kept = int(finite.sum())
            self._nonfinite += self.samples - kept
            if kept == 0:
                raise NonFiniteLossError(
                    f"all {self.samples} samples of this step have a non-finite energy or flow "
                    "log-density; lower the lr, pass max_energy=..., or start from a flow "
                    "closer to the target"
                )
            # Evaluate again on the finite rows only, so no NaN reaches the backward pass.
            x, log_q = x[finite], log_q[finite]
            log_p = self.log_target(x)
        self._ess.append(kish_ess((log_p - log_q).detach()))
        loss = self.kl_weight * (log_q - log_p).mean()
        if batch is not None and self.ml_weight:
            loss = loss - self.ml_weight * distribution._log_prob(batch, context).mean()
        return loss

    def pop_metrics(self) -> dict[str, float]:
        """The epoch's mean training-batch ESS and count of left-out samples; resets both."""
        ess = sum(self._ess) / len(self._ess) if self._ess else math.nan
        metrics = {"ess": ess, "nonfinite": float(self._nonfinite)}
        self._ess, self._nonfinite = [], 0
        return metrics


def fit_energy(
    distribution: Distribution,
    log_prob_fn: Callable[[Tensor], Tensor],
    *,
    method: str = "reverse_kl",
    epochs: int = 10,
    steps_per_epoch: int = 100,
    batch_size: int = 256,
    temperature: float = 1.0,
    data: Any = None,
    kl_weight: float = 1.0,
    ml_weight: float = 1.0,
    max_energy: float | None = None,
    ais: AnnealedImportanceSampler | None = None,
    replay: bool = True,
    replay_batches: int = 4,
    buffer_size: int | None = None,
    **fit_options: Any,
) -> History:
    r"""Train a flow to sample :math:`p \propto \exp(\text{log\_prob\_fn}/T)`.

    Args:
        distribution: the flow (any distribution with reparametrized
            ``sample_and_log_prob``, including a
            :class:`~nfkit.stochastic.StochasticNormalizingFlow` for reverse KL; FAB needs a
            tractable ``log_prob``).
        log_prob_fn: :math:`\log\tilde p`, points ``(N, D)`` to ``(N,)``, differentiable
            (e.g. a :class:`nfkit.targets.Target`, or ``lambda x: -energy(x)``).
        method: ``"reverse_kl"`` (:math:`\mathrm{KL}(q\|p)` from the flow's samples, plus
            maximum likelihood on ``data`` if given: mode-seeking, cheap per step);
            ``"fab"`` (Midgley et al. 2023: the :math:`\alpha=2` divergence through AIS
            towards :math:`p^2/q`, mass-covering, several target evaluations per sample; see
            :mod:`nfkit.train.fab`); ``"forward_kl"`` (maximum likelihood on ``data``,
            samples of the target, e.g. from MD).
        epochs: epochs; without ``data`` an epoch is ``steps_per_epoch`` steps.
        steps_per_epoch: steps per epoch when there is no data.
        batch_size: flow samples (reverse KL) or AIS chains (FAB) per step, and data rows per
            step with ``data``.
        temperature: :math:`T`; the target is :math:`\tilde p^{1/T}`.
        data: samples of the target, shape ``(N, D)``: with reverse KL each step adds
            ``ml_weight`` times their negative log-likelihood and an epoch is a pass over
            them; ``forward_kl`` trains on them alone.
        kl_weight: weight of the reverse-KL term.
        ml_weight: weight of the maximum-likelihood term (with ``data``).
        max_energy: soften energies above this value (see :func:`tempered`).
        ais: FAB's annealing, an :class:`~nfkit.annealing.AnnealedImportanceSampler`
            (default: 2 intermediate densities, one HMC step of 5 leapfrog steps each, step
            sizes adapted to 0.65 acceptance).
        replay: FAB with the prioritized replay buffer (the paper's better variant).
        replay_batches: FAB steps per AIS run with the buffer.
        buffer_size: the buffer's capacity (default ``100 * batch_size``), filled to a tenth
            before the first step.
        **fit_options: any other keyword of :func:`nfkit.fit`, meaning the same there: ``lr``
            (Adam's, 1e-3), ``lr_schedule``, ``clip_grad_norm``, ``seed`` (seeds the flow's
            samples; needed for ``checkpoint``), ``verbose``, ``callbacks``, ``checkpoint`` and
            ``resume`` (an interrupted run ends as an uninterrupted one; FAB's buffer and step
            sizes are in the checkpoint), ``patience``, and ``validation_data``: exact target
            samples, if any, whose NLL under the flow is logged per epoch as ``val_loss`` (a
            forward-KL check of mode coverage).

    Returns:
        A :class:`History` with ``loss`` and ``lr`` per epoch, and: for reverse KL ``ess``
        (mean normalized Kish ESS of the epoch's batches; the loss plus :math:`\log Z` is
        :math:`\mathrm{KL}(q\|p)`) and ``nonfinite``; for FAB ``ess`` (the flow's own
        samples), ``ais_ess``, ``acceptance`` and ``nonfinite`` (see
        :class:`~nfkit.train.fab.FABObjective`).

    Example:
        >>> import torch, nfkit, nfkit.distributions as nfd, nfkit.bijectors as nfb
        >>> _ = torch.manual_seed(0)
        >>> base = nfd.MultivariateNormalDiag(loc=[0.0, 0.0])
        >>> flow = nfb.Shift(torch.nn.Parameter(torch.zeros(2)))(base)
        >>> target = lambda x: -0.5 * (x - 3.0).square().sum(-1)
        >>> h = nfkit.fit_energy(flow, target, epochs=3, steps_per_epoch=50, lr=0.1, verbose=0)
        >>> flow.bijector.shift.detach().round(), round(h.history["ess"][-1], 2)
        (tensor([3., 3.]), 1.0)

    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "forward_kl":
        if data is None:
            raise ValueError("method='forward_kl' needs data=: samples of the target")
        return fit(distribution, data, epochs=epochs, batch_size=batch_size, **fit_options)
    if method == "fab":
        if data is not None:
            raise ValueError(
                "method='fab' draws its own samples; pass data= to 'reverse_kl' (as a "
                "maximum-likelihood term) or 'forward_kl'"
            )
        sampler = ais if ais is not None else AnnealedImportanceSampler(2)
        objective: Any = FABObjective(
            tempered(log_prob_fn, temperature, max_energy),
            batch_size,
            sampler,
            replay=replay,
            replay_batches=replay_batches,
            buffer_size=buffer_size,
        )
        # First among the extra callbacks: a resumed run finds its state at the same place.
        callbacks = [ObjectiveState(objective), *fit_options.pop("callbacks", ())]
        return fit(
            distribution,
            None,
            epochs=epochs,
            batch_size=batch_size,
            objective=objective,
            steps_per_epoch=steps_per_epoch,
            callbacks=callbacks,
            **fit_options,
        )
    objective = EnergyObjective(
        log_prob_fn,
        batch_size,
        temperature=temperature,
        kl_weight=kl_weight,
        ml_weight=ml_weight,
        max_energy=max_energy,
    )
    return fit(
        distribution,
        data,
        epochs=epochs,
        batch_size=batch_size,
        objective=objective,
        steps_per_epoch=None if data is not None else steps_per_epoch,
        **fit_options,
    )
