r"""Normalization layers as bijectors: ActNorm (Glow) and BatchNorm (RealNVP, MAF)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from nfkit.bijectors.base import Bijector, Context, Pair

__all__ = ["ActNorm", "BatchNorm", "data_init"]


def _feature_dim(rank: int) -> int:
    if rank not in (1, 2, 3):
        raise ValueError(
            "forward_min_event_ndims must be 1 (vectors (D,)), 2 (sequences (C, T)) or 3 "
            f"(images (C, H, W)), got {rank}"
        )
    return -rank


def data_init(model: Any, x: Tensor, context: Tensor | None = None) -> Tensor:
    """Start every data-initialized layer (:class:`ActNorm`) of ``model`` from the batch ``x``:
    ``x`` passes through ``model`` (a distribution or a bijector) once in the density
    direction, without gradients, and each layer not yet initialized sets its parameters
    from the values that reach it (lazy networks are built on the way). :func:`nfkit.fit`
    does this with its first batch; call it yourself before a hand-written training loop.
    Returns the log-density (or the inverse image, for a bijector) of ``x``.

    Example:
        >>> import torch, nfkit.bijectors as nfb
        >>> b = nfb.ActNorm()
        >>> _ = data_init(b, torch.randn(500, 2) * 3.0 + 1.0)
        >>> z = b.inverse(torch.randn(500, 2) * 3.0 + 1.0)
        >>> bool(b.initialized), bool((z.std(0) - 1).abs().max() < 0.2)
        (True, True)

    """
    layers = [m for m in model.modules() if isinstance(m, ActNorm) and not bool(m.initialized)]
    for layer in layers:
        layer._initializing = True
    try:
        with torch.no_grad():
            if hasattr(model, "_log_prob"):  # a distribution
                return model._log_prob(x, context)
            return model.inverse(x, context=context)
    finally:
        for layer in layers:
            layer._initializing = False


class ActNorm(Bijector):
    r"""Per-feature affine layer with data-dependent initialization (Glow's activation
    normalization).

    In the sampling direction :math:`x = z \odot e^{s} + b`; in the density direction
    :math:`z = (x - b) \odot e^{-s}`, with :math:`\log|\det J_f| = \sum_i s_i` (times
    :math:`HW` for images, where one :math:`(s, b)` pair serves each channel). Its start is
    explicit: :func:`data_init` (which :func:`nfkit.fit` runs on its first batch) sets
    :math:`b` to the mean and :math:`e^s` to the standard deviation of the values that reach
    the layer, so that its output starts standardized; ``initialized`` (saved with the
    weights) records that it happened. Until then the layer is the identity in both
    directions, whichever method is called.

    Args:
        features: :math:`D` (or channels :math:`C`); ``None`` takes it from the first input.
        forward_min_event_ndims: the event rank: 1 for vectors ``(*, D)``, 2 for sequences
            ``(*, C, T)``, 3 for images ``(*, C, H, W)`` (one pair per channel).
        data_init: take the start from data (``False``: start as the identity and never
            re-initialize).

    References:
        Kingma, Dhariwal, "Glow: Generative Flow with Invertible 1x1 Convolutions", NeurIPS
        2018, https://arxiv.org/abs/1807.03039.

    Example:
        >>> import torch, nfkit.bijectors as nfb
        >>> _ = torch.manual_seed(0)
        >>> b = nfb.ActNorm()
        >>> x = torch.randn(500, 2) * 3.0 + 1.0
        >>> z = nfb.data_init(b, x)  # sets the parameters from this batch
        >>> z.mean(0).abs().max() < 1e-5, (z.std(0) - 1).abs().max() < 1e-2
        (tensor(True), tensor(True))

    """

    is_constant_jacobian = True

    def __init__(
        self,
        features: int | None = None,
        *,
        forward_min_event_ndims: int = 1,
        data_init: bool = True,
    ) -> None:
        super().__init__()
        self._dim = _feature_dim(forward_min_event_ndims)
        self.forward_min_event_ndims = forward_min_event_ndims
        self.data_init = data_init
        self._initializing = False
        self.register_buffer("initialized", torch.tensor(not data_init))
        self.loc: nn.Parameter | None = None
        self.log_scale: nn.Parameter | None = None
        if features is not None:
            self._build(features, torch.device("cpu"), torch.get_default_dtype())

    def _build(self, features: int, device: torch.device, dtype: torch.dtype) -> None:
        shape = (features,) + (1,) * (-1 - self._dim)
        self.loc = nn.Parameter(torch.zeros(shape, device=device, dtype=dtype))
        self.log_scale = nn.Parameter(torch.zeros(shape, device=device, dtype=dtype))

    def _params(self, value: Tensor) -> tuple[Tensor, Tensor]:
        if self.loc is None:
            self._build(value.shape[self._dim], value.device, value.dtype)
        assert self.loc is not None and self.log_scale is not None
        return self.loc, self.log_scale

    def _log_det(self, log_scale: Tensor, value: Tensor) -> Tensor:
        positions = math.prod(value.shape[self._dim + 1 :]) if self._dim < -1 else 1
        return log_scale.sum() * positions

    def _initialize(self, x: Tensor) -> None:
        assert self.loc is not None and self.log_scale is not None
        dims = [d for d in range(x.ndim) if d != x.ndim + self._dim]
        with torch.no_grad():
            self.loc.copy_(x.mean(dims).reshape(self.loc.shape))
            std = x.std(dims, correction=0).reshape(self.loc.shape)
            self.log_scale.copy_(std.clamp(min=1e-6).log())
            self.initialized.fill_(True)

    def _forward_and_log_det(self, z: Tensor, context: Context) -> Pair:
        loc, log_scale = self._params(z)
        return z * log_scale.exp() + loc, self._log_det(log_scale, z)

    def batch_dependent(self) -> bool:
        return self._initializing and not bool(self.initialized)

    def _inverse_and_log_det(self, x: Tensor, context: Context) -> Pair:
        loc, log_scale = self._params(x)
        if self._initializing and not bool(self.initialized):
            self._initialize(x)
        return (x - loc) * (-log_scale).exp(), -self._log_det(log_scale, x)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        if self.loc is not None:
            config["features"] = self.loc.shape[0]
        return config

    def extra_repr(self) -> str:
        size = "?" if self.loc is None else self.loc.shape[0]
        return f"features={size}, initialized={bool(self.initialized)}"


class BatchNorm(Bijector):
    r"""Batch normalization as a bijector (Dinh et al. 2017; Papamakarios et al. 2017 place it
    between MAF layers).

    In the density direction

    .. math:: z = \frac{x - \mu}{\sqrt{v + \epsilon}}\, e^{\gamma} + \beta, \qquad
              \log|\det J_{f^{-1}}| = \sum_i \gamma_i - \tfrac12 \log(v_i + \epsilon),

    where while training :math:`(\mu, v)` are the batch's mean and (biased) variance over all
    batch dims, and running averages of them are kept; in eval mode, and always in the sampling
    direction, the running averages are used, so the layer is then a fixed affine map.

    Args:
        features: :math:`D`; ``None`` takes it from the first input.
        momentum: weight of the new batch in the running averages.
        eps: :math:`\epsilon`, added to the variance.

    References:
        Dinh, Sohl-Dickstein, Bengio, "Density estimation using Real NVP", ICLR 2017,
        https://arxiv.org/abs/1605.08803. Papamakarios, Pavlakou, Murray, "Masked
        Autoregressive Flow for Density Estimation", NeurIPS 2017,
        https://arxiv.org/abs/1705.07057.

    Example:
        >>> import torch, nfkit.bijectors as nfb
        >>> b = nfb.BatchNorm(2)
        >>> z = b.inverse(torch.randn(256, 2) * 4.0)  # training mode: batch statistics
        >>> bool((z.std(0) - 1).abs().max() < 1e-2)
        True

    """

    forward_min_event_ndims = 1

    def __init__(
        self, features: int | None = None, *, momentum: float = 0.1, eps: float = 1e-5
    ) -> None:
        super().__init__()
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"momentum must lie in (0, 1], got {momentum}")
        self.momentum, self.eps = momentum, eps
        self.use_batch_statistics = True  # in training mode (TFP's training=False: never)
        self.log_gamma: nn.Parameter | None = None
        self.beta: nn.Parameter | None = None
        if features is not None:
            self._build(features, torch.device("cpu"), torch.get_default_dtype())

    def _build(self, features: int, device: torch.device, dtype: torch.dtype) -> None:
        kw = {"device": device, "dtype": dtype}
        self.log_gamma = nn.Parameter(torch.zeros(features, **kw))
        self.beta = nn.Parameter(torch.zeros(features, **kw))
        self.register_buffer("running_mean", torch.zeros(features, **kw))
        self.register_buffer("running_var", torch.ones(features, **kw))

    def _params(self, value: Tensor) -> tuple[Tensor, Tensor]:
        if self.log_gamma is None:
            self._build(value.shape[-1], value.device, value.dtype)
        assert self.log_gamma is not None and self.beta is not None
        return self.log_gamma, self.beta

    def _forward_and_log_det(self, z: Tensor, context: Context) -> Pair:
        log_gamma, beta = self._params(z)
        std = (self.running_var + self.eps).sqrt()
        x = (z - beta) * (-log_gamma).exp() * std + self.running_mean
        return x, (std.log() - log_gamma).sum()

    def batch_dependent(self) -> bool:
        return self.training and self.use_batch_statistics  # batch statistics

    def _inverse_and_log_det(self, x: Tensor, context: Context) -> Pair:
        log_gamma, beta = self._params(x)
        if self.batch_dependent():
            rows = x.reshape(-1, x.shape[-1])
            mean, var = rows.mean(0), rows.var(0, correction=0)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(var.detach(), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        var = var + self.eps
        z = (x - mean) * var.rsqrt() * log_gamma.exp() + beta
        return z, (log_gamma - 0.5 * var.log()).sum()

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        if self.log_gamma is not None:
            config["features"] = self.log_gamma.shape[0]
        return config

    def extra_repr(self) -> str:
        size = "?" if self.log_gamma is None else self.log_gamma.shape[0]
        return f"features={size}, momentum={self.momentum}"


class BatchNormalization(BatchNorm):
    r"""TFP's ``tfb.BatchNormalization`` with Keras' defaults: :class:`BatchNorm` with
    :math:`\epsilon = 10^{-3}` and ``momentum`` = 0.99 as the weight of the *old* running
    value (Keras' convention; :class:`BatchNorm`'s is PyTorch's, the new batch's weight).

    The scale is :math:`e^{\gamma}` (TFP's Keras layer keeps :math:`\gamma > 0` by a
    constraint instead); the maps are the same. The inverse normalizes (data to base), with
    batch statistics in training mode, as TFP's with ``training=True``.

    Args:
        batchnorm_layer: TFP's Keras layer; there is none in PyTorch, so only ``None``.
        training: ``False`` always uses the running averages (TFP's meaning).
        features: :math:`D`; ``None`` takes it from the first input.
        momentum: Keras': the running averages keep this much of their old value.
        epsilon: added to the variance.

    Example:
        >>> import torch, nfkit.bijectors as nfb, nfkit.distributions as nfd
        >>> _ = torch.manual_seed(0)
        >>> dist = nfd.TransformedDistribution(
        ...     distribution=nfd.Sample(nfd.Normal(0.0, 1.0), [2]),
        ...     bijector=nfb.BatchNormalization())
        >>> y = nfd.MultivariateNormalDiag(loc=[1.0, 1.0], scale_diag=[2.0, 2.0]).sample(1000)
        >>> x = dist.bijector.inverse(y).detach()  # ~ N(0, 1): batch statistics while training
        >>> bool(x.mean().abs() < 1e-5), round(float(x.std()), 2)
        (True, 1.0)

    """

    def __init__(
        self,
        batchnorm_layer: None = None,
        training: bool = True,
        *,
        features: int | None = None,
        momentum: float = 0.99,
        epsilon: float = 1e-3,
    ) -> None:
        if batchnorm_layer is not None:
            raise TypeError(
                "BatchNormalization takes no Keras layer in nfkit: give features=, momentum= "
                "and epsilon= instead"
            )
        if not 0.0 <= momentum < 1.0:
            raise ValueError(
                f"momentum (Keras': the old value's weight) must lie in [0, 1), got {momentum}"
            )
        super().__init__(features, momentum=1.0 - momentum, eps=epsilon)
        self.use_batch_statistics = bool(training)
