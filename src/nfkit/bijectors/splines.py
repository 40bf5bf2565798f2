r"""Monotonic rational-quadratic splines (Durkan, Bekasov, Murray, Papamakarios 2019).

Plain tensors in, tensors out; the bijectors that use them live in ``elementwise.py``
(:class:`~nfkit.bijectors.RationalQuadraticSpline`), ``autoregressive.py`` and ``coupling.py``.

On :math:`[-B, B]` the spline has :math:`K` bins with knots :math:`(x_k, y_k)` and positive
slopes :math:`\delta_k` at the knots. In bin :math:`k`, with :math:`w_k = x_{k+1} - x_k`,
:math:`h_k = y_{k+1} - y_k`, :math:`s_k = h_k / w_k` and :math:`\xi = (x - x_k) / w_k`,

.. math::

    y = y_k + \frac{h_k\,[s_k \xi^2 + \delta_k \xi (1 - \xi)]}
                   {s_k + (\delta_{k+1} + \delta_k - 2 s_k)\, \xi (1 - \xi)},

    \frac{dy}{dx} = \frac{s_k^2\,[\delta_{k+1} \xi^2 + 2 s_k \xi (1 - \xi)
                    + \delta_k (1 - \xi)^2]}
                   {[s_k + (\delta_{k+1} + \delta_k - 2 s_k)\, \xi (1 - \xi)]^2}.

The inverse solves the quadratic :math:`a\xi^2 + b\xi + c = 0` for :math:`\xi \in [0, 1]` in
closed form (no bisection), with the numerically stable root :math:`\xi = 2c / (-b - \sqrt{b^2 -
4ac})`. Outside :math:`[-B, B]` the map is the identity ("linear tails"), and the boundary
slopes are 1 so the derivative is continuous there.

References:
    Durkan, Bekasov, Murray, Papamakarios. Neural Spline Flows. NeurIPS 2019.
    https://arxiv.org/abs/1906.04032 (eqs. 4-8 and appendix A).

"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["DEFAULT_MIN", "rational_quadratic_spline", "spline_parameter_count"]

DEFAULT_MIN = 1e-3
# softplus(0 + _IDENTITY_SLOPE) + DEFAULT_MIN == 1: zero raw slopes give the identity spline.
_IDENTITY_SLOPE = math.log(math.expm1(1.0 - DEFAULT_MIN))


def spline_parameter_count(bins: int) -> int:
    """Raw numbers per dimension: ``bins`` widths, ``bins`` heights, ``bins - 1`` inner slopes."""
    return 3 * bins - 1


def _softmax(raw: Tensor) -> Tensor:
    """The softmax over the last dim, written out: over a few bins, ``torch.softmax`` on the
    CPU is about 6x slower (1.1 ms against 0.18 ms for 4096 x 2 x 8 values, one thread), and
    it was 36% of an NSF-AR ``log_prob``. The shift by the (constant) maximum cancels.
    """
    e = (raw - raw.detach().amax(dim=-1, keepdim=True)).exp()
    return e / e.sum(dim=-1, keepdim=True)


def _knots(raw: Tensor, bound: float, minimum: float) -> Tensor:
    """Knot positions ``(*, K+1)`` from raw sizes ``(*, K)``: each bin at least ``minimum``."""
    bins = raw.shape[-1]
    sizes = minimum + (1.0 - minimum * bins) * _softmax(raw)
    knots = F.pad(torch.cumsum(sizes, dim=-1), (1, 0))
    knots = 2.0 * bound * knots - bound
    # Exact ends, whatever the rounding of the cumulative sum.
    end = knots.new_full((*knots.shape[:-1], 1), bound)
    return torch.cat([-end, knots[..., 1:-1], end], dim=-1)


def _gather(values: Tensor, index: Tensor) -> Tensor:
    return values.gather(-1, index[..., None])[..., 0]


def rational_quadratic_spline(
    inputs: Tensor,
    raw_widths: Tensor,
    raw_heights: Tensor,
    raw_slopes: Tensor,
    *,
    inverse: bool = False,
    bound: float = 3.0,
    min_bin_width: float = DEFAULT_MIN,
    min_bin_height: float = DEFAULT_MIN,
    min_slope: float = DEFAULT_MIN,
) -> tuple[Tensor, Tensor]:
    r"""Apply the spline (or its inverse) elementwise; return outputs and ``log|dy/dx|``.

    Args:
        inputs: values of shape ``(*)``.
        raw_widths: unconstrained bin widths ``(*, K)`` (softmax-normalised to span 2B).
        raw_heights: unconstrained bin heights ``(*, K)``.
        raw_slopes: unconstrained slopes at the ``K - 1`` inner knots ``(*, K - 1)``
            (softplus, offset so that zeros give slope 1); or ``(*, K)``, the last one being the
            slope at both ends: a circular spline, a diffeomorphism of :math:`[-B, B)` with its
            ends identified (Rezende et al. 2020), when :math:`B = \pi`.
        inverse: map ``y -> x`` instead of ``x -> y``.
        bound: the spline acts on ``[-bound, bound]``; the identity outside.
        min_bin_width: smallest bin width, as a fraction of ``2 * bound``.
        min_bin_height: smallest bin height, as a fraction.
        min_slope: smallest knot slope.

    Returns:
        ``(outputs, log_abs_det)``, both of shape ``(*)``; the log-det is that of the direction
        applied (so ``inverse=True`` returns :math:`-\log|dy/dx|` at the solution).

    """
    xk = _knots(raw_widths, bound, min_bin_width)
    yk = _knots(raw_heights, bound, min_bin_height)
    inner = min_slope + F.softplus(raw_slopes + _IDENTITY_SLOPE)
    if raw_slopes.shape[-1] == raw_widths.shape[-1]:
        # Circular: one more slope, shared by both ends, so the spline closes smoothly.
        slopes = torch.cat([inner[..., -1:], inner[..., :-1], inner[..., -1:]], dim=-1)
    else:
        ones = inner.new_ones((*inner.shape[:-1], 1))
        slopes = torch.cat([ones, inner, ones], dim=-1)
    return spline_through_knots(inputs, xk, yk, slopes, inverse=inverse)


def spline_through_knots(
    inputs: Tensor, xk: Tensor, yk: Tensor, slopes: Tensor, *, inverse: bool = False
) -> tuple[Tensor, Tensor]:
    r"""The rational-quadratic spline through knots :math:`(x_k, y_k)` with derivatives
    :math:`\delta_k` there, ``(*, K + 1)`` each (increasing knots, positive slopes, the same
    first and last value for :math:`x` and :math:`y`), applied elementwise to ``inputs``
    ``(*)``; the identity outside :math:`[x_0, x_K]`. Returns outputs and the log-det of the
    direction applied, as :func:`rational_quadratic_spline`.
    """
    low, high = xk[..., 0], xk[..., -1]
    inside = (inputs >= low) & (inputs <= high)
    x = inputs.clamp(low, high)  # (not minimum/maximum: their gradient halves at a tie)
    widths, heights = xk[..., 1:] - xk[..., :-1], yk[..., 1:] - yk[..., :-1]
    edges = yk if inverse else xk
    index = torch.searchsorted(edges[..., 1:-1].contiguous(), x[..., None], right=True)[..., 0]
    x_k, w, y_k, h = (
        _gather(xk, index),
        _gather(widths, index),
        _gather(yk, index),
        _gather(heights, index),
    )
    d_k, d_k1 = _gather(slopes, index), _gather(slopes, index + 1)
    s = h / w
    curvature = d_k1 + d_k - 2.0 * s

    if inverse:
        dy = x - y_k
        a = h * (s - d_k) + dy * curvature
        b = h * d_k - dy * curvature
        c = -s * dy
        root = torch.sqrt((b * b - 4.0 * a * c).clamp(min=0.0))
        xi = 2.0 * c / (-b - root)
        # Rounding can put xi a hair outside [0, 1] at a bin's edge: clamp the value only, so
        # the gradient stays the solution's (a plain clamp would zero it there).
        xi = xi + (xi.clamp(0.0, 1.0) - xi).detach()
        out = xi * w + x_k
    else:
        xi = (x - x_k) / w
        t = xi * (1.0 - xi)
        out = y_k + h * (s * xi * xi + d_k * t) / (s + curvature * t)
    t = xi * (1.0 - xi)
    denominator = s + curvature * t
    log_derivative = (
        2.0 * torch.log(s)
        + torch.log(d_k1 * xi * xi + 2.0 * s * t + d_k * (1.0 - xi) ** 2)
        - 2.0 * torch.log(denominator)
    )
    log_det = -log_derivative if inverse else log_derivative
    outputs = torch.where(inside, out, inputs)
    return outputs, torch.where(inside, log_det, torch.zeros_like(log_det))
