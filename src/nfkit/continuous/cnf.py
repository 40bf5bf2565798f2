r"""Continuous normalizing flows: an ODE :math:`dx/dt = v(x, t)` as a bijector (Chen et al. 2018,
FFJORD).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torchdiffeq import odeint, odeint_adjoint

from nfkit._tensors import broadcast_shapes
from nfkit.bijectors.base import Bijector, Context, Pair, accepts_arrays
from nfkit.nets import Activation, VelocityNetwork

__all__ = ["ContinuousFlow", "exact_divergence", "hutchinson_divergence"]

Divergence = Literal["exact", "hutchinson"]
FIXED_STEP_METHODS = ("euler", "midpoint", "heun2", "heun3", "rk4", "explicit_adams")


def exact_divergence(v: Tensor, x: Tensor, create_graph: bool) -> tuple[Tensor, Tensor]:
    r""":math:`\nabla\cdot v = \sum_i \partial v_i / \partial x_i` by :math:`D` backward passes,
    and the squared Frobenius norm :math:`\|\partial v/\partial x\|_F^2` from the same rows.

    Args:
        v: ``(*, D)`` values of the field, computed from ``x`` with autograd recording.
        x: ``(*, D)`` the points.
        create_graph: keep the graph, to differentiate the result again (training).

    """
    div = torch.zeros(v.shape[:-1], dtype=v.dtype, device=v.device)
    frobenius = torch.zeros_like(div)
    if not v.requires_grad:  # a field that depends on neither x nor parameters
        return div, frobenius
    for i in range(v.shape[-1]):
        (row,) = torch.autograd.grad(
            v[..., i].sum(), x, create_graph=create_graph, retain_graph=True, allow_unused=True
        )
        if row is not None:
            div = div + row[..., i]
            frobenius = frobenius + row.square().sum(-1)
    return div, frobenius


def hutchinson_divergence(
    v: Tensor, x: Tensor, noise: Tensor, create_graph: bool
) -> tuple[Tensor, Tensor]:
    r"""Hutchinson's unbiased estimate :math:`\epsilon^\top (\partial v/\partial x)\,\epsilon` of
    the divergence with one vector-Jacobian product (:math:`\mathbb E[\epsilon\epsilon^\top] = I`),
    and the estimate :math:`\|\epsilon^\top \partial v/\partial x\|^2` of the squared Frobenius
    norm.

    References:
        Hutchinson, "A stochastic estimator of the trace of the influence matrix for Laplacian
        smoothing splines", 1989; Grathwohl et al., FFJORD, 2019,
        https://arxiv.org/abs/1810.01367.

    """
    if not v.requires_grad:
        zero = torch.zeros(v.shape[:-1], dtype=v.dtype, device=v.device)
        return zero, zero
    (vjp,) = torch.autograd.grad(
        v, x, noise, create_graph=create_graph, retain_graph=True, allow_unused=True
    )
    if vjp is None:
        zero = torch.zeros(v.shape[:-1], dtype=v.dtype, device=v.device)
        return zero, zero
    return (vjp * noise).sum(-1), vjp.square().sum(-1)


class _Dynamics(nn.Module):
    """The right-hand side of the augmented ODE: d/dt of (x, log-det[, kinetic, Frobenius])."""

    def __init__(
        self,
        flow: ContinuousFlow,
        context: Context,
        noise: Tensor | None,
        log_det: bool,
        regularize: bool,
    ) -> None:
        super().__init__()
        self.velocity = flow.velocity
        self.flow = [flow]  # a list, so that the flow is not registered as a submodule
        self.context, self.noise = context, noise
        self.log_det, self.regularize = log_det, regularize

    def forward(self, t: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        self.flow[0].last_nfe += 1
        x = state[0]
        if not self.log_det:
            return (self.velocity(x, t, self.context),)
        graph = torch.is_grad_enabled()
        with torch.enable_grad():
            if not x.requires_grad:
                x = x.detach().requires_grad_(True)
            v = self.velocity(x, t, self.context)
            if self.noise is None:
                div, frobenius = exact_divergence(v, x, create_graph=graph)
            else:
                div, frobenius = hutchinson_divergence(v, x, self.noise, create_graph=graph)
        out = (v, div)
        if self.regularize:
            out += (v.square().sum(-1), frobenius)
        return out if graph else tuple(o.detach() for o in out)


class ContinuousFlow(Bijector):
    r"""A continuous normalizing flow: the solution map of :math:`dx/dt = v_\theta(x, t)` from
    :math:`t=0` (base space) to :math:`t=1` (data space).

    By the instantaneous change of variables (Chen et al. 2018),

    .. math:: \frac{d}{dt}\log\left|\det \frac{\partial x(t)}{\partial x(0)}\right|
              = \nabla\cdot v_\theta(x(t), t),

    so ``forward`` integrates :math:`(x, \ell)` from 0 to 1 and ``inverse`` the same system
    from 1 to 0, each with one call of a torchdiffeq solver. ``forward``/``inverse`` alone
    (sampling) integrate :math:`x` only. The divergence is exact (:math:`D` backward passes)
    or, with ``divergence="hutchinson"``, Hutchinson's unbiased one-pass estimate with a
    Rademacher vector fixed per solve (FFJORD) — only while training with gradients on; a
    log-likelihood evaluated in eval mode or without gradients is always exact.

    Args:
        velocity: the field, a module called as ``velocity(x, t, context)`` returning
            ``(*, D)``; defaults to a :class:`~nfkit.nets.VelocityNetwork`.
        hidden_units: hidden widths of the default field.
        activation: activation of the default field (smooth: the solver differentiates it).
        divergence: ``"exact"`` or ``"hutchinson"`` (training only; for large :math:`D`).
        method: a torchdiffeq method: adaptive ``"dopri5"`` (default), ``"bosh3"``,
            ``"adaptive_heun"``, or fixed-step ``"rk4"``, ``"midpoint"``, ``"euler"``.
        rtol, atol: tolerances of adaptive methods.
        steps: number of steps of a fixed-step method.
        adjoint: backpropagate with the adjoint ODE (memory constant in the number of steps,
            one more solve per backward pass) instead of through the solver's operations.
        kinetic_energy: :math:`\lambda_K`, weight of :math:`\int_0^1\|v\|^2 dt` added to the
            training loss by :func:`nfkit.fit` (straighter paths, fewer solver steps; RNODE).
        jacobian_norm: :math:`\lambda_J`, weight of :math:`\int_0^1\|\partial v/\partial
            x\|_F^2 dt` (RNODE).

    Attributes:
        last_nfe: evaluations of the field in the last solve (the cost of adaptive solvers).

    References:
        Chen, Rubanova, Bettencourt, Duvenaud, "Neural Ordinary Differential Equations", 2018,
        https://arxiv.org/abs/1806.07366. Grathwohl, Chen, Bettencourt, Sutskever, Duvenaud,
        "FFJORD", 2019, https://arxiv.org/abs/1810.01367. Finlay, Jacobsen, Nurbekyan,
        Oberman, "How to train your neural ODE" (RNODE), 2020, https://arxiv.org/abs/2002.02798.

    Example:
        >>> import torch, nfkit.distributions as nfd
        >>> from nfkit.continuous import ContinuousFlow
        >>> _ = torch.manual_seed(0)
        >>> flow = ContinuousFlow(hidden_units=[16])(nfd.MultivariateNormalDiag(loc=[0.0, 0.0]))
        >>> x, log_p = flow.sample_and_log_prob(5)
        >>> torch.allclose(flow.log_prob(x), log_p, atol=1e-4)
        True

    """

    forward_min_event_ndims = 1
    autograd_at_eval = True  # the divergence is a Jacobian trace, by autograd

    def __init__(
        self,
        velocity: nn.Module | None = None,
        *,
        hidden_units: Sequence[int] = (64, 64),
        activation: Activation = "silu",
        divergence: Divergence = "exact",
        method: str = "dopri5",
        rtol: float = 1e-5,
        atol: float = 1e-5,
        steps: int | None = None,
        adjoint: bool = False,
        kinetic_energy: float = 0.0,
        jacobian_norm: float = 0.0,
    ) -> None:
        super().__init__()
        if divergence not in ("exact", "hutchinson"):
            raise ValueError(f"divergence must be 'exact' or 'hutchinson', got {divergence!r}")
        if method in FIXED_STEP_METHODS and steps is None:
            raise ValueError(f"method={method!r} is a fixed-step method: give steps=, e.g. 20")
        if steps is not None and steps < 1:
            raise ValueError(f"steps must be positive, got {steps}")
        if kinetic_energy < 0 or jacobian_norm < 0:
            raise ValueError("kinetic_energy and jacobian_norm must be >= 0")
        self.velocity = (
            velocity if velocity is not None else VelocityNetwork(hidden_units, activation)
        )
        self.divergence = divergence
        self.method, self.rtol, self.atol, self.steps = method, rtol, atol, steps
        self.adjoint = adjoint
        self.kinetic_energy, self.jacobian_norm = kinetic_energy, jacobian_norm
        self.last_nfe = 0
        self._penalty: Tensor | None = None

    def _build_field(self, value: Tensor, context: Context) -> None:
        """Build a lazy field with one call before solving (the adjoint needs its parameters)."""
        if getattr(self.velocity, "mlp", True) is None:
            with torch.no_grad():
                self.velocity(value, 0.0, context)

    def batch_dependent(self) -> bool:
        return self.steps is None  # an adaptive solver's steps are shared by the batch

    def _solver_options(self) -> dict[str, Any]:
        options = None if self.steps is None else {"step_size": 1.0 / self.steps}
        return {"rtol": self.rtol, "atol": self.atol, "method": self.method, "options": options}

    def _solve(self, value: Tensor, context: Context, inverse: bool, log_det: bool) -> Pair:
        if context is not None:
            batch = broadcast_shapes(value.shape[:-1], context.shape[:-1])
            value = value.expand(*batch, value.shape[-1])
        self._build_field(value, context)
        training = self.training and torch.is_grad_enabled()
        noise = None
        if log_det and training and self.divergence == "hutchinson":
            noise = torch.randint(0, 2, value.shape, device=value.device).to(value.dtype) * 2 - 1
        regularize = log_det and training and (self.kinetic_energy or self.jacobian_norm) > 0
        dynamics = _Dynamics(self, context, noise, log_det, regularize)
        state: tuple[Tensor, ...] = (value,)
        if log_det:
            zero = value.new_zeros(value.shape[:-1])
            state += (zero, zero, zero) if regularize else (zero,)
        span = torch.tensor([1.0, 0.0] if inverse else [0.0, 1.0]).to(value)
        kwargs = self._solver_options()
        self.last_nfe = 0
        if self.adjoint:
            params = tuple(p for p in self.velocity.parameters() if p.requires_grad)
            solution = odeint_adjoint(dynamics, state, span, adjoint_params=params, **kwargs)
        else:
            solution = odeint(dynamics, state, span, **kwargs)
        end = tuple(s[-1] for s in solution)
        if regularize:
            sign = -1.0 if inverse else 1.0
            self._penalty = sign * (
                self.kinetic_energy * end[2].mean() + self.jacobian_norm * end[3].mean()
            )
        return end[0], (end[1] if log_det else value.new_zeros(()))

    def pop_penalty(self) -> Tensor | None:
        """The regularization term of the last training solve (then forgotten), or ``None``."""
        penalty, self._penalty = self._penalty, None
        return penalty

    def _forward_and_log_det(self, z: Tensor, context: Context) -> Pair:
        return self._solve(z, context, inverse=False, log_det=True)

    def _inverse_and_log_det(self, x: Tensor, context: Context) -> Pair:
        return self._solve(x, context, inverse=True, log_det=True)

    @accepts_arrays
    def forward(self, z: Tensor, *, context: Tensor | None = None) -> Tensor:
        self._check_rank(z, None, "z")
        return self._solve(z, context, inverse=False, log_det=False)[0]

    @accepts_arrays
    def inverse(self, x: Tensor, *, context: Tensor | None = None) -> Tensor:
        self._check_rank(x, None, "x")
        return self._solve(x, context, inverse=True, log_det=False)[0]

    def trajectory(
        self, z: Tensor, times: int | Tensor = 11, *, context: Tensor | None = None
    ) -> Tensor:
        r"""The path :math:`x(t)` of base points ``z`` (shape ``(*, D)``) at ``times`` (a count
        of equally spaced times in [0, 1], or a 1-D tensor of them, increasing); returns
        ``(T, *, D)``, ``x(0) = z`` first. For pictures of the flow; no gradients.

        Example:
            >>> import torch
            >>> from nfkit.continuous import ContinuousFlow
            >>> ContinuousFlow(hidden_units=[8]).trajectory(torch.zeros(4, 2), 5).shape
            torch.Size([5, 4, 2])

        """
        self._check_rank(z, None, "z")
        grid = torch.linspace(0.0, 1.0, times) if isinstance(times, int) else times
        grid = grid.to(z)
        self._build_field(z, context)
        dynamics = _Dynamics(self, context, None, log_det=False, regularize=False)
        with torch.no_grad():
            (path,) = odeint(dynamics, (z,), grid, **self._solver_options())
        return path

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "velocity": self.velocity}

    def extra_repr(self) -> str:
        solver = f"method={self.method!r}" + (
            f", steps={self.steps}" if self.steps else f", rtol={self.rtol:g}, atol={self.atol:g}"
        )
        return f"divergence={self.divergence!r}, {solver}" + (", adjoint" if self.adjoint else "")
