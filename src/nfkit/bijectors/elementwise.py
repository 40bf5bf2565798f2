r"""Elementwise bijectors with diagonal Jacobians: Identity, Exp, Sigmoid, Tanh, Softplus."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from nfkit.bijectors.base import Bijector, Context, Pair

__all__ = ["Exp", "Identity", "Sigmoid", "Softplus", "Tanh"]


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
    r"""The logistic function :math:`x = 1 / (1 + e^{-z})`, mapping :math:`\mathbb{R}` onto (0, 1).

    Log-det: :math:`\log \sigma'(z) = -\mathrm{softplus}(-z) - \mathrm{softplus}(z)`; the inverse
    is the logit :math:`z = \log x - \log(1 - x)` with log-det :math:`-\log x - \log(1 - x)`.

    Example:
        >>> import torch, nfkit.bijectors as nfb
        >>> nfb.Sigmoid().forward(torch.tensor([0.0]))
        tensor([0.5000])

    """

    def _forward_and_log_det(self, z: Tensor, context: Context) -> Pair:
        return torch.sigmoid(z), -F.softplus(-z) - F.softplus(z)

    def _inverse_and_log_det(self, x: Tensor, context: Context) -> Pair:
        log_x, log_1mx = x.log(), torch.log1p(-x)
        return log_x - log_1mx, -log_x - log_1mx


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
    r"""The softplus :math:`x = \log(1 + e^{z})`, mapping the real line onto :math:`(0, \infty)`.

    Log-det: :math:`\log \sigma(z) = -\mathrm{softplus}(-z)`. Inverse:
    :math:`z = x + \log(-\mathrm{expm1}(-x))`, with log-det :math:`-\log(-\mathrm{expm1}(-x))`.

    Example:
        >>> import torch, nfkit.bijectors as nfb
        >>> nfb.Softplus().inverse(torch.tensor([2.0]).log())
        tensor([0.])

    """

    def _forward_and_log_det(self, z: Tensor, context: Context) -> Pair:
        return F.softplus(z), -F.softplus(-z)

    def _inverse_and_log_det(self, x: Tensor, context: Context) -> Pair:
        log_term = torch.log(-torch.expm1(-x))
        return x + log_term, -log_term
