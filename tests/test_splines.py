"""Rational-quadratic splines at the places where they break: knots, bounds, tails."""

import pytest
import torch

from nfkit.bijectors.splines import _knots, rational_quadratic_spline

# Every check runs in float64 (the fixture is in conftest.py).
pytestmark = pytest.mark.usefixtures("float64")


def params(n, bins=6, scale=2.0):
    torch.manual_seed(0)
    return (
        torch.randn(n, bins) * scale,
        torch.randn(n, bins) * scale,
        torch.randn(n, bins - 1) * scale,
    )


def test_round_trip_at_knots_bounds_and_tails():
    w, h, d = params(1)
    bound = 2.0
    knots_x = _knots(w[0], bound, 1e-3)
    x = torch.cat([knots_x, knots_x + 1e-9, knots_x - 1e-9, torch.tensor([-5.0, 7.0, 2.0, -2.0])])
    n = x.numel()
    w, h, d = (t.expand(n, -1) for t in (w, h, d))
    y, ld = rational_quadratic_spline(x, w, h, d, bound=bound)
    back, ild = rational_quadratic_spline(y, w, h, d, bound=bound, inverse=True)
    torch.testing.assert_close(back, x, atol=1e-12, rtol=0)
    torch.testing.assert_close(ild, -ld, atol=1e-10, rtol=0)
    # Knots map to knots; bounds to bounds; the tails are the identity with zero log-det.
    knots_y = _knots(h[0], bound, 1e-3)
    torch.testing.assert_close(y[: knots_x.numel()], knots_y)
    tails = x.abs() > bound
    torch.testing.assert_close(y[tails], x[tails])
    assert (ld[tails] == 0).all()


def test_log_det_matches_autograd_in_every_bin_and_gradients_are_finite():
    w, h, d = params(2000)
    for t in (w, h, d):
        t.requires_grad_(True)
    x = torch.linspace(-3.5, 3.5, 2000, requires_grad=True)
    for inverse in (False, True):
        y, ld = rational_quadratic_spline(x, w, h, d, bound=3.0, inverse=inverse)
        (dydx,) = torch.autograd.grad(y.sum(), x, retain_graph=True)
        torch.testing.assert_close(ld, dydx.log(), atol=1e-9, rtol=1e-9)
        (y.sum() + ld.sum()).backward()
        assert all(torch.isfinite(t.grad).all() for t in (w, h, d))


def test_monotone_and_zero_parameters_are_the_identity():
    w, h, d = params(1, scale=3.0)
    x = torch.linspace(-3.0, 3.0, 1001)
    y, _ = rational_quadratic_spline(x, *(t.expand(1001, -1) for t in (w, h, d)), bound=3.0)
    assert (y.diff() > 0).all()
    zeros = (torch.zeros(1001, 6), torch.zeros(1001, 6), torch.zeros(1001, 5))
    y, ld = rational_quadratic_spline(x, *zeros, bound=3.0)
    torch.testing.assert_close(y, x)
    torch.testing.assert_close(ld, torch.zeros_like(ld), atol=1e-12, rtol=0)


def test_the_inverse_gradient_survives_at_a_bins_top_edge():
    torch.manual_seed(0)
    w, h, d = (torch.randn(1, n, dtype=torch.float64) for n in (5, 5, 4))
    knot = _knots(h, 3.0, 1e-3)[0, 2]
    below = torch.nextafter(knot, torch.tensor(-10.0, dtype=torch.float64))
    for y0 in (knot, below, torch.tensor(3.0, dtype=torch.float64)):
        y = y0.reshape(1).clone().requires_grad_(True)
        x, log_det = rational_quadratic_spline(y, w, h, d, inverse=True, bound=3.0)
        (grad,) = torch.autograd.grad(x.sum(), y)
        torch.testing.assert_close(grad, log_det.exp().detach(), rtol=1e-9, atol=1e-12)
