r"""Neural posterior and likelihood estimation: a conditional flow trained by maximum likelihood
on simulated pairs :math:`(\theta, x)`.

NPE learns :math:`q(\theta \mid x)` (Papamakarios & Murray 2016; Greenberg et al. 2019),
amortized over observations; NLE learns :math:`q(x \mid \theta)` (Papamakarios, Sterratt &
Murray 2019, "Sequential Neural Likelihood") and samples the posterior
:math:`\propto q(x_o \mid \theta)\, p(\theta)` by MCMC.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from nfkit.bijectors import Bijector, Chain, Identity, Scale, Shift
from nfkit.data.validate import check_finite_rows
from nfkit.distributions import Conditional, Distribution, TransformedDistribution
from nfkit.flows import FLOWS, check_mixing
from nfkit.io import load_with_header, save
from nfkit.nets import ContextEmbedding
from nfkit.sbi.atomic import AtomicLoss
from nfkit.sbi.mcmc import slice_sample
from nfkit.sbi.prior import as_prior, support_bijector
from nfkit.train.fit import fit
from nfkit.train.loop import History

__all__ = ["NLE", "NPE", "Posterior", "SavedEstimator"]


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
        mixing: str = "reverse",
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
        check_mixing(mixing)
        self.flow, self.layers, self.hidden, self.embedding = flow, layers, hidden, embedding
        self.mixing = mixing
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
        self._x_ndim = 1  # dims of one observation (more: a batch of observations)

    def _train(
        self,
        target: Tensor,
        context: Tensor,
        outer: Bijector,
        warm_start: bool = False,
        **fit_options: Any,
    ) -> None:
        """Fit ``q(target | context)``: a flow in standardized units of ``outer^-1(target)``;
        ``warm_start`` goes on training the current model (its standardization included).
        """
        if target.shape[0] != context.shape[0]:
            raise ValueError(
                f"theta and x must have one row per simulation: got {target.shape[0]} and "
                f"{context.shape[0]} rows"
            )
        with torch.no_grad():
            inner_values = outer.inverse(target)
        seed = self.options["seed"]
        if seed is not None:
            torch.manual_seed(seed)
        model = self.model_ if warm_start and self.model_ is not None else None
        if model is None:
            embedding = ContextEmbedding.of(context, self.embedding)
            width = embedding.features(context)
            sizes = {"hidden": list(self.hidden)}
            if self.flow != "cnf":
                sizes.update(layers=self.layers, mixing=self.mixing)
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

    def sample(self, n: int, *, x: Any) -> Tensor:
        raise NotImplementedError

    def _log_posterior(self, theta: Tensor, x: Tensor) -> Tensor:
        raise NotImplementedError

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted estimator to a model file (:func:`nfkit.save`'s format, no
        pickle): its flow, its settings and, when it is an nfkit distribution, the prior (a
        torch prior is given again to :meth:`load`).
        """
        settings = {
            "estimator": type(self).__name__,
            "flow": self.flow,
            "layers": self.layers,
            "hidden": list(self.hidden),
            "mixing": self.mixing,
            "options": self.options,
            "x_ndim": self._x_ndim,
            "support": getattr(self, "support", None),
        }
        try:
            return save(SavedEstimator(self._model(), self.prior), path, {"sbi": settings})
        except TypeError:  # a torch prior: the flow is saved, the prior is asked for at load
            return save(SavedEstimator(self._model()), path, {"sbi": settings})

    @classmethod
    def load(cls, path: str | os.PathLike, prior: Any = None) -> Any:
        """Read a file :meth:`save` wrote; ``prior`` is needed when the file has none."""
        saved, header = load_with_header(path)
        settings = header["metadata"].get("sbi")
        if not isinstance(saved, SavedEstimator) or settings is None:
            raise ValueError(f"{path} holds no NPE or NLE (use nfkit.load for a plain model)")
        kind = {"NPE": NPE, "NLE": NLE}[settings["estimator"]]
        if cls is not _Estimator and kind is not cls:
            raise ValueError(f"{path} holds an {kind.__name__}, not an {cls.__name__}")
        prior = prior if prior is not None else saved.prior
        if prior is None:
            raise ValueError(
                f"{path} was saved with a torch prior, which a file cannot hold: pass prior="
            )
        options = dict(settings["options"])
        options["validation_fraction"] = options.pop("validation_split")
        extra = {} if settings["support"] is None else {"support": settings["support"]}
        estimator = kind(
            prior,
            flow=settings["flow"],
            layers=settings["layers"],
            hidden=settings["hidden"],
            mixing=settings.get("mixing", "reverse"),  # files before mixing= had reversals
            **options,
            **extra,
        )
        estimator.model_ = saved.model.eval()
        estimator._x_ndim = settings["x_ndim"]
        return estimator

    def posterior(self, x: Any) -> Posterior:
        r"""The posterior at one observation as an nfkit distribution over :math:`\theta`
        (``sample``, ``log_prob``); a sequential round's proposal, a target for
        :mod:`nfkit.reweight`.
        """
        return Posterior(self, _observation(x))


class SavedEstimator(Distribution):
    """What an NPE or NLE model file holds: the conditional flow and, if it could be saved,
    the prior. Densities and samples are the flow's.
    """

    def __init__(self, model: Distribution, prior: Distribution | None = None) -> None:
        super().__init__(model.batch_shape, model.event_shape)
        self.model, self.prior = model, prior

    def _rsample(self, shape: torch.Size, context: Tensor | None) -> Tensor:
        return self.model._rsample(shape, context)

    def _log_prob(self, value: Tensor, context: Tensor | None) -> Tensor:
        return self.model._log_prob(value, context)


class Posterior(Distribution):
    r""":math:`q(\theta \mid x_o)` of a fitted :class:`NPE` or :class:`NLE` at one observation
    :math:`x_o`. ``log_prob`` is normalized for NPE and unnormalized
    (:math:`\log q(x_o \mid \theta) + \log p(\theta)`) for NLE; sampling runs the
    estimator's own ``sample`` (a flow for NPE, MCMC for NLE). Not differentiable.
    """

    def __init__(self, estimator: _Estimator, x: Tensor) -> None:
        super().__init__(event_shape=estimator.prior.event_shape)
        self.estimator = estimator
        self.register_buffer("x", x)

    def _rsample(self, shape: torch.Size, context: Tensor | None) -> Tensor:
        with torch.no_grad():
            draws = self.estimator.sample(max(shape.numel(), 1), x=self.x)
        return draws[: shape.numel()].reshape(*shape, *self.event_shape)

    def _log_prob(self, value: Tensor, context: Tensor | None) -> Tensor:
        return self.estimator._log_posterior(value, self.x)


class NPE(_Estimator):
    r"""Neural posterior estimation: a conditional flow :math:`q(\theta \mid x)` trained on
    simulations, amortized: one fit serves every observation.

    A bounded prior's posterior never has mass outside the prior's support, in one of two ways
    (``support=``):

    - ``"reject"`` (default): the flow models :math:`\theta` itself; samples outside the
      support are rejected (the acceptance rate of the last call is ``acceptance_``, and a
      rate under 1e-4 is an error), and ``log_prob`` is renormalized by the acceptance rate at
      that observation (estimated from 10,000 draws, cached per observation). This is the
      better default on the benchmark: on two_moons at 1,000 simulations it gives C2ST 0.58
      against 0.70 for the transform (mean of 3 observations; equal on slcp and
      gaussian_mixture).
    - ``"transform"``: the flow models :math:`u = b^{-1}(\theta)`, where :math:`b` maps
      :math:`\mathbb{R}^d` onto the support (:func:`~nfkit.sbi.prior.support_bijector`): no
      rejection, exact normalization; better when the posterior sits against a bound.

    :math:`\theta` (after :math:`b^{-1}`) and :math:`x` are standardized inside the model. The
    loss is the negative log-likelihood :math:`-\log q(\theta_i \mid x_i)`, with early
    stopping on a held-out tenth.

    Args:
        prior: :math:`p(\theta)`, an nfkit or torch distribution over vectors.
        support: ``"reject"`` or ``"transform"`` (above).
        flow: ``"nsf"`` (default), ``"maf"``, ``"realnvp"``, ``"iaf"`` or ``"cnf"``.
        layers: flow layers.
        hidden: hidden widths of each layer's network.
        mixing: between layers, ``"reverse"`` (default) or ``"lu"`` (a learned linear map
            started at the identity, as the `sbi` package's LU layers). LU was measured and
            not made the default: mean C2ST over the 10 observations, reversals / LU,
            bernoulli_glm 0.889 / 0.865 at 1,000 simulations but 0.699 / 0.712 at 10,000,
            gaussian_linear 0.678 / 0.732 and 0.573 / 0.582 (LU stopped earlier, and a
            patience of 50 gave the same best epoch); slcp at 1,000: LU 0.953.
        embedding: a module mapping (standardized) observations ``(n, *x_shape)`` to summary
            features ``(n, k)``, trained jointly (e.g. a 1-D conv net for time series);
            ``None`` (default, as in the `sbi` package) feeds the standardized ``x`` itself.
            An MLP by default was measured and rejected: at 1,000 simulations, mean C2ST over
            5 observations 0.593 -> 0.639 on two_moons and 0.902 -> 0.928 on bernoulli_glm
            (:class:`~nfkit.nets.MLP` of [50, 50] to 20 features); pass one for long
            observations that need compressing.
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

    def __init__(self, prior: Any, *, support: str = "reject", **options: Any) -> None:
        if support not in ("reject", "transform"):
            raise ValueError(f"support must be 'reject' or 'transform', got {support!r}")
        super().__init__(prior, **options)
        self.support = support
        self.acceptance_: float | None = None
        self._log_acceptance: dict[bytes, Tensor] = {}

    def fit(
        self,
        theta: Any,
        x: Any,
        *,
        loss: str = "mle",
        atoms: int = 10,
        warm_start: bool = False,
        **fit_options: Any,
    ) -> NPE:
        r"""Train :math:`q(\theta \mid x)` on simulated pairs.

        Args:
            theta: ``(n, d)`` parameters.
            x: ``(n, *x_shape)`` their simulations.
            loss: ``"mle"`` when ``theta`` was drawn from the prior; ``"atomic"`` (APT's
                loss, :class:`~nfkit.sbi.atomic.AtomicLoss`) when some of it was drawn from
                another proposal (a sequential round): it recovers the posterior under the
                prior whatever the proposal.
            atoms: atoms per row of the atomic loss.
            warm_start: go on training the current flow instead of a new one.
            fit_options: go to :func:`nfkit.fit` (``callbacks``, ``checkpoint``, ...).

        """
        if loss not in ("mle", "atomic"):
            raise ValueError(f"loss must be 'mle' or 'atomic', got {loss!r}")
        if loss == "atomic":
            fit_options["objective"] = AtomicLoss(self.prior, atoms)
        outer = support_bijector(self.prior) if self.support == "transform" else Identity()
        theta, x = _rows(theta, "theta"), _rows(x, "x")
        outside = ~torch.isfinite(self.prior.log_prob(theta)) | ~torch.isfinite(
            outer.inverse(theta)
        ).all(-1)
        if bool(outside.any()):
            rows = outside.nonzero()[:5, 0].tolist()
            raise ValueError(
                f"{int(outside.sum())} parameter rows lie on or outside the prior's support "
                f"(first: {rows})"
            )
        self._x_ndim = x.ndim - 1
        self._log_acceptance = {}
        self._train(theta, x, outer, warm_start, **fit_options)
        return self

    def sample(self, n: int, *, x: Any) -> Tensor:
        """``n`` posterior samples given one observation ``x`` (``(n, d)``) or a batch of B
        observations (``(n, B, d)``), always inside the prior's support.
        """
        model, context = self._model(), _observation(x)
        if self.support == "transform":
            return model.sample(n, context=context)
        if context.ndim > self._x_ndim:
            return torch.stack([self._inside(n, c) for c in context], 1)
        return self._inside(n, context)

    def _inside(self, n: int, context: Tensor) -> Tensor:
        """``n`` draws at one observation that fall inside the prior's support."""
        kept, drawn, accepted = [], 0, 0
        while accepted < n:
            draws = self._model().sample(max(2 * (n - accepted), 1000), context=context)
            inside = draws[torch.isfinite(self.prior.log_prob(draws))]
            kept.append(inside)
            drawn, accepted = drawn + draws.shape[0], accepted + inside.shape[0]
            if accepted < 1e-4 * drawn:
                raise RuntimeError(
                    f"only {accepted} of {drawn} posterior draws fall inside the prior's "
                    "support: the flow has leaked out of it; try NPE(support='transform')"
                )
        self.acceptance_ = accepted / drawn
        return torch.cat(kept)[:n]

    def _log_posterior(self, theta: Tensor, x: Tensor) -> Tensor:
        return self.log_prob(theta, x=x)

    def log_prob(self, theta: Any, *, x: Any) -> Tensor:
        r""":math:`\log q(\theta \mid x)`, normalized on the prior's support (``-inf``
        outside it).
        """
        model, context = self._model(), _observation(x)
        theta = torch.as_tensor(theta, dtype=torch.float32)
        with torch.no_grad():
            lp = model.log_prob(theta, context=context)
            lp = lp.masked_fill(~torch.isfinite(self.prior.log_prob(theta)), -torch.inf)
            if self.support == "transform":
                return lp
            if context.ndim > self._x_ndim:  # one observation per row of theta
                return lp - torch.stack([self._log_accepted(c) for c in context])
            return lp - self._log_accepted(context)

    def _log_accepted(self, context: Tensor) -> Tensor:
        """Log of the posterior mass inside the support at one observation (10,000 draws, from
        a fixed seed: the same density every call).
        """
        key = context.numpy().tobytes()
        if key not in self._log_acceptance:
            with torch.random.fork_rng():
                torch.manual_seed(0)
                draws = self._model().sample(10_000, context=context)
            inside = torch.isfinite(self.prior.log_prob(draws)).float().mean()
            self._log_acceptance[key] = inside.clamp_min(1e-4).log()
        return self._log_acceptance[key]


class NLE(_Estimator):
    r"""Neural likelihood estimation: a conditional flow :math:`q(x \mid \theta)` trained on
    simulations; :meth:`sample` draws from :math:`\propto q(x_o \mid \theta) p(\theta)` by
    slice sampling over many chains at once (:func:`~nfkit.sbi.mcmc.slice_sample`).
    Arguments as :class:`NPE` (``embedding`` acts on :math:`\theta`); LU mixing did not
    help here either (bernoulli_glm at 1,000 simulations, mean C2ST over observations 1-3:
    0.774 with reversals, 0.786 with LU layers started at a random rotation).

    References:
        Papamakarios, Sterratt, Murray, "Sequential Neural Likelihood: Fast Likelihood-free
        Inference with Autoregressive Flows", AISTATS 2019, https://arxiv.org/abs/1805.07226.

    """

    def fit(self, theta: Any, x: Any, *, warm_start: bool = False, **fit_options: Any) -> NLE:
        r"""Train :math:`q(x \mid \theta)` on simulated pairs (from the prior or any
        proposal: the likelihood does not depend on where :math:`\theta` came from);
        ``warm_start`` goes on training the current flow.
        """
        self._train(_rows(x, "x"), _rows(theta, "theta"), Identity(), warm_start, **fit_options)
        return self

    def log_likelihood(self, theta: Any, *, x: Any) -> Tensor:
        r""":math:`\log q(x \mid \theta)` for rows of ``theta`` and one observation ``x``."""
        model = self._model()
        theta = torch.as_tensor(theta, dtype=torch.float32)
        x_o = _observation(x).expand(*theta.shape[:-1], -1)
        with torch.no_grad():
            return model.log_prob(x_o, context=theta)

    def _log_posterior(self, theta: Tensor, x: Tensor) -> Tensor:
        return self.log_posterior(theta, x=x)

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
        chains: int = 100,
        warmup: int = 50,
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
