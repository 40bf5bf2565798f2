r"""Flows on circles and tori: circular rational-quadratic splines (Rezende et al. 2020).

Angles live in :math:`[-\pi, \pi)`. A circular spline is a rational-quadratic spline on
:math:`[-\pi, \pi]` whose two end slopes are equal, so it is a smooth bijection of the circle
onto itself; a rotation by a learned angle follows (modulo :math:`2\pi`), since the spline
alone fixes the point :math:`-\pi`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from nfkit._tensors import ArrayLike, register_tensor
from nfkit.bijectors.base import Bijector, Context, Pair
from nfkit.bijectors.coupling import CouplingBijector, CouplingNetwork
from nfkit.bijectors.nsf import _spline
from nfkit.bijectors.splines import rational_quadratic_spline
from nfkit.nets import Activation, Conditioner

__all__ = ["AngleFeatures", "CircularCoupling", "CircularSpline", "MixedCoupling", "wrap_angle"]


def wrap_angle(x: Tensor) -> Tensor:
    r"""Angles to :math:`[-\pi, \pi)`."""
    return torch.remainder(x + math.pi, 2 * math.pi) - math.pi


def _circular(value: Tensor, params: Tensor, bins: int, inverse: bool) -> Pair:
    """Circular spline then rotation, from raw ``params`` ``(*, 3K + 1)``; log-det summed."""
    widths, heights, slopes, shift = params.split([bins, bins, bins, 1], dim=-1)
    shift = shift[..., 0]
    if inverse:
        value = wrap_angle(value - shift)
    out, log_det = rational_quadratic_spline(
        wrap_angle(value), widths, heights, slopes, inverse=inverse, bound=math.pi
    )
    if not inverse:
        out = wrap_angle(out + shift)
    return out, log_det


class CircularSpline(Bijector):
    r"""An elementwise circular spline with free parameters, then a rotation: a bijection of
    :math:`[-\pi, \pi)^D` (one circle per element), :math:`\log|\det J| = \sum_i \log
    g_i'(x_i)`.

    Args:
        raw_widths: ``(*, K)`` unconstrained bin widths.
        raw_heights: ``(*, K)`` unconstrained bin heights.
        raw_slopes: ``(*, K)`` unconstrained knot slopes (the last one at both ends).
        shift: rotation angle(s), broadcast against the input.

    References:
        Rezende, Papamakarios, Racanière, Albergo, Kanwar, Shanahan, Cranmer, "Normalizing
        Flows on Tori and Spheres", ICML 2020, https://arxiv.org/abs/2002.02428.

    Example:
        >>> import torch, nfkit.bijectors as nfb
        >>> b = nfb.CircularSpline(torch.randn(2, 4), torch.randn(2, 4), torch.randn(2, 4), 1.0)
        >>> x = torch.tensor([3.0, -3.0])
        >>> torch.allclose(b.inverse(b.forward(x)), x, atol=1e-5)
        True

    """

    def __init__(
        self,
        raw_widths: ArrayLike,
        raw_heights: ArrayLike,
        raw_slopes: ArrayLike,
        shift: ArrayLike = 0.0,
    ) -> None:
        super().__init__()
        for name, value in (("raw_widths", raw_widths), ("raw_heights", raw_heights)):
            register_tensor(self, name, value)
        register_tensor(self, "raw_slopes", raw_slopes)
        register_tensor(self, "shift", shift)
        if not self.raw_widths.shape == self.raw_heights.shape == self.raw_slopes.shape:
            raise ValueError("raw_widths, raw_heights and raw_slopes must all be (*, K)")

    def _params(self, value: Tensor) -> Tensor:
        shift = self.shift.expand(self.raw_widths.shape[:-1]).unsqueeze(-1)
        params = torch.cat([self.raw_widths, self.raw_heights, self.raw_slopes, shift], dim=-1)
        return params.expand(*value.shape, params.shape[-1])

    def _forward_and_log_det(self, z: Tensor, context: Context) -> Pair:
        return _circular(z, self._params(z), self.raw_widths.shape[-1], inverse=False)

    def _inverse_and_log_det(self, x: Tensor, context: Context) -> Pair:
        return _circular(x, self._params(x), self.raw_widths.shape[-1], inverse=True)


class AngleFeatures(Conditioner):
    r"""A conditioner of angles: feeds ``network`` (a conditioner) the
    :math:`(\cos\theta, \sin\theta)` of the kept angles, so that its output is periodic in
    them.
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, inputs: Tensor, units: int, context: Tensor | None = None) -> Tensor:
        features = torch.cat([inputs.cos(), inputs.sin()], dim=-1)
        if context is None:
            return self.network(features, units)
        return self.network(features, units, context=context)


class CircularCoupling(CouplingBijector):
    r"""A coupling layer on the torus: the first :math:`d` angles pass through and, through an
    MLP of their cosines and sines (so the conditioner is periodic), set a circular spline and
    a rotation for each remaining angle.

    Args:
        num_masked: :math:`d`, how many leading angles are kept.
        conditioner: a custom conditioner ``conditioner(x0, units[, context=])`` returning
            ``(*, units, 3K + 1)`` (see :class:`nfkit.nets.Conditioner`); defaults to
            :class:`AngleFeatures` of a coupling MLP.
        bins: spline bins :math:`K`.
        hidden_units: hidden widths of the conditioner.
        activation: its activation.
        fraction_masked: alternatively :math:`d` as a fraction of :math:`D`.

    References:
        Rezende et al., "Normalizing Flows on Tori and Spheres", ICML 2020,
        https://arxiv.org/abs/2002.02428.

    """

    def __init__(
        self,
        num_masked: int | None = None,
        conditioner: nn.Module | None = None,
        *,
        bins: int = 8,
        hidden_units: Sequence[int] = (64, 64),
        activation: Activation = "relu",
        fraction_masked: float | None = None,
    ) -> None:
        if bins < 2:
            raise ValueError(f"bins must be at least 2, got {bins}")
        conditioner = conditioner or AngleFeatures(
            CouplingNetwork(hidden_units, activation, params=3 * bins + 1)
        )
        super().__init__(num_masked, conditioner, fraction_masked)
        self.params = (3 * bins + 1,)
        self.bins = bins

    def _transform(self, part: Tensor, params: Any, inverse: bool) -> Pair:
        out, log_det = _circular(part, params, self.bins, inverse)
        return out, log_det.sum(-1)


class MixedCoupling(CouplingBijector):
    r"""A coupling layer on :math:`\mathbb R^a \times \mathbb T^b`, for internal coordinates:
    the columns listed in ``angles`` are circular (torsions, in :math:`[-\pi, \pi)`), the rest
    real (bonds, bond angles). The first :math:`d` columns pass through and set, through an MLP
    of the kept real values and the cosines and sines of the kept angles (periodic in them), a
    circular spline and a rotation for each remaining angle and a rational-quadratic spline on
    :math:`[-B, B]` (identity outside) for each remaining real column. The log-det is the sum
    of the splines' (Durkan et al. 2019; Rezende et al. 2020; the mixed layer of Midgley et
    al. 2023's alanine flows).

    Args:
        num_masked: :math:`d`, how many leading columns are kept.
        angles: the indices of the circular columns.
        bins: spline bins :math:`K`.
        bound: :math:`B` of the real splines.
        hidden_units: hidden widths of the conditioner.
        activation: its activation.
        conditioner: a custom conditioner of the features ``(*, a_kept + 2 b_kept)``
            returning ``(*, units, 3K + 1)``.

    Example:
        >>> import torch, nfkit.bijectors as nfb
        >>> layer = nfb.MixedCoupling(2, angles=[1, 3], bins=4, hidden_units=[8])
        >>> x = layer.forward(torch.tensor([[0.5, 3.0, 0.1, -3.1]]))
        >>> bool(x[0, 3].abs() <= torch.pi), torch.equal(x[:, :2], torch.tensor([[0.5, 3.0]]))
        (True, True)

    """

    def __init__(
        self,
        num_masked: int,
        angles: Sequence[int],
        *,
        bins: int = 8,
        bound: float = 3.0,
        hidden_units: Sequence[int] = (64, 64),
        activation: Activation = "relu",
        conditioner: nn.Module | None = None,
    ) -> None:
        if bins < 2:
            raise ValueError(f"bins must be at least 2, got {bins}")
        conditioner = conditioner or CouplingNetwork(hidden_units, activation, params=3 * bins + 1)
        if num_masked < 0:
            raise ValueError("MixedCoupling keeps the leading dims: num_masked must be >= 0")
        super().__init__(num_masked, conditioner, None)
        self.angles = sorted({int(a) for a in angles})
        self.params = (3 * bins + 1,)
        self.bins, self.bound = bins, float(bound)

    def _couple(self, value: Tensor, context: Context, inverse: bool) -> Pair:
        kept, part = self._split(value)
        is_angle = torch.zeros(value.shape[-1], dtype=torch.bool, device=value.device)
        is_angle[self.angles] = True
        kept_angle, part_angle = is_angle[: kept.shape[-1]], is_angle[kept.shape[-1] :]
        angles = kept[..., kept_angle]
        features = torch.cat([kept[..., ~kept_angle], angles.cos(), angles.sin()], -1)
        params = self._condition(features, part.shape[-1], context)
        part = part.expand(params.shape[:-1])
        k = self.bins
        real, real_log_det = _spline(
            part[..., ~part_angle], params[..., ~part_angle, : 3 * k - 1], k, self.bound, inverse
        )
        circle, circle_log_det = _circular(
            part[..., part_angle], params[..., part_angle, :], k, inverse
        )
        out = torch.empty_like(part)
        out[..., ~part_angle] = real
        out[..., part_angle] = circle
        log_det = real_log_det + circle_log_det.sum(-1)
        return torch.cat([kept.expand(*out.shape[:-1], -1), out], -1), log_det

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, angles={self.angles}, bins={self.bins}, bound={self.bound}"
