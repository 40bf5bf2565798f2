r"""Neural posterior and likelihood estimation: a conditional flow trained by maximum likelihood
on simulated pairs :math:`(\theta, x)`.

NPE learns :math:`q(\theta \mid x)` (Papamakarios & Murray 2016; Greenberg et al. 2019),
amortized over observations; NLE learns :math:`q(x \mid \theta)` (Papamakarios, Sterratt &
Murray 2019, "Sequential Neural Likelihood") and samples the posterior
:math:`\propto q(x_o \mid \theta)\, p(\theta)` by MCMC.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from nfkit.bijectors import Bijector, Chain, Identity, Scale, Shift
from nfkit.data.validate import check_finite_rows
from nfkit.distributions import Conditional, Distribution, TransformedDistribution
from nfkit.flows import FLOWS
from nfkit.nets import ContextEmbedding
from nfkit.sbi.mcmc import slice_sample
from nfkit.sbi.prior import as_prior, support_bijector
from nfkit.train.fit import fit
from nfkit.train.loop import History

__all__ = ["NLE", "NPE"]


def _rows(value: Any, name: str) -> Tensor:
    t = torch.as_tensor(np.asarray(value) if not isinstance(value, Tensor) else value)
    t = t.detach().to(torch.float32)
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2 or t.shape[0] == 0:
        raise ValueError(f"{name} must be rows (n, d), got shape {tuple(t.shape)}")
    check_finite_rows(t, name)
    return t


def _standardizer(values: Tensor) -> Bijector:
    """``y -> s y + m`` with the columns' mean and standard deviation (constant columns: 1)."""
    std = values.std(0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return Chain([Shift(values.mean(0)), Scale(std)])


class _Estimator:
    """What NPE and NLE share: building and training a conditional flow."""

    def __init__(
        self,
        prior: Any,
        *,
        flow: str = "nsf",
        layers: int = 5,
        hidden: Sequence[int] = (50, 50),
        embedding: nn.Module | None = None,
        epochs: int = 500,
        batch_size: int = 200,
        lr: float = 5e-4,
        validation_fraction: float = 0.1,
        patience: int = 20,
        seed: int | None = 0,
        verbose: int = 0,
    ) -> None:
        if flow not in FLOWS:
            raise ValueError(f"flow must be one of {sorted(FLOWS)}, got {flow!r}")
        self.prior = as_prior(prior)
        self.flow, self.layers, self.hidden, self.embedding = flow, layers, hidden, embedding
        self.options = {
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "validation_split": validation_fraction,
            "patience": patience,
            "seed": seed,
            "verbose": verbose,
        }
        self.history_: History | None = None
        self.model_: Distribution | None = None

    def _train(self, target: Tensor, context: Tensor, outer: Bijector, **fit_options: Any) -> None:
        """Fit ``q(target | context)``: a flow in standardized units of ``outer^-1(target)``."""
        if target.shape[0] != context.shape[0]:
            raise ValueError(
                f"theta and x must have one row per simulation: got {target.shape[0]} and "
                f"{context.shape[0]} rows"
            )
        with torch.no_grad():
            inner_values = outer.inverse(target)
        if not bool(torch.isfinite(inner_values).all()):
            raise ValueError("some parameters lie on or outside the prior's support")
        seed = self.options["seed"]
        if seed is not None:
            torch.manual_seed(seed)
        embedding = ContextEmbedding.of(context, self.embedding)
        width = embedding.features(context)
        sizes = {"hidden": list(self.hidden)}
        if self.flow != "cnf":
            sizes["layers"] = self.layers
        base = FLOWS[self.flow](target.shape[1], context=width, **sizes)
        bijector = Chain([outer, _standardizer(inner_values), base.bijector])
        model = Conditional(TransformedDistribution(base.distribution, bijector), embedding)
        options = {**self.options, **fit_options}
        if options["validation_split"] * target.shape[0] < 1:
            options["validation_split"] = 0.0
        self.history_ = fit(model, target, context=context, **options)
        self.model_ = model.eval()

    def _model(self) -> Distribution:
        if self.model_ is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted yet: call fit(theta, x)")
        return self.model_


class NPE(_Estimator):
    r"""Neural posterior estimation: a conditional flow :math:`q(\theta \mid x)` trained on
    simulations, amortized: one fit serves every observation.

    The flow models :math:`u = b^{-1}(\theta)`, where :math:`b` maps :math:`\mathbb{R}^d` onto
    the prior's support (:func:`~nfkit.sbi.prior.support_bijector`), so a bounded prior's
    posterior has no mass outside its box (no leakage, no rejection); :math:`\theta`, after
    :math:`b^{-1}`, and :math:`x` are standardized inside the model. The loss is the
    negative log-likelihood :math:`-\log q(\theta_i \mid x_i)`, with early stopping on a
    held-out tenth.

    Args:
        prior: :math:`p(\theta)`, an nfkit or torch distribution over vectors.
        flow: ``"nsf"`` (default), ``"maf"``, ``"realnvp"``, ``"iaf"`` or ``"cnf"``.
        layers: flow layers.
        hidden: hidden widths of each layer's network.
        embedding: a module mapping (standardized) observations ``(n, *x_shape)`` to summary
            features ``(n, k)``, trained jointly (e.g. a 1-D conv net for time series);
            ``None`` feeds the standardized ``x`` itself.
        epochs: at most this many epochs.
        batch_size: rows per step.
        lr: Adam's learning rate.
        validation_fraction: simulations held out for early stopping.
        patience: epochs without improvement before stopping.
        seed: seeds initialization, the split and the data order.
        verbose: as in :func:`nfkit.fit`.

    References:
        Papamakarios, Murray, "Fast ε-free Inference of Simulation Models with Bayesian
        Conditional Density Estimation", NeurIPS 2016; Greenberg, Nonnenmacher, Macke,
        "Automatic Posterior Transformation for Likelihood-Free Inference", ICML 2019.

    Example:
        >>> import torch
        >>> from nfkit.sbi import NPE, simulate, tasks
        >>> task = tasks.gaussian_linear(dim=2)
        >>> theta, x = simulate(task.prior, task.simulator, 500, vectorized=True)
        >>> post = NPE(task.prior, layers=2, hidden=[16], epochs=5).fit(theta, x)
        >>> post.sample(100, x=x[0]).shape
        torch.Size([100, 2])

    """

    def fit(self, theta: Any, x: Any, **fit_options: Any) -> NPE:
        r"""Train :math:`q(\\theta \\mid x)` on simulated pairs; ``fit_options`` go to
        :func:`nfkit.fit` (``callbacks``, ``checkpoint``, ...).
        """
        self._train(
            _rows(theta, "theta"), _rows(x, "x"), support_bijector(self.prior), **fit_options
        )
        return self

    def sample(self, n: int, *, x: Any) -> Tensor:
        """``n`` posterior samples given one observation ``x`` (``(n, d)``) or a batch of B
        observations (``(n, B, d)``), always inside the prior's support.
        """
        return self._model().sample(n, context=_observation(x))

    def log_prob(self, theta: Any, *, x: Any) -> Tensor:
        r""":math:`\log q(\theta \mid x)` (normalized on the prior's support)."""
        model = self._model()
        with torch.no_grad():
            return model.log_prob(
                torch.as_tensor(theta, dtype=torch.float32), context=_observation(x)
            )


class NLE(_Estimator):
    r"""Neural likelihood estimation: a conditional flow :math:`q(x \mid \theta)` trained on
    simulations; :meth:`sample` draws from :math:`\propto q(x_o \mid \theta) p(\theta)` by
    slice sampling over many chains at once (:func:`~nfkit.sbi.mcmc.slice_sample`).
    Arguments as :class:`NPE` (``embedding`` acts on :math:`\theta`).

    References:
        Papamakarios, Sterratt, Murray, "Sequential Neural Likelihood: Fast Likelihood-free
        Inference with Autoregressive Flows", AISTATS 2019, https://arxiv.org/abs/1805.07226.

    """

    def fit(self, theta: Any, x: Any, **fit_options: Any) -> NLE:
        r"""Train :math:`q(x \\mid \\theta)` on simulated pairs."""
        self._train(_rows(x, "x"), _rows(theta, "theta"), Identity(), **fit_options)
        return self

    def log_likelihood(self, theta: Any, *, x: Any) -> Tensor:
        r""":math:`\log q(x \mid \theta)` for rows of ``theta`` and one observation ``x``."""
        model = self._model()
        theta = torch.as_tensor(theta, dtype=torch.float32)
        x_o = _observation(x).expand(*theta.shape[:-1], -1)
        with torch.no_grad():
            return model.log_prob(x_o, context=theta)

    def log_posterior(self, theta: Tensor, *, x: Any) -> Tensor:
        r"""Unnormalized :math:`\log q(x \mid \theta) + \log p(\theta)`."""
        prior = self.prior.log_prob(theta)
        finite = torch.isfinite(prior)
        out = torch.full_like(prior, -torch.inf)
        if bool(finite.any()):
            out[finite] = self.log_likelihood(theta[finite], x=x) + prior[finite]
        return out

    def sample(
        self,
        n: int,
        *,
        x: Any,
        chains: int = 50,
        warmup: int = 100,
        thin: int = 2,
        seed: int | None = 0,
    ) -> Tensor:
        """``n`` posterior samples given ``x`` by vectorized slice sampling: ``chains``
        chains, started by importance resampling of prior draws, ``warmup`` sweeps dropped,
        every ``thin``-th sweep kept.
        """
        if seed is not None:
            torch.manual_seed(seed)
        x_o = _observation(x)
        start = _resample_start(self.prior, lambda t: self.log_posterior(t, x=x_o), chains)
        per_chain = -(-n // chains)
        draws = slice_sample(
            lambda t: self.log_posterior(t, x=x_o), start, per_chain * thin + warmup
        )
        return draws[warmup::thin].reshape(-1, start.shape[-1])[:n]


def _observation(x: Any) -> Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x, dtype=torch.float32)
    return t[None] if t.ndim == 0 else t


def _resample_start(prior: Distribution, log_target: Any, chains: int) -> Tensor:
    """Chain starts: prior draws resampled by their (likelihood) weights."""
    with torch.no_grad():
        draws = prior.sample(100 * chains)
        log_w = log_target(draws) - prior.log_prob(draws)
        log_w = torch.nan_to_num(log_w, nan=-torch.inf)
        if not bool(torch.isfinite(log_w).any()):
            raise RuntimeError("no prior draw has a finite posterior density under the model")
        index = torch.multinomial(torch.softmax(log_w, 0), chains, replacement=True)
    return draws[index]
