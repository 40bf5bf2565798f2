r"""Affine autoregressive flows: MaskedAutoregressiveFlow (MAF) and its inverse (IAF)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from nfkit.bijectors.base import Bijector, Context, Invert, Pair
from nfkit.bijectors.conditioned import (
    _BASES,
    BijectorFunction,
    ConditionedBijector,
    conditioner_from,
    tfp_form,
)
from nfkit.nets import AutoregressiveNetwork

__all__ = [
    "AutoregressiveBijector",
    "AutoregressiveNetwork",
    "InverseAutoregressiveFlow",
    "MaskedAutoregressiveFlow",
    "split_shift_and_log_scale",
]

ShiftAndLogScaleFn = Callable[..., Tensor | tuple[Tensor, Tensor]]


def split_shift_and_log_scale(
    params: Tensor | tuple[Tensor, Tensor], log_scale_bound: float | None
) -> tuple[Tensor, Tensor]:
    r"""Read ``(shift, log_scale)`` from a conditioner's output.

    ``params`` is a tensor ``(*, D, 2)`` (shift, then log-scale, as TFP's networks return),
    ``(*, D, 1)`` (shift only: a volume-preserving flow), or a tuple ``(shift, log_scale)``.
    With ``log_scale_bound`` = :math:`B`, the log-scale is softly clipped to :math:`(-B, B)` by
    :math:`B \tanh(s / B)`, which keeps early training at large learning rates from blowing up.
    """
    if isinstance(params, tuple):
        shift, log_scale = params
    elif params.shape[-1] == 2:
        shift, log_scale = params[..., 0], params[..., 1]
    elif params.shape[-1] == 1:
        shift = params[..., 0]
        return shift, torch.zeros_like(shift)
    else:
        raise ValueError(
            f"a shift-and-log-scale network must return (*, D, 2) or (*, D, 1), got "
            f"{tuple(params.shape)}; build it with params=2"
        )
    if log_scale_bound is not None:
        log_scale = log_scale_bound * torch.tanh(log_scale / log_scale_bound)
    return shift, log_scale


Scale = Literal["softplus", "exp"]
_MIN_SCALE = 1e-3


def resolve_scale(scale: Scale | None, conditioner: Any, log_scale_bound: float | None) -> Scale:
    """An affine layer's form: ``scale`` as given; by default TFP's ``"exp"`` when its network
    was given TFP's way (a plain function or module, so TFP's code gives TFP's numbers) and
    nfkit's ``"softplus"`` for nfkit's networks. Checked with ``log_scale_bound``.
    """
    if scale is None:
        scale = "exp" if tfp_form(conditioner) else "softplus"
    check_scale(scale, log_scale_bound)
    return scale


def check_scale(scale: str, log_scale_bound: float | None) -> None:
    """Validate an affine layer's ``scale`` / ``log_scale_bound`` pair."""
    if scale not in ("softplus", "exp"):
        raise ValueError(f"scale must be 'softplus' or 'exp', got {scale!r}")
    if scale == "softplus" and log_scale_bound is not None:
        raise ValueError("log_scale_bound applies to scale='exp' only")


def affine_transform(
    value: Tensor, params: Any, scale: str, log_scale_bound: float | None, inverse: bool
) -> Pair:
    r"""An elementwise affine map from conditioner outputs ``(a, b)``, in either direction.

    The density direction (``inverse=True``) is :math:`z = m \odot x + t` with
    :math:`m = \operatorname{softplus}(b) + 10^{-3},\ t = a` (``scale="softplus"``) or
    :math:`m = e^{-b},\ t = -a e^{-b}` (``scale="exp"``, TFP's :math:`x = z e^{b} + a`); the
    sampling direction solves it for :math:`x`. Returns the output and the summed log-det.
    """
    a, b = split_shift_and_log_scale(params, log_scale_bound)
    if scale == "exp":
        # Each direction in its own form: x = z e^b + a stays finite where e^{-b} overflows.
        if inverse:
            return (value - a) * torch.exp(-b), -b.sum(-1)
        return value * torch.exp(b) + a, b.sum(-1)
    m = F.softplus(b) + _MIN_SCALE
    log_m, t = m.log(), a
    if inverse:
        return m * value + t, log_m.sum(-1)
    return (value - t) / m, -log_m.sum(-1)


class AutoregressiveBijector(ConditionedBijector):
    r"""Base of autoregressive layers: dim :math:`i` is transformed elementwise with parameters
    computed from the *data-side* dims before it, :math:`z_i = g(x_i;\ \theta(x_{<i}))`.

    The density direction (``inverse``) is one conditioner pass; the sampling direction
    (``forward``) fixes one more coordinate per pass: one pass on a single row (the first
    coordinate's parameters depend on no input), then :math:`D - 1` full passes. The
    conditioner is called as ``conditioner(x, D[, context=])`` and returns ``(*, D, params)``
    (see :class:`nfkit.nets.Conditioner`). Subclasses set ``params`` and give
    ``_transform(value, params, inverse) -> (out, log_det)`` (``inverse=True``: data to base).
    """

    forward_min_event_ndims = 1

    def _transform(self, value: Tensor, params: Any, inverse: bool) -> Pair:
        raise NotImplementedError

    def _forward_and_log_det(self, z: Tensor, context: Context) -> Pair:
        dims = z.shape[-1]
        x = torch.zeros_like(z)
        passes = dims
        if isinstance(self.conditioner, BijectorFunction):  # TFP's bijector_fn: D passes
            for _ in range(dims):
                x, log_det = self._inner(x, dims, context, z, inverse=False)  # type: ignore[misc]
            return x, log_det
        if context is None and dims > 1:
            # The first coordinate's parameters depend on nothing: one row of the network
            # gives them for the whole batch, which saves one of the D full passes.
            row = z.new_zeros((1,) * (z.ndim - 1) + (dims,))
            params = self._condition(row, dims, None)
            batch = z.shape[:-1]
            params = params.expand(*batch, *params.shape[len(batch) :])
            x = self._transform(z, params, inverse=False)[0]
            passes -= 1
        for _ in range(passes):
            x, log_det = self._transform(z, self._condition(x, dims, context), inverse=False)
        return x, log_det

    def _inverse_and_log_det(self, x: Tensor, context: Context) -> Pair:
        inner = self._inner(x, x.shape[-1], context, x, inverse=True)
        if inner is not None:
            return inner
        return self._transform(x, self._condition(x, x.shape[-1], context), inverse=True)


_BASES.add(AutoregressiveBijector)


class MaskedAutoregressiveFlow(AutoregressiveBijector):
    r"""Affine masked autoregressive flow (MAF, Papamakarios et al. 2017).

    An autoregressive network (MADE) reads the preceding coordinates and returns two numbers per
    dimension, :math:`(a_i, b_i) = \text{net}(x_{<i})`. With the default ``scale="softplus"``
    they are a shift and an unconstrained scale *in the density direction*,

    .. math:: z_i = s_i\, x_i + a_i, \quad s_i = \epsilon + \operatorname{softplus}(b_i),
              \qquad x_i = (z_i - a_i) / s_i,

    with :math:`\epsilon = 10^{-3}`; ``log|det J_inverse| = Σ log s_i``. The scale grows only
    linearly in :math:`b` and the shift does not pass through it, which keeps training at the
    chapter's learning rate (Adam 1e-2, batch 32) out of the poor optima the exponential form
    falls into (benchmarks/README.md; nflows makes the same choice). A zero network output
    gives :math:`s = \log 2 + \epsilon \approx 0.69`: an untrained layer widens its input by
    about 1.44, so an untrained stack starts broader than its base (this start measured better
    than an exact identity start on the chapter protocol: median 0.597 vs 0.627 nats over 15
    seeds). ``scale="exp"`` is TensorFlow Probability's form,
    :math:`x_i = z_i\, e^{b_i} + a_i`, with ``log|det J_forward| = Σ b_i``.

    Either way the density direction (``inverse``, data → base) is one network pass, while the
    sampling direction (``forward``) needs one pass per dimension: :math:`D` passes, each fixing
    one more coordinate. ``Invert(MaskedAutoregressiveFlow(net))`` is an IAF with the costs
    swapped.

    Args:
        shift_and_log_scale_fn: the network, as TFP takes it (the chapter's
            ``MaskedAutoregressiveFlow(anet)``): an nfkit conditioner such as
            ``AutoregressiveNetwork(params=2, ...)`` is used as it is; any other function is
            called TFP's way, ``fn(x)`` (plus ``context=``), returning ``(*, D, 2)`` or a tuple
            ``(a, b)``; ``(*, D, 1)`` is a shift alone (volume preserving). Its output for dim
            :math:`i` must depend only on :math:`x_{<i}` in its input order.
            A tuple ``(a, None)`` is a shift alone, as TFP's.
        bijector_fn: alternatively, TFP's: ``fn(x)`` (plus ``context=``) returns the bijector
            applied to the event (elementwise or on vectors), autoregressive in :math:`x`;
            sampling runs :math:`D` passes of it.
        is_constant_jacobian: TFP's flag that the log-det does not depend on the input (no
            validation; kept on the layer for callers).
        conditioner: alternatively, any callable in nfkit's convention,
            ``conditioner(x, D[, context=])`` returning ``(*, D, 2)`` (see
            :class:`nfkit.nets.Conditioner`).
        scale: ``"softplus"`` or ``"exp"`` (TFP's parametrization), as above. By default
            ``"softplus"`` with an nfkit network (the chapter's ``AutoregressiveNetwork``) and
            ``"exp"`` with a network given TFP's way (a plain function or module), so that
            TFP's code gives TFP's numbers.
        log_scale_bound: with ``scale="exp"``, softly clip :math:`b` to :math:`(-B, B)` with
            :math:`B\tanh(b/B)` (``None`` leaves it as the network returns it, as TFP does).
        unroll_loop: TFP's; accepted (the sampling loop is always a Python loop here).
        event_ndims: TFP's; only 1 (vector events) is supported.

    References:
        Papamakarios, Pavlakou, Murray. Masked Autoregressive Flow for Density Estimation.
        NeurIPS 2017. https://arxiv.org/abs/1705.07057

    Example:
        >>> import torch, nfkit.bijectors as nfb
        >>> _ = torch.manual_seed(0)
        >>> maf = nfb.MaskedAutoregressiveFlow(nfb.AutoregressiveNetwork(2, hidden_units=[16]))
        >>> z = torch.randn(4, 3)
        >>> torch.allclose(maf.inverse(maf.forward(z)), z, atol=1e-5)
        True

    """

    params = (1, 2)

    def __init__(
        self,
        shift_and_log_scale_fn: ShiftAndLogScaleFn | None = None,
        bijector_fn: Callable[..., Bijector] | None = None,
        is_constant_jacobian: bool = False,
        *,
        conditioner: ShiftAndLogScaleFn | None = None,
        scale: Scale | None = None,
        log_scale_bound: float | None = None,
        unroll_loop: bool = False,
        event_ndims: int = 1,
    ) -> None:
        name = type(self).__name__
        if event_ndims != 1:
            raise ValueError(f"{name} supports event_ndims=1 (vector events), got {event_ndims}")
        fn = conditioner_from(
            conditioner,
            shift_and_log_scale_fn,
            takes_units=False,
            name=name,
            bijector_fn=bijector_fn,
        )
        super().__init__(fn)
        self.scale = resolve_scale(scale, fn, log_scale_bound)
        self.log_scale_bound = log_scale_bound
        self.is_constant_jacobian = bool(is_constant_jacobian)

    def extra_repr(self) -> str:
        return f"scale={self.scale!r}"

    def _transform(self, value: Tensor, params: Any, inverse: bool) -> Pair:
        return affine_transform(value, params, self.scale, self.log_scale_bound, inverse)


class InverseAutoregressiveFlow(Invert):
    r"""Affine inverse autoregressive flow (IAF, Kingma et al. 2016): ``Invert(MAF)``.

    .. math:: x_i = s_i\, z_i + a_i, \quad (a_i, b_i) = \text{net}(z_{<i}),

    with :math:`s_i` from :math:`b_i` as in :class:`MaskedAutoregressiveFlow` (with
    ``scale="exp"``: :math:`x_i = (z_i - a_i)\, e^{-b_i}`),

    so sampling (``forward``) is one network pass and density evaluation (``inverse``) needs
    :math:`D` passes. Same arguments as :class:`MaskedAutoregressiveFlow`.

    References:
        Kingma, Salimans, Jozefowicz, Chen, Sutskever, Welling. Improved Variational Inference
        with Inverse Autoregressive Flow. NeurIPS 2016. https://arxiv.org/abs/1606.04934

    Example:
        >>> import torch, nfkit.bijectors as nfb
        >>> _ = torch.manual_seed(0)
        >>> iaf = nfb.InverseAutoregressiveFlow(nfb.AutoregressiveNetwork(2, hidden_units=[16]))
        >>> z = torch.randn(4, 3)
        >>> torch.allclose(iaf.inverse(iaf.forward(z)), z, atol=1e-5)
        True

    """

    def __init__(
        self,
        shift_and_log_scale_fn: ShiftAndLogScaleFn | None = None,
        bijector_fn: Callable[..., Bijector] | None = None,
        is_constant_jacobian: bool = False,
        *,
        conditioner: ShiftAndLogScaleFn | None = None,
        scale: Scale | None = None,
        log_scale_bound: float | None = None,
    ) -> None:
        maf = MaskedAutoregressiveFlow(
            shift_and_log_scale_fn,
            bijector_fn,
            is_constant_jacobian,
            conditioner=conditioner,
            scale=scale,
            log_scale_bound=log_scale_bound,
        )
        super().__init__(maf)  # Invert takes maf's is_constant_jacobian
