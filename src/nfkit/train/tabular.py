r"""Defaults for density estimation on tables, shared by the scikit-learn estimator and the
command: model size and training budget chosen from the number of rows and columns, a base
that starts the flow at the Gaussian mixture that fits the data by BIC (the data's Gaussian
when one component wins), keeping that start when training does not beat it on the validation
rows, and dequantization of few-valued columns.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from nfkit.distributions.base import evaluation_mode
from nfkit.distributions.mixture import MixtureSameFamily
from nfkit.distributions.simple import MultivariateNormalTriL
from nfkit.distributions.transformed import TransformedDistribution
from nfkit.nets import AutoregressiveNetwork
from nfkit.train.loop import mean_nll

__all__ = [
    "FlowStart",
    "TableSizes",
    "dequantize",
    "few_valued_columns",
    "mixture_start",
    "starts_at_mixture",
    "table_sizes",
]


@dataclass(frozen=True)
class TableSizes:
    """A flow's size and training budget for a table (see :func:`table_sizes`)."""

    layers: int
    hidden: tuple[int, ...]
    epochs: int
    patience: int
    weight_decay: float
    batch_size: int

    def fit_options(self, **given: Any) -> dict[str, Any]:
        """:func:`nfkit.fit`'s ``epochs``, ``batch_size``, ``patience`` and ``weight_decay``:
        the ``given`` ones that are not ``None``, these sizes for the rest.
        """
        names = ("epochs", "batch_size", "patience", "weight_decay")
        return {k: getattr(self, k) if given.get(k) is None else given[k] for k in names}


def table_sizes(rows: int, columns: int) -> TableSizes:
    r"""Defaults from the table's shape: a table of fewer than 2,000 rows gets 3 narrower layers
    (64 units), small batches (about an eighth of the rows, 32 to 256) so that an epoch is
    several steps, weight decay 1e-4 and up to 200 epochs; larger tables 5 layers of 128 units,
    batches of 256 and 100 epochs. Early stopping (``patience`` epochs) on the validation rows
    ends most runs sooner. Chosen on wine, iris, diabetes, breast cancer and digits
    (``benchmarks/real_data.py``): against 5 layers, 3 scored the same or better on all five
    (digits -27.1 against -29.7 nats); 128 units or no weight decay did worse on digits.

    Example:
        >>> table_sizes(150, 4)  # doctest: +NORMALIZE_WHITESPACE
        TableSizes(layers=3, hidden=(64, 64), epochs=200, patience=30, weight_decay=0.0001,
                   batch_size=32)
        >>> table_sizes(100_000, 10).hidden
        (128, 128)

    """
    if rows < 2 or columns < 1:
        raise ValueError(f"need at least 2 rows and 1 column, got {rows} and {columns}")
    small = rows < 2000
    return TableSizes(
        layers=3 if small else 5,
        hidden=(64, 64) if small else (128, 128),
        epochs=200 if small else 100,
        patience=30 if small else 20,
        weight_decay=1e-4 if small else 0.0,
        batch_size=int(min(256, max(32, 2 ** round(math.log2(rows / 8))))),
    )


def few_valued_columns(values: np.ndarray) -> dict[int, float]:
    """Columns that take few distinct values (at most 20, and at most a fifth of the rows: a
    count, a label, a binary flag), each with the smallest gap between its values.

    A density over such a column piles up in spikes that a flow chases without end (held-out
    log-likelihoods then measure spikiness, not fit); :func:`dequantize` spreads each value
    over its gap instead.

    Example:
        >>> x = np.stack([np.arange(20) % 2, np.linspace(0, 1, 20)], 1)  # a flag, a measurement
        >>> few_valued_columns(x)
        {0: 1.0}

    """
    out = {}
    for j in range(values.shape[1]):
        distinct = np.unique(values[:, j])
        if 1 < len(distinct) <= min(20, values.shape[0] / 5):
            out[j] = float(np.diff(distinct).min())
    return out


def dequantize(values: np.ndarray, gaps: dict[int, float], seed: int) -> np.ndarray:
    r"""Uniform dequantization (Theis, van den Oord & Bethge 2016): each value ``v`` of a
    few-valued column ``j`` becomes :math:`v + u`, :math:`u \sim U(-h_j/2, h_j/2)`, with
    :math:`h_j` the column's gap. The density learned is that of the spread values: at a
    value itself it is about :math:`P(v) / h_j`.
    """
    out = np.array(values, dtype=np.float64, copy=True)
    rng = np.random.default_rng(seed)
    for j, gap in gaps.items():
        out[:, j] += gap * (rng.random(out.shape[0]) - 0.5)
    return out


def mixture_start(rows: Any, components: int = 10, seed: int = 0) -> MixtureSameFamily:
    r"""The Gaussian mixture that fits ``rows`` best by BIC, with 1 to ``components``
    full-covariance components (the search stops when two more components in a row do not
    lower the BIC; scikit-learn's ``GaussianMixture``, covariance floor 1e-3 of
    the standardized units; fitted on 20,000 of the rows when there are more), as an nfkit
    distribution: a flow's base from which training starts. One component is the data's
    Gaussian.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> rows = np.concatenate([rng.normal(-3, 1, (200, 2)), rng.normal(3, 1, (200, 2))])
        >>> mixture_start(rows).batch_shape, mixture_start(rows, components=1).batch_shape
        (torch.Size([]), torch.Size([]))
        >>> mixture_start(rows).components_distribution.batch_shape
        torch.Size([2])

    """
    from sklearn.mixture import GaussianMixture

    values = np.asarray(rows, dtype=np.float64)
    if len(values) > 20_000:  # a start needs no more: EM on a fixed subset
        values = values[np.random.default_rng(seed).choice(len(values), 20_000, replace=False)]
    best, best_bic, worse = None, math.inf, 0
    for k in range(1, max(1, min(components, len(values) // 2)) + 1):
        fit = GaussianMixture(k, covariance_type="full", reg_covar=1e-3, random_state=seed)
        bic = fit.fit(values).bic(values)
        if bic < best_bic:
            best, best_bic, worse = fit, bic, 0
        else:
            worse += 1
            if worse == 2:  # two more components did not help: stop the search
                break
    assert best is not None
    dtype = torch.get_default_dtype()
    scale = torch.as_tensor(np.linalg.cholesky(best.covariances_), dtype=dtype)
    parts = MultivariateNormalTriL(torch.as_tensor(best.means_, dtype=dtype), scale)
    return MixtureSameFamily(torch.as_tensor(np.log(best.weights_), dtype=dtype), parts)


def starts_at_mixture(flow: str, components: int, *, conditional: bool, standardized: bool) -> bool:
    """Whether a table's flow starts at the Gaussian mixture that fits it (:class:`FlowStart`),
    for the estimator and the command alike: unconditional flows on standardized columns (the
    mixture's regularization is in standard deviations) with layers (not Glow's images; not
    ``cnf``, whose flow matching needs its standard normal base), unless ``components`` is 0.
    """
    return components > 0 and not conditional and standardized and flow not in ("glow", "cnf")


class FlowStart:
    r"""A flow whose base is :func:`mixture_start`'s mixture, and the means to keep that start.

    Every nfkit flow layer starts at the identity (the MADEs' output layers are set to zero
    here, as they start by default, in case one was built with ``zero_last=False``), so
    ``FlowStart(flow, rows).model`` starts
    as the mixture that fits the rows by BIC (the data's Gaussian when one component wins)
    and training bends it from there. :meth:`keep_if_better`, called after training with the
    validation NLL of the kept epoch, restores the start when no epoch beat it, so the result
    is never worse on the validation rows than that mixture.

    Args:
        flow: an unconditional :class:`~nfkit.distributions.TransformedDistribution` (every
            layered builder of :mod:`nfkit.flows`); its base is replaced.
        rows: the training rows (standardized).
        validation: the validation rows, or ``None`` (nothing to compare: the start is not
            kept).
        components: at most this many mixture components (1: the Gaussian).
        seed: the mixture fit's seed.

    """

    def __init__(
        self,
        flow: TransformedDistribution,
        rows: Any,
        validation: Any = None,
        components: int = 10,
        seed: int = 0,
    ) -> None:
        # Fitted where the base lives: through the untrained layers (at the start, the identity
        # up to the permutations between layers), so that the flow starts at the mixture.
        for module in flow.modules():
            if isinstance(module, AutoregressiveNetwork):
                module.zero_output()
        values = torch.as_tensor(np.asarray(rows), dtype=torch.get_default_dtype())
        with evaluation_mode(flow):
            latent = flow.bijector.inverse(values)
        base = mixture_start(latent.numpy(), components, seed)
        self.components = base.logits.shape[-1]
        self.model = TransformedDistribution(base, flow.bijector)
        # Scored first: a lazily built network exists only after its first evaluation.
        self.start_nll = None if validation is None else mean_nll(self.model, validation, None)
        self._state = copy.deepcopy(self.model.state_dict())
        self.kept_start = False

    def keep_if_better(self, best_nll: float | None) -> bool:
        """Restore the start when its validation NLL is at most ``best_nll``; whether it did."""
        better = self.start_nll is not None and best_nll is not None and self.start_nll <= best_nll
        if better and self._state:
            self.model.load_state_dict(self._state)
            self.kept_start = True
        self._state = {}  # decided: the copy of the starting weights is not needed any more
        return self.kept_start
