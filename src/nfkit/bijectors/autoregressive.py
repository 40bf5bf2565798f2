r"""Affine autoregressive flows: MaskedAutoregressiveFlow (MAF) and its inverse (IAF)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from nfkit.bijectors.base import Bijector, Context, Invert, Pair
from nfkit.nets import AutoregressiveNetwork

__all__ = [
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

    ``params`` is either a tuple ``(shift, log_scale)`` or a tensor ``(*, D, 2)`` (shift, then
    log-scale, as TFP's networks return) or ``(*, D, 1)`` (shift only: a volume-preserving flow).
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


class MaskedAutoregressiveFlow(Bijector):
    r"""Affine masked autoregressive flow (MAF, Papamakarios et al. 2017).

    With :math:`(\mu_i, \alpha_i) = \text{net}(x_{<i})` from an autoregressive network (MADE),

    .. math:: x_i = z_i\, e^{\alpha_i} + \mu_i, \qquad z_i = (x_i - \mu_i)\, e^{-\alpha_i},

    and :math:`\log|\det J_f| = \sum_i \alpha_i`. Because the parameters depend on :math:`x`, the
    density direction (``inverse``, data → base) is one network pass, while the sampling
    direction (``forward``) needs one pass per dimension: :math:`D` passes, each fixing one more
    coordinate. ``Invert(MaskedAutoregressiveFlow(net))`` is an IAF with the costs swapped.

    Args:
        shift_and_log_scale_fn: a network mapping ``x`` of shape ``(*, D)`` (and ``context=`` if
            given) to ``(*, D, 2)`` — e.g. ``AutoregressiveNetwork(params=2, ...)`` — or to a tuple
            ``(shift, log_scale)``. Its output for dim :math:`i` must depend only on
            :math:`x_{<i}` in its input order.
        log_scale_bound: softly clip log-scales to :math:`(-B, B)` with :math:`B\tanh(\alpha/B)`
            (``None`` leaves them as the network returns them, as TFP does).

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

    forward_min_event_ndims = 1

    def __init__(
        self,
        shift_and_log_scale_fn: ShiftAndLogScaleFn,
        *,
        log_scale_bound: float | None = None,
    ) -> None:
        super().__init__()
        self.shift_and_log_scale_fn = shift_and_log_scale_fn
        self.log_scale_bound = log_scale_bound

    def _params(self, x: Tensor, context: Context) -> tuple[Tensor, Tensor]:
        out = (
            self.shift_and_log_scale_fn(x)
            if context is None
            else self.shift_and_log_scale_fn(x, context=context)
        )
        return split_shift_and_log_scale(out, self.log_scale_bound)

    def _forward_and_log_det(self, z: Tensor, context: Context) -> Pair:
        x = torch.zeros_like(z)
        for _ in range(z.shape[-1]):
            shift, log_scale = self._params(x, context)
            x = z * log_scale.exp() + shift
        return x, log_scale.sum(-1)

    def _inverse_and_log_det(self, x: Tensor, context: Context) -> Pair:
        shift, log_scale = self._params(x, context)
        return (x - shift) * torch.exp(-log_scale), -log_scale.sum(-1)


class InverseAutoregressiveFlow(Invert):
    r"""Affine inverse autoregressive flow (IAF, Kingma et al. 2016): ``Invert(MAF)``.

    .. math:: x_i = (z_i - \mu_i)\, e^{-\alpha_i}, \quad (\mu_i, \alpha_i) = \text{net}(z_{<i}),

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
        shift_and_log_scale_fn: ShiftAndLogScaleFn,
        *,
        log_scale_bound: float | None = None,
    ) -> None:
        super().__init__(
            MaskedAutoregressiveFlow(shift_and_log_scale_fn, log_scale_bound=log_scale_bound)
        )
