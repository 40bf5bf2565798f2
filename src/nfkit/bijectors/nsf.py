r"""Neural spline flows (Durkan et al. 2019): rational-quadratic splines whose knots come from
a network, as an autoregressive layer and as a coupling layer.

Each transformed dim gets :math:`3K - 1` numbers from the conditioner (``K`` bin widths, ``K``
heights, ``K - 1`` inner slopes; see :mod:`nfkit.bijectors.splines`). The density direction
(``inverse``) evaluates the spline, the sampling direction its closed-form inverse. With the
conditioner's output layer at zero every spline is the identity, so an untrained flow is its
base distribution.

References:
    Durkan, Bekasov, Murray, Papamakarios. Neural Spline Flows. NeurIPS 2019.
    https://arxiv.org/abs/1906.04032

"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor

from nfkit.bijectors.autoregressive import AutoregressiveBijector
from nfkit.bijectors.base import Pair
from nfkit.bijectors.coupling import CouplingBijector, CouplingNetwork
from nfkit.bijectors.splines import rational_quadratic_spline, spline_parameter_count
from nfkit.nets import Activation

__all__ = ["MaskedAutoregressiveSpline", "SplineCoupling"]


def _spline(value: Tensor, params: Tensor, bins: int, bound: float, inverse: bool) -> Pair:
    if params.shape[-1] != spline_parameter_count(bins):
        raise ValueError(
            f"a {bins}-bin spline needs {spline_parameter_count(bins)} parameters per dim, the "
            f"conditioner returned {params.shape[-1]}: build it with "
            f"params={spline_parameter_count(bins)}"
        )
    batch = params.shape[:-1]
    value = value.expand(batch)
    widths, heights, slopes = params.split([bins, bins, bins - 1], dim=-1)
    # Data-side spline y = s(x) is the density direction: inverse here is s, forward is s^-1.
    out, log_det = rational_quadratic_spline(
        value, widths, heights, slopes, inverse=not inverse, bound=bound
    )
    return out, log_det.sum(-1)


class MaskedAutoregressiveSpline(AutoregressiveBijector):
    r"""Autoregressive neural spline flow (NSF-AR): :math:`z_i = s(x_i;\ \theta(x_{<i}))`.

    Args:
        conditioner: an autoregressive network called ``conditioner(x, D[, context=])``
            returning ``(*, D, 3 * bins - 1)``, e.g.
            ``AutoregressiveNetwork(params=3 * bins - 1, hidden_units=[...])``.
        bins: number of spline bins :math:`K`.
        bound: the splines act on :math:`[-B, B]` (standardize data so most of it lies there);
            the identity outside.

    Example:
        >>> import torch, nfkit.bijectors as nfb
        >>> _ = torch.manual_seed(0)
        >>> net = nfb.AutoregressiveNetwork(params=23, hidden_units=[16], zero_last=False)
        >>> nsf = nfb.MaskedAutoregressiveSpline(net, bins=8)
        >>> x = torch.randn(4, 3)
        >>> torch.allclose(nsf.forward(nsf.inverse(x)), x, atol=1e-5)
        True

    """

    def __init__(
        self, conditioner: Callable[..., Tensor], *, bins: int = 8, bound: float = 3.0
    ) -> None:
        super().__init__(conditioner)
        if bins < 2:
            raise ValueError(f"bins must be at least 2, got {bins}")
        self.params = (spline_parameter_count(bins),)
        self.bins = bins
        self.bound = float(bound)

    def _transform(self, value: Tensor, params: Any, inverse: bool) -> Pair:
        return _spline(value, params, self.bins, self.bound, inverse)

    def extra_repr(self) -> str:
        return f"bins={self.bins}, bound={self.bound}"


class SplineCoupling(CouplingBijector):
    r"""Coupling neural spline flow (NSF-C): the first :math:`d` dims pass through and set the
    splines of the rest, :math:`z_{d+1:D} = s(x_{d+1:D};\ \theta(x_{1:d}))`.

    Args:
        num_masked: :math:`d`, the dims kept (``0 < d < D``).
        conditioner: a custom conditioner ``conditioner(x0, units[, context=])`` returning
            ``(*, units, 3 * bins - 1)`` (see :class:`nfkit.nets.Conditioner`); defaults to a
            :class:`CouplingNetwork`.
        fraction_masked: alternatively, :math:`d` as a fraction of :math:`D`.
        bins: number of spline bins :math:`K`.
        bound: the splines act on :math:`[-B, B]`; the identity outside.
        hidden_units: hidden widths of the default conditioner.
        activation: activation of the default conditioner.

    Example:
        >>> import torch, nfkit.bijectors as nfb
        >>> layer = nfb.SplineCoupling(fraction_masked=0.5, bins=4, hidden_units=[8])
        >>> x = torch.randn(2, 4)
        >>> torch.allclose(layer.inverse(x), x, atol=1e-6)  # zero output layer: identity
        True

    """

    def __init__(
        self,
        num_masked: int | None = None,
        conditioner: Callable[..., Tensor] | None = None,
        *,
        fraction_masked: float | None = None,
        bins: int = 8,
        bound: float = 3.0,
        hidden_units: Sequence[int] = (64, 64),
        activation: Activation = "relu",
    ) -> None:
        if bins < 2:
            raise ValueError(f"bins must be at least 2, got {bins}")
        count = spline_parameter_count(bins)
        conditioner = conditioner or CouplingNetwork(hidden_units, activation, params=count)
        super().__init__(num_masked, conditioner, fraction_masked)
        self.params = (count,)
        self.bins = bins
        self.bound = float(bound)

    def _transform(self, part: Tensor, params: Any, inverse: bool) -> Pair:
        return _spline(part, params, self.bins, self.bound, inverse)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, bins={self.bins}, bound={self.bound}"
