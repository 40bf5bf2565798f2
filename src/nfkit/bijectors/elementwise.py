r"""Elementwise bijectors with diagonal Jacobians: Identity, Exp, Sigmoid, Tanh, Softplus, the
rational-quadratic spline, and any of them on chosen columns only (:class:`OnColumns`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from nfkit._tensors import ArrayLike, register_tensor
from nfkit.bijectors.base import Bijector, Context, Pair
from nfkit.bijectors.splines import rational_quadratic_spline, spline_through_knots

__all__ = [
    "Exp",
    "Identity",
    "OnColumns",
    "RationalQuadraticSpline",
    "Reciprocal",
    "Sigmoid",
    "Softplus",
    "Tanh",
]


class Identity(Bijector):
    r"""The identity :math:`x = z`, with log-det 0.

    Example:
        >>> import torch, nfkit.bijectors as nfb
        >>> nfb.Identity().forward_log_det_jacobian(torch.ones(3))
        tensor([0., 0., 0.])

    """

    is_constant_jacobian = True

    def _forward_and_log_det(self, z: Tensor, context: Context) -> Pair:
        return z, z.new_zeros(())

    def _inverse_and_log_det(self, x: Tensor, context: Context) -> Pair:
        return x, x.new_zeros(())


class Exp(Bijector):
    r"""The exponential :math:`x = e^{z}`, mapping :math:`\mathbb{R}` onto :math:`(0, \infty)`.

    Log-dets: :math:`\log|dx/dz| = z` and :math:`\log|dz/dx| = -\log x`.

    Example:
        >>> import torch, nfkit.bijectors as nfb
        >>> nfb.Exp().inverse(torch.tensor([1.0]))
        tensor([0.])

    """

    def _forward_and_log_det(self, z: Tensor, context: Context) -> Pair:
        return z.exp(), z

    def _inverse_and_log_det(self, x: Tensor, context: Context) -> Pair:
        z = x.log()
        return z, -z


class Sigmoid(Bijector):
    r"""The logistic function :math:`x = 1 / (1 + e^{-z})`, mapping :math:`\mathbb{R}` onto (0, 1),
    or, with ``low`` and ``high`` (TFP's arguments), :math:`x = l + (h - l)\,\sigma(z)` onto
    :math:`(l, h)`.

    Log-det: :math:`\log(h - l) + \log \sigma'(z)` with
    :math:`\log \sigma'(z) = -\mathrm{softplus}(-z) - \mathrm{softplus}(z)`; the inverse is
    the logit of :math:`u = (x - l) / (h - l)`, :math:`z = \log u - \log(1 - u)`, with log-det
    :math:`-\log(h - l) - \log u - \log(1 - u)`.

    Args:
        low: the lower end :math:`l` (with ``high``; default 0).
        high: the upper end :math:`h > l` (with ``low``; default 1).

    Example:
        >>> import torch, nfkit.bijectors as nfb
        >>> nfb.Sigmoid().forward(torch.tensor([0.0]))
        tensor([0.5000])
        >>> nfb.Sigmoid(low=-2.0, high=4.0).forward(torch.tensor([0.0]))
        tensor([1.])

    """

    def __init__(self, low: ArrayLike | None = None, high: ArrayLike | None = None) -> None:
        super().__init__()
        if (low is None) != (high is None):
            raise ValueError("Sigmoid takes both low= and high=, or neither")
        self.bounded = low is not None
        if low is not None and high is not None:
            self.low = register_tensor(self, "low", low)
            self.high = register_tensor(self, "high", high)
            if not bool((self.high > self.low).all()):
                raise ValueError("Sigmoid needs high > low")

    def _range(self, like: Tensor) -> tuple[Tensor, Tensor] | None:
        if not self.bounded:
            return None
        low = self.low.to(like.dtype)
        return low, self.high.to(like.dtype) - low

    def _forward_and_log_det(self, z: Tensor, context: Context) -> Pair:
        x, log_det = torch.sigmoid(z), -F.softplus(-z) - F.softplus(z)
        span = self._range(z)
        if span is None:
            return x, log_det
        return span[0] + span[1] * x, log_det + span[1].log()

    def _inverse_and_log_det(self, x: Tensor, context: Context) -> Pair:
        span = self._range(x)
        u = x if span is None else (x - span[0]) / span[1]
        log_u, log_1mu = u.log(), torch.log1p(-u)
        log_det = -log_u - log_1mu
        return log_u - log_1mu, log_det if span is None else log_det - span[1].log()


class Reciprocal(Bijector):
    r"""The reciprocal :math:`x = 1 / z` (TFP's ``Reciprocal``), its own inverse on
    :math:`\mathbb{R} \setminus \{0\}`.

    Log-det: :math:`\log|dx/dz| = -2 \log|z|`, and :math:`-2 \log|x|` for the inverse.

    Example:
        >>> import torch, nfkit.bijectors as nfb
        >>> nfb.Reciprocal().forward(torch.tensor([4.0, -0.5]))
        tensor([ 0.2500, -2.0000])

    """

    def _forward_and_log_det(self, z: Tensor, context: Context) -> Pair:
        return z.reciprocal(), -2.0 * z.abs().log()

    def _inverse_and_log_det(self, x: Tensor, context: Context) -> Pair:
        return x.reciprocal(), -2.0 * x.abs().log()


class Tanh(Bijector):
    r"""The hyperbolic tangent :math:`x = \tanh z`, mapping :math:`\mathbb{R}` onto (-1, 1).

    Log-det, in a form that stays finite for large :math:`|z|`:
    :math:`\log(1 - \tanh^2 z) = 2(\log 2 - z - \mathrm{softplus}(-2z))`.

    Example:
        >>> import torch, nfkit.bijectors as nfb
        >>> nfb.Tanh().forward_log_det_jacobian(torch.tensor([0.0]))
        tensor([0.])

    """

    def _forward_and_log_det(self, z: Tensor, context: Context) -> Pair:
        return torch.tanh(z), 2.0 * (math.log(2.0) - z - F.softplus(-2.0 * z))

    def _inverse_and_log_det(self, x: Tensor, context: Context) -> Pair:
        z = torch.atanh(x)
        return z, -2.0 * (math.log(2.0) - z - F.softplus(-2.0 * z))


class Softplus(Bijector):
    r"""The softplus :math:`x = c \log(1 + e^{z / c}) + \ell`, mapping the real line onto
    :math:`(\ell, \infty)` (TFP's ``hinge_softness`` :math:`c`, default 1, and ``low``
    :math:`\ell`, default 0).

    Log-det: :math:`\log \sigma(z / c) = -\mathrm{softplus}(-z / c)`. Inverse, with
    :math:`u = (x - \ell) / c`: :math:`z = c\,(u + \log(-\mathrm{expm1}(-u)))`, log-det
    :math:`-\log(-\mathrm{expm1}(-u))`.

    Args:
        hinge_softness: :math:`c > 0`; small values approach :math:`\max(z, 0)`.
        low: :math:`\ell`, the lower bound of the outputs.

    Example:
        >>> import torch, nfkit.bijectors as nfb
        >>> nfb.Softplus().inverse(torch.tensor([2.0]).log())
        tensor([0.])
        >>> nfb.Softplus(hinge_softness=0.5, low=1.0).forward(torch.tensor([0.0, 10.0]))
        tensor([ 1.3466, 11.0000])

    """

    def __init__(self, hinge_softness: float | None = None, low: float | None = None) -> None:
        super().__init__()
        self.hinge_softness = 1.0 if hinge_softness is None else float(hinge_softness)
        self.low = 0.0 if low is None else float(low)
        if not self.hinge_softness > 0:
            raise ValueError(f"hinge_softness must be positive, got {hinge_softness}")

    def _forward_and_log_det(self, z: Tensor, context: Context) -> Pair:
        c = self.hinge_softness
        return c * F.softplus(z / c) + self.low, -F.softplus(-z / c)

    def _inverse_and_log_det(self, x: Tensor, context: Context) -> Pair:
        c = self.hinge_softness
        u = (x - self.low) / c
        log_term = torch.log(-torch.expm1(-u))
        return c * (u + log_term), -log_term


class RationalQuadraticSpline(Bijector):
    r"""A monotonic rational-quadratic spline applied elementwise (Durkan et al. 2019), the
    identity outside its interval; see :mod:`nfkit.bijectors.splines` for the formulas.

    TFP's arguments, with TFP's meaning: positive ``bin_widths`` and ``bin_heights``
    ``(..., K)`` (each summing to the interval's width :math:`W`), positive ``knot_slopes`` at
    the :math:`K - 1` inner knots ``(..., K - 1)`` (or ``(..., 1)`` for one slope at all), the
    interval :math:`[r, r + W]` from ``range_min`` :math:`= r`; slope 1 at both ends.

    nfkit's alternative, unconstrained (what a network or ``nn.Parameter`` gives; all zeros
    give the identity): ``raw_widths`` and ``raw_heights`` ``(..., K)`` before a softmax,
    ``raw_slopes`` ``(..., K - 1)`` before a softplus, on :math:`[-B, B]` with ``bound`` =
    :math:`B`.

    The leading dims ``...`` broadcast against the input (e.g. ``(D, K)`` for ``D`` features).

    Example:
        >>> import torch, nfkit.bijectors as nfb
        >>> rqs = nfb.RationalQuadraticSpline(  # TFP's form, on [-1, 1]
        ...     bin_widths=[0.5, 1.0, 0.5], bin_heights=[1.0, 0.5, 0.5], knot_slopes=[1.0, 0.5])
        >>> rqs.forward(torch.tensor([-1.0, -0.5, 0.5, 2.0])).tolist()  # knots, and the tail
        [-1.0, 0.0, 0.5, 2.0]
        >>> _ = torch.manual_seed(0)
        >>> w, h, s = torch.randn(3, 8), torch.randn(3, 8), torch.randn(3, 7)
        >>> raw = nfb.RationalQuadraticSpline(raw_widths=w, raw_heights=h, raw_slopes=s)
        >>> x = torch.randn(5, 3)
        >>> torch.allclose(raw.inverse(raw.forward(x)), x, atol=1e-5)
        True

    """

    def __init__(
        self,
        bin_widths: ArrayLike | None = None,
        bin_heights: ArrayLike | None = None,
        knot_slopes: ArrayLike | None = None,
        range_min: float = -1.0,
        *,
        raw_widths: ArrayLike | None = None,
        raw_heights: ArrayLike | None = None,
        raw_slopes: ArrayLike | None = None,
        bound: float = 3.0,
    ) -> None:
        super().__init__()
        tfp, raw = (bin_widths, bin_heights, knot_slopes), (raw_widths, raw_heights, raw_slopes)
        self.tfp_form = raw_widths is None
        chosen, other = (tfp, raw) if self.tfp_form else (raw, tfp)
        if any(v is None for v in chosen) or any(v is not None for v in other):
            raise ValueError(
                "RationalQuadraticSpline takes bin_widths=, bin_heights= and knot_slopes= "
                "(TFP's) or raw_widths=, raw_heights= and raw_slopes= (nfkit's)"
            )
        names = (
            ("bin_widths", "bin_heights", "knot_slopes")
            if self.tfp_form
            else ("raw_widths", "raw_heights", "raw_slopes")
        )
        widths, heights, slopes = (
            register_tensor(self, n, v) for n, v in zip(names, chosen, strict=True)
        )
        bins = widths.shape[-1]
        if heights.shape[-1] != bins or slopes.shape[-1] not in (bins - 1, 1):
            raise ValueError(
                f"need K widths, K heights and K - 1 slopes; got {widths.shape[-1]}, "
                f"{heights.shape[-1]} and {slopes.shape[-1]}"
            )
        if self.tfp_form:
            if bool((widths <= 0).any() | (heights <= 0).any() | (slopes <= 0).any()):
                raise ValueError("bin_widths, bin_heights and knot_slopes must be positive")
            if not torch.allclose(widths.sum(-1), heights.sum(-1), rtol=1e-5, atol=1e-6):
                raise ValueError("bin_widths and bin_heights must have the same sums")
        elif slopes.shape[-1] != bins - 1:
            raise ValueError(f"need K - 1 = {bins - 1} raw_slopes, got {slopes.shape[-1]}")
        self.range_min, self.bound = float(range_min), float(bound)

    def _spline(self, value: Tensor, inverse: bool) -> Pair:
        def expand(t: Tensor, size: int | None = None) -> Tensor:
            return t.to(value.dtype).expand(*value.shape, size or t.shape[-1])

        if not self.tfp_form:
            return rational_quadratic_spline(
                value,
                expand(self.raw_widths),
                expand(self.raw_heights),
                expand(self.raw_slopes),
                inverse=inverse,
                bound=self.bound,
            )
        widths, heights = expand(self.bin_widths), expand(self.bin_heights)
        bins = widths.shape[-1]
        inner = expand(self.knot_slopes, bins - 1)
        ones = inner.new_ones((*inner.shape[:-1], 1))
        xk, yk = (self.range_min + F.pad(t.cumsum(-1), (1, 0)) for t in (widths, heights))
        yk = torch.cat([yk[..., :-1], xk[..., -1:]], -1)  # the same end for x and y
        return spline_through_knots(
            value, xk, yk, torch.cat([ones, inner, ones], -1), inverse=inverse
        )

    def _forward_and_log_det(self, z: Tensor, context: Context) -> Pair:
        return self._spline(z, inverse=False)

    def _inverse_and_log_det(self, x: Tensor, context: Context) -> Pair:
        return self._spline(x, inverse=True)

    def extra_repr(self) -> str:
        if self.tfp_form:
            return f"bins={self.bin_widths.shape[-1]}, range_min={self.range_min}"
        return f"bins={self.raw_widths.shape[-1]}, bound={self.bound}"


class OnColumns(Bijector):
    r"""An elementwise bijector applied to some columns of a vector, the others left as they are.

    With :math:`S` the chosen columns, :math:`x_j = f(z_j)` for :math:`j \in S` and
    :math:`x_j = z_j` otherwise; :math:`\log|\det J| = \sum_{j \in S} \log|f'(z_j)|`. This is
    how a table's positive columns (concentrations, prices) are modelled on the log scale:
    ``OnColumns(Exp(), [0, 2])`` maps a density over :math:`(\log x_0, x_1, \log x_2)` to one
    over :math:`x`.

    Args:
        bijector: an elementwise bijector (``forward_min_event_ndims == 0``).
        columns: the indices of the last dimension it acts on.

    Example:
        >>> import torch, nfkit.bijectors as nfb
        >>> nfb.OnColumns(nfb.Exp(), [1]).forward(torch.tensor([[0.0, 0.0, 2.0]]))
        tensor([[0., 1., 2.]])

    """

    forward_min_event_ndims = 1

    def __init__(self, bijector: Bijector, columns: list[int]) -> None:
        super().__init__()
        if bijector.forward_min_event_ndims != 0:
            raise ValueError(
                f"OnColumns needs an elementwise bijector, {type(bijector).__name__} acts on "
                f"{bijector.forward_min_event_ndims} trailing dims"
            )
        index = [int(c) for c in columns]
        if not index or len(set(index)) != len(index) or min(index) < 0:
            raise ValueError(f"columns must be distinct non-negative indices, got {columns}")
        self.bijector = bijector
        self.register_buffer("index", torch.tensor(index), persistent=False)

    def _on_columns(self, value: Tensor, inverse: bool) -> Pair:
        if value.shape[-1] <= int(self.index.max()):
            raise ValueError(
                f"OnColumns acts on column {int(self.index.max())}, the input has "
                f"{value.shape[-1]} columns"
            )
        part = value.index_select(-1, self.index)
        step = self.bijector.inverse_and_log_det if inverse else self.bijector.forward_and_log_det
        out, log_det = step(part, event_ndims=1)
        return value.index_copy(-1, self.index, out), log_det

    def _forward_and_log_det(self, z: Tensor, context: Context) -> Pair:
        return self._on_columns(z, inverse=False)

    def _inverse_and_log_det(self, x: Tensor, context: Context) -> Pair:
        return self._on_columns(x, inverse=True)

    def extra_repr(self) -> str:
        return f"columns={self.index.tolist()}"
