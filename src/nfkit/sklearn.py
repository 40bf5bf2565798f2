r"""``FlowDensityEstimator``: a normalizing flow as a scikit-learn density estimator.

It follows the protocol of ``KernelDensity`` and ``GaussianMixture``: ``fit(X)``,
``score_samples(X)`` (log-density of each row, natural log, in the data's units), ``score(X)``
(their mean, so ``GridSearchCV`` maximises held-out log-likelihood), ``sample(n, random_state)``,
and ``get_params``/``set_params``. Columns are standardized inside the model (the log-density
includes the Jacobian of that map), so no scaler is needed in front of it.

With ``conditional=True`` it learns the conditional density :math:`p(X \mid y)` instead:
``fit(X, y)``, ``score_samples(X, y)``, ``score(X, y)`` and ``sample(n, y=...)``. Without it,
``y`` is ignored as scikit-learn's own density estimators ignore it (its protocol checks pass a
``y`` to every ``fit``), which this page states rather than guessing from the presence of
``y``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils.validation import (
    check_array,
    check_is_fitted,
    check_random_state,
    validate_data,
)

from nfkit._tensors import resolve_device
from nfkit.continuous import fit_flow_matching
from nfkit.data.standardize import Standardization
from nfkit.distributions.base import Distribution, evaluation_mode
from nfkit.distributions.conditional import Conditional
from nfkit.flows import FLOWS
from nfkit.nets import ContextEmbedding
from nfkit.train.data import holdout_rows
from nfkit.train.fit import fit as fit_flow
from nfkit.train.tabular import (
    FlowStart,
    dequantize,
    few_valued_columns,
    starts_at_mixture,
    table_sizes,
)

__all__ = ["FlowDensityEstimator"]


class FlowDensityEstimator(DensityMixin, BaseEstimator):
    r"""Density estimation with a normalizing flow (neural spline flow by default), sklearn style.

    Args:
        flow: ``"maf"``, ``"iaf"``, ``"realnvp"``, ``"nsf"`` or ``"cnf"`` (see
            :mod:`nfkit.flows`); a ``"cnf"`` is one ODE block trained by flow matching, and its
            log-densities carry the ODE solver's tolerance (about 1e-5).
        layers: flow layers (not used by ``"cnf"``); ``None``: from the table's shape.
        hidden: hidden widths of each layer's network; ``None``: from the table's shape.
        epochs: at most this many passes over the data; ``None``: from the table's shape.
        batch_size: rows per step; ``None``: from the table's shape.
        lr: AdamW's learning rate.
        weight_decay: AdamW's decoupled weight decay; ``None``: from the table's shape.
        patience: stop after this many epochs without a better validation NLL (the best
            epoch's weights are kept); ``None``: from the table's shape.
        validation_fraction: rows held out to pick the best epoch (0: keep the last epoch).
        start_components: start the flow at the Gaussian mixture with at most this many
            components that fits the training rows by BIC (its base;
            :class:`~nfkit.train.tabular.FlowStart`), and keep that start when no epoch beats
            it on the validation rows; 1: the data's Gaussian; 0: a standard normal base.
            Unconditional layered flows on standardized columns (not ``"cnf"``, whose flow
            matching needs its base; :func:`~nfkit.train.tabular.starts_at_mixture`).
        dequantize: spread each value of a few-valued column (a flag, a count, a label: at
            most 20 distinct values) uniformly over its gap for training
            (:func:`~nfkit.train.tabular.dequantize`); the score of such a value is then
            about log P(value) - log gap. Which columns: ``dequantized_columns_``.
        standardize: standardize columns inside the model; constant columns get unit scale.
        log_columns: indices of positive columns (concentrations, prices) modelled on the log
            scale, :math:`\log x_j`, inside the model; scores and samples stay in data units
            (the log-density includes :math:`-\sum_j \log x_j`).
        random_state: seed for initialisation, data order and the validation split.
        verbose: 0 silent, 1 progress bar, 2 one line per epoch.
        device: where to train (``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``); the fitted
            ``flow_`` is moved back to the CPU, so the estimator pickles and scores anywhere.
        conditional: learn :math:`p(X \mid y)` from ``fit(X, y)`` (``y``: one value or a row
            of values per sample, standardized inside the model); scoring and sampling then
            take ``y`` too.

    The defaults that are ``None`` follow :func:`~nfkit.train.tabular.table_sizes` (shared with
    the command), chosen from the number of rows and columns.

    Attributes:
        flow_: the trained :class:`~nfkit.distributions.Distribution`, in data units (CPU).
        history_: the :class:`~nfkit.History` of training.
        n_features_in_: number of columns seen in ``fit``.
        sizes_: the :class:`~nfkit.train.tabular.TableSizes` for this table.
        start_: the :class:`~nfkit.train.tabular.FlowStart` (``components``: of the mixture
            chosen; ``kept_start``: it beat every epoch on the validation rows and was kept,
            the table being too small or too plain for a flow to do better), or ``None``.
        dequantized_columns_: indices of the columns dequantized for training.

    Example:
        >>> from sklearn.datasets import make_moons
        >>> from nfkit.sklearn import FlowDensityEstimator
        >>> X = make_moons(500, noise=0.05, random_state=0)[0]
        >>> est = FlowDensityEstimator(layers=2, hidden=(32,), epochs=5, random_state=0).fit(X)
        >>> est.score_samples(X[:3]).shape, est.sample(4, random_state=0).shape
        ((3,), (4, 2))

        A conditional density, p(x | label):

        >>> X, labels = make_moons(500, noise=0.05, random_state=0)
        >>> cond = FlowDensityEstimator(
        ...     layers=2, hidden=(32,), epochs=5, random_state=0, conditional=True
        ... ).fit(X, labels)
        >>> cond.score_samples(X[:3], labels[:3]).shape, cond.sample(4, y=[1.0]).shape
        ((3,), (4, 2))

    """

    def __init__(
        self,
        flow: str = "nsf",
        *,
        layers: int | None = None,
        hidden: Sequence[int] | None = None,
        epochs: int | None = None,
        batch_size: int | None = None,
        lr: float = 1e-3,
        weight_decay: float | None = None,
        patience: int | None = None,
        validation_fraction: float = 0.1,
        start_components: int = 10,
        dequantize: bool = True,
        standardize: bool = True,
        log_columns: Sequence[int] = (),
        random_state: int | None = None,
        verbose: int = 0,
        device: str = "cpu",
        conditional: bool = False,
    ) -> None:
        self.flow = flow
        self.layers = layers
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.start_components = start_components
        self.dequantize = dequantize
        self.standardize = standardize
        self.log_columns = log_columns
        self.random_state = random_state
        self.verbose = verbose
        self.device = device
        self.conditional = conditional

    def _y(self, y: Any, rows: int | None) -> np.ndarray | None:
        """``y`` as context rows (a conditional estimator), else ``None``."""
        if not self.conditional:
            return None
        if y is None:
            raise ValueError("this estimator is conditional (conditional=True): pass y")
        y = check_array(y, ensure_2d=False, dtype=[np.float64, np.float32])
        y = y.reshape(len(y), -1) if y.ndim == 1 else y
        if rows is not None and y.shape[0] not in (1, rows):
            raise ValueError(f"y has {y.shape[0]} rows for {rows} rows of X")
        width = getattr(self, "n_context_features_", y.shape[1])
        if y.shape[1] != width:
            raise ValueError(f"y has {y.shape[1]} columns; the estimator was fitted with {width}")
        return np.broadcast_to(y, (rows or y.shape[0], width)).astype(np.float64)

    def fit(self, X: Any, y: Any = None) -> FlowDensityEstimator:  # noqa: N803
        """Learn the density of the rows of ``X`` (with ``conditional=True``, of ``X`` given
        ``y``; otherwise ``y`` is ignored).
        """
        X = validate_data(self, X, dtype=[np.float64, np.float32])  # noqa: N806
        context = self._y(y, X.shape[0])
        if self.flow not in FLOWS:
            raise ValueError(f"flow must be one of {sorted(FLOWS)}, got {self.flow!r}")
        if X.shape[0] < 2:
            raise ValueError(f"got 1 sample (n_samples = {X.shape[0]}); a density needs >= 2")
        if self.start_components < 0:
            raise ValueError(f"start_components must be 0 or more, got {self.start_components}")
        seed = int(check_random_state(self.random_state).randint(0, 2**31 - 1))
        gaps = few_valued_columns(X) if self.dequantize else {}
        self.dequantized_columns_ = sorted(gaps)
        X = dequantize(X, gaps, seed) if gaps else X  # noqa: N806
        logs = [int(j) for j in self.log_columns]
        if any(not 0 <= j < X.shape[1] for j in logs):
            raise ValueError(f"log_columns {logs} name columns outside X's {X.shape[1]}")
        standard = None
        if self.standardize or logs:
            names = [f"column {j}" for j in range(X.shape[1])]
            standard = Standardization.of(  # a constant column keeps unit scale
                X, names, logs, constant_ok=True, scale=self.standardize
            )
        rows = (standard.apply(X) if standard else X).astype(np.float32)
        sizes = table_sizes(*X.shape)
        self.sizes_ = sizes
        torch.manual_seed(seed)
        build: dict[str, Any] = {} if self.hidden is None else {"hidden": list(self.hidden)}
        train = fit_flow
        if self.flow == "cnf":  # the ODE field keeps its own default size
            train = fit_flow_matching
        else:
            build = {"hidden": list(sizes.hidden), **build}
            build["layers"] = sizes.layers if self.layers is None else self.layers
        if context is not None:
            self.n_context_features_ = context.shape[1]
            build["context"] = context.shape[1]
        flow = FLOWS[self.flow](X.shape[1], **build)
        kw: dict[str, Any] = {}
        if context is not None:
            context = context.astype(np.float32)
        held = round(self.validation_fraction * X.shape[0])
        if self.validation_fraction and 1 <= held < X.shape[0]:
            rows, context, kw["validation_data"] = holdout_rows(
                rows, context, self.validation_fraction, seed
            )
        start = None
        if context is not None:
            values = torch.as_tensor(context, dtype=torch.get_default_dtype())
            flow = Conditional(flow, ContextEmbedding.of(values))
        elif starts_at_mixture(
            self.flow, self.start_components, conditional=False, standardized=self.standardize
        ):
            start = FlowStart(flow, rows, kw.get("validation_data"), self.start_components, seed)
            flow = start.model
        flow = flow.to(resolve_device(self.device))
        self.history_ = train(
            flow,
            rows,
            lr=self.lr,
            optimizer="adamw",
            seed=seed,
            verbose=self.verbose,
            context=context,
            **sizes.fit_options(
                epochs=self.epochs,
                batch_size=self.batch_size,
                patience=self.patience,
                weight_decay=self.weight_decay,
            ),
            **kw,
        )
        val = self.history_.history.get("val_loss")
        if start is not None:
            start.keep_if_better(min(val) if val else None)
        self.start_ = start
        flow = flow.cpu()
        model = standard.bijector()(flow) if standard else flow
        # Trained in float32 for speed; scored in float64, so that a row's log-density does not
        # depend on which other rows share its batch (scikit-learn checks this to 1e-7).
        self.flow_: Distribution = model.to(torch.float64).eval()
        return self

    def score_samples(self, X: Any, y: Any = None) -> np.ndarray:  # noqa: N803
        """Log-density log p(x) (or log p(x | y)) of each row (natural log, data units),
        computed in float64.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])  # noqa: N806
        context = self._y(y, X.shape[0])
        with evaluation_mode(self.flow_):
            out = self.flow_.log_prob(
                torch.as_tensor(X, dtype=torch.float64),
                context=None if context is None else torch.as_tensor(context),
            )
        return out.numpy()

    def score(self, X: Any, y: Any = None) -> float:  # noqa: N803
        """Mean log-density of the rows of ``X`` (higher is better)."""
        return float(np.mean(self.score_samples(X, y)))

    def sample(self, n_samples: int = 1, random_state: Any = None, y: Any = None) -> np.ndarray:
        """Draw ``n_samples`` rows from the fitted density; a conditional estimator draws them
        given ``y``: one row of ``y`` gives ``(n_samples, d)``, B rows ``(n_samples, B, d)``.
        """
        check_is_fitted(self)
        context = self._y(y, None)
        seed = int(check_random_state(random_state).randint(0, 2**31 - 1))
        generator_state = torch.get_rng_state()
        torch.manual_seed(seed)
        try:
            if context is None:
                out = self.flow_.sample(n_samples)
            else:
                given = torch.as_tensor(context)
                out = self.flow_.sample(n_samples, context=given[0] if len(given) == 1 else given)
        finally:
            torch.set_rng_state(generator_state)
        return out.numpy().astype(np.float64)
