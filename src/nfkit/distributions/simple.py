r"""Base distributions: Normal, MultivariateNormalDiag, Uniform and the Independent wrapper."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from nfkit._tensors import ArrayLike, as_size, broadcast_shapes, register_tensor
from nfkit.distributions.base import Distribution, SampleShape, gaussian_noise

__all__ = [
    "Independent",
    "MultivariateNormalDiag",
    "MultivariateNormalTriL",
    "Normal",
    "Sample",
    "Uniform",
    "VonMises",
]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _normal_log_pdf(x: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
    return -0.5 * ((x - loc) / scale) ** 2 - scale.log() - _HALF_LOG_2PI


class Normal(Distribution):
    r"""Univariate normal :math:`\mathcal N(\mu, \sigma^2)`, scalar events, batched by broadcasting.

    .. math:: \log p(x) = -\tfrac12 \left(\tfrac{x-\mu}{\sigma}\right)^2 - \log\sigma
              - \tfrac12\log 2\pi

    Args:
        loc: mean :math:`\mu`.
        scale: standard deviation :math:`\sigma > 0`.

    Example:
        >>> import nfkit.distributions as nfd
        >>> nfd.Normal(loc=[0.0, 1.0], scale=1.0)
        <nfkit.distributions.Normal 'Normal' batch_shape=[2] event_shape=[] dtype=float32>

    """

    def __init__(self, loc: ArrayLike = 0.0, scale: ArrayLike = 1.0) -> None:
        super().__init__()
        register_tensor(self, "loc", loc)
        register_tensor(self, "scale", scale)
        self._batch_shape = broadcast_shapes(self.loc.shape, self.scale.shape)

    def _rsample(self, shape: torch.Size, context: Tensor | None) -> Tensor:
        eps = gaussian_noise(shape, self.loc.dtype, self.loc.device)
        return self.loc + self.scale * eps

    def _log_prob(self, value: Tensor, context: Tensor | None) -> Tensor:
        return _normal_log_pdf(value, self.loc, self.scale)

    def mean(self) -> Tensor:
        return self.loc.expand(self.batch_shape)

    mode = mean

    def variance(self) -> Tensor:
        return (self.scale**2).expand(self.batch_shape)

    def entropy(self) -> Tensor:
        return (0.5 + _HALF_LOG_2PI + self.scale.log()).expand(self.batch_shape)


class MultivariateNormalDiag(Distribution):
    r"""Multivariate normal with diagonal covariance, :math:`\mathcal N(\mu, \Sigma)`,
    :math:`\Sigma = \mathrm{diag}(\sigma^2)`.

    Events are vectors of size :math:`D` (the last dim of ``loc``); leading dims of ``loc`` and
    ``scale_diag`` are batch dims. ``log_prob`` sums the univariate log-densities over the event.

    Args:
        loc: mean, shape ``(*, D)``; zeros when only ``scale_diag`` is given.
        scale_diag: standard deviations, shape ``(*, D)``; ones when not given.

    Example:
        >>> import nfkit.distributions as nfd
        >>> nfd.MultivariateNormalDiag(loc=[0.0] * 2)
        <nfkit.distributions.MultivariateNormalDiag 'MultivariateNormalDiag'
        batch_shape=[] event_shape=[2] dtype=float32>
        >>> nfd.MultivariateNormalDiag(loc=[[0.0, 0.0]] * 4).batch_shape
        torch.Size([4])

    """

    def __init__(self, loc: ArrayLike | None = None, scale_diag: ArrayLike | None = None) -> None:
        super().__init__()
        if loc is None and scale_diag is None:
            raise ValueError("MultivariateNormalDiag needs loc or scale_diag (to know D)")
        loc_t = register_tensor(self, "loc", loc if loc is not None else 0.0)
        scale_t = register_tensor(self, "scale_diag", scale_diag if scale_diag is not None else 1.0)
        shape = broadcast_shapes(loc_t.shape, scale_t.shape)
        if len(shape) < 1:
            raise ValueError("loc or scale_diag must have an event dim: use [0.0] * D")
        self._batch_shape, self._event_shape = shape[:-1], shape[-1:]

    def _rsample(self, shape: torch.Size, context: Tensor | None) -> Tensor:
        eps = gaussian_noise(shape + self.event_shape, self.dtype, self.device)
        return self.loc + self.scale_diag * eps

    def _log_prob(self, value: Tensor, context: Tensor | None) -> Tensor:
        return _normal_log_pdf(value, self.loc, self.scale_diag).sum(-1)

    def mean(self) -> Tensor:
        return self.loc.expand(self.batch_shape + self.event_shape)

    mode = mean

    def variance(self) -> Tensor:
        return (self.scale_diag**2).expand(self.batch_shape + self.event_shape)

    def entropy(self) -> Tensor:
        per = 0.5 + _HALF_LOG_2PI + self.scale_diag.log()
        return per.expand(self.batch_shape + self.event_shape).sum(-1)


class MultivariateNormalTriL(Distribution):
    r"""Multivariate normal :math:`\mathcal N(\mu, L L^\top)` given the Cholesky factor
    :math:`L` of its covariance (lower triangular, positive diagonal).

    .. math:: \log p(x) = -\tfrac12 \lVert L^{-1}(x - \mu) \rVert^2 - \sum_i \log L_{ii}
              - \tfrac D2 \log 2\pi

    Args:
        loc: mean, shape ``(*, D)``.
        scale_tril: :math:`L`, shape ``(*, D, D)`` (entries above the diagonal are ignored);
            leading dims of both are batch dims.

    Example:
        >>> import torch, nfkit.distributions as nfd
        >>> d = nfd.MultivariateNormalTriL([0.0, 0.0], [[1.0, 0.0], [0.5, 2.0]])
        >>> d.sample(4).shape, round(float(d.log_prob(torch.zeros(2))), 4)
        (torch.Size([4, 2]), -2.5310)

    """

    def __init__(self, loc: ArrayLike, scale_tril: ArrayLike) -> None:
        super().__init__()
        loc_t = register_tensor(self, "loc", loc)
        tril = register_tensor(self, "scale_tril", scale_tril)
        if loc_t.ndim < 1 or tril.ndim < 2 or tril.shape[-2:] != (loc_t.shape[-1],) * 2:
            raise ValueError(
                f"scale_tril must be (*, D, D) for loc (*, D), got {list(tril.shape)} and "
                f"{list(loc_t.shape)}"
            )
        self._batch_shape = broadcast_shapes(loc_t.shape[:-1], tril.shape[:-2])
        self._event_shape = loc_t.shape[-1:]

    def _rsample(self, shape: torch.Size, context: Tensor | None) -> Tensor:
        eps = gaussian_noise(shape + self.event_shape, self.dtype, self.device)
        return self.loc + (torch.tril(self.scale_tril) @ eps.unsqueeze(-1)).squeeze(-1)

    def _log_prob(self, value: Tensor, context: Tensor | None) -> Tensor:
        tril = torch.tril(self.scale_tril)
        diff = (value - self.loc).unsqueeze(-1)
        batch = broadcast_shapes(diff.shape[:-2], tril.shape[:-2])
        z = torch.linalg.solve_triangular(
            tril.expand(*batch, *tril.shape[-2:]),
            diff.expand(*batch, *diff.shape[-2:]),
            upper=False,
        ).squeeze(-1)
        log_det = tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        return -0.5 * (z**2).sum(-1) - log_det - self.event_shape[0] * _HALF_LOG_2PI

    def mean(self) -> Tensor:
        return self.loc.expand(self.batch_shape + self.event_shape)

    mode = mean

    def covariance(self) -> Tensor:
        tril = torch.tril(self.scale_tril)
        return (tril @ tril.mT).expand(self.batch_shape + self.event_shape * 2)

    def variance(self) -> Tensor:
        return self.covariance().diagonal(dim1=-2, dim2=-1)

    def entropy(self) -> Tensor:
        log_det = torch.tril(self.scale_tril).diagonal(dim1=-2, dim2=-1).log().sum(-1)
        d = self.event_shape[0]
        return (d * (0.5 + _HALF_LOG_2PI) + log_det).expand(self.batch_shape)


class Uniform(Distribution):
    r"""Uniform on :math:`[a, b)`, scalar events: :math:`\log p(x) = -\log(b - a)` inside,
    :math:`-\infty` outside.

    Args:
        low: :math:`a`.
        high: :math:`b > a`.

    Example:
        >>> import torch, nfkit.distributions as nfd
        >>> nfd.Uniform(0.0, 2.0).log_prob(torch.tensor([1.0, 3.0]))
        tensor([-0.6931,    -inf])

    """

    def __init__(self, low: ArrayLike = 0.0, high: ArrayLike = 1.0) -> None:
        super().__init__()
        register_tensor(self, "low", low)
        register_tensor(self, "high", high)
        if bool((self.high <= self.low).any()):
            raise ValueError("Uniform needs low < high")
        self._batch_shape = broadcast_shapes(self.low.shape, self.high.shape)

    def _rsample(self, shape: torch.Size, context: Tensor | None) -> Tensor:
        u = torch.rand(shape, dtype=self.dtype, device=self.device)
        return self.low + (self.high - self.low) * u

    def _log_prob(self, value: Tensor, context: Tensor | None) -> Tensor:
        inside = (value >= self.low) & (value < self.high)
        log_density = -(self.high - self.low).log()
        return torch.where(inside, log_density, torch.full_like(log_density, -math.inf))

    def mean(self) -> Tensor:
        return ((self.low + self.high) / 2).expand(self.batch_shape)

    def variance(self) -> Tensor:
        return ((self.high - self.low) ** 2 / 12).expand(self.batch_shape)

    def entropy(self) -> Tensor:
        return (self.high - self.low).log().expand(self.batch_shape)


class Independent(Distribution):
    r"""Reinterpret the rightmost batch dims of a distribution as event dims.

    ``Independent(Normal(loc=torch.zeros(3)), 1)`` is a 3-D standard normal with event shape
    ``[3]``: its ``log_prob`` sums the three univariate log-densities.

    Args:
        distribution: the base distribution.
        reinterpreted_batch_ndims: how many batch dims become event dims (default, as TFP's:
            all but the first, so a batch of rank 1 stays a batch).

    Example:
        >>> import torch, nfkit.distributions as nfd
        >>> nfd.Independent(nfd.Normal(loc=torch.zeros(4, 3)), 1)
        <nfkit.distributions.Independent 'Independent'
        batch_shape=[4] event_shape=[3] dtype=float32>
        >>> nfd.Independent(nfd.Normal(loc=torch.zeros(5, 4, 3))).batch_shape  # TFP's default
        torch.Size([5])

    """

    def __init__(
        self, distribution: Distribution, reinterpreted_batch_ndims: int | None = None
    ) -> None:
        super().__init__()
        self.distribution = distribution
        base_batch = distribution.batch_shape
        n = reinterpreted_batch_ndims
        if n is None:
            n = max(len(base_batch) - 1, 0)
        if not 0 <= n <= len(base_batch):
            raise ValueError(
                f"reinterpreted_batch_ndims={n} but the distribution has batch shape "
                f"{list(base_batch)}"
            )
        self.reinterpreted_batch_ndims = n
        split = len(base_batch) - n
        self._batch_shape = base_batch[:split]
        self._event_shape = base_batch[split:] + distribution.event_shape

    def _rsample(self, shape: torch.Size, context: Tensor | None) -> Tensor:
        inner = self.distribution.batch_shape[len(self.batch_shape) :]  # the reinterpreted dims
        return self.distribution._rsample(shape + inner, context)

    def _log_prob(self, value: Tensor, context: Tensor | None) -> Tensor:
        log_prob = self.distribution._log_prob(value, context)
        n = self.reinterpreted_batch_ndims
        return log_prob.sum(dim=tuple(range(-n, 0))) if n else log_prob

    def mean(self) -> Tensor:
        return self.distribution.mean()

    def mode(self) -> Tensor:
        return self.distribution.mode()

    def variance(self) -> Tensor:
        return self.distribution.variance()

    def entropy(self) -> Tensor:
        entropy, n = self.distribution.entropy(), self.reinterpreted_batch_ndims
        return entropy.sum(dim=tuple(range(-n, 0))) if n else entropy


class Sample(Distribution):
    r"""``sample_shape`` independent draws of ``distribution`` as one event (TFP's
    ``tfd.Sample``, the usual flow base): event shape ``sample_shape + event_shape``, and
    :math:`\log p(x) = \sum_i \log p_0(x_i)` over the draws.

    Args:
        distribution: the distribution drawn from.
        sample_shape: how many draws make one event (an int or a shape).

    Example:
        >>> import torch, nfkit.distributions as nfd
        >>> base = nfd.Sample(nfd.Normal(0.0, 1.0), sample_shape=[2])
        >>> base
        <nfkit.distributions.Sample 'Sample' batch_shape=[] event_shape=[2] dtype=float32>
        >>> base.sample(5).shape, float(base.log_prob(torch.zeros(2)))
        (torch.Size([5, 2]), -1.8378770351409912)

    """

    def __init__(self, distribution: Distribution, sample_shape: SampleShape = ()) -> None:
        super().__init__()
        self.distribution = distribution
        self.sample_shape = as_size(sample_shape)
        self._batch_shape = distribution.batch_shape
        self._event_shape = self.sample_shape + distribution.event_shape

    def _swap(self, value: Tensor, lead: int, first: int, second: int) -> Tensor:
        """Exchange the block of ``first`` dims after ``lead`` dims with the next ``second``."""
        order = [*range(lead), *range(lead + first, lead + first + second)]
        order += [*range(lead, lead + first), *range(lead + first + second, value.ndim)]
        return value.permute(order)

    def _rsample(self, shape: torch.Size, context: Tensor | None) -> Tensor:
        lead = shape[: len(shape) - len(self.batch_shape)]
        draws = self.distribution._rsample(lead + self.sample_shape + self.batch_shape, context)
        # (*lead, *sample, *batch, *event) -> (*lead, *batch, *sample, *event)
        return self._swap(draws, len(lead), len(self.sample_shape), len(self.batch_shape))

    def _log_prob(self, value: Tensor, context: Tensor | None) -> Tensor:
        ns, nb = len(self.sample_shape), len(self.batch_shape)
        lead = value.ndim - nb - len(self.event_shape)
        per_draw = self.distribution._log_prob(self._swap(value, lead, nb, ns), context)
        return per_draw.sum(dim=tuple(range(lead, lead + ns))) if ns else per_draw


class VonMises(Distribution):
    r"""The von Mises distribution on the circle, scalar events in :math:`[-\pi, \pi)`:
    :math:`\log p(x) = \kappa \cos(x - \mu) - \log(2\pi I_0(\kappa))`; the base of flows on
    circles and tori (``Independent(VonMises(...), 1)``). Samples come from torch's sampler
    (rejection), without gradients.

    Args:
        loc: :math:`\mu`.
        concentration: :math:`\kappa > 0` (small: nearly uniform on the circle).

    Example:
        >>> import torch, nfkit.distributions as nfd
        >>> p = nfd.VonMises(0.0, 1e-8).log_prob(torch.tensor([0.0, 3.0]))
        >>> torch.allclose(p, torch.full((2,), -1.8379), atol=1e-4)  # log(1 / 2 pi)
        True

    """

    def __init__(self, loc: ArrayLike = 0.0, concentration: ArrayLike = 1.0) -> None:
        super().__init__()
        register_tensor(self, "loc", loc)
        register_tensor(self, "concentration", concentration)
        if bool((self.concentration <= 0).any()):
            raise ValueError("VonMises needs concentration > 0")
        self._batch_shape = broadcast_shapes(self.loc.shape, self.concentration.shape)

    def _rsample(self, shape: torch.Size, context: Tensor | None) -> Tensor:
        sampler = torch.distributions.VonMises(self.loc, self.concentration)
        return sampler.sample(shape[: len(shape) - len(self.batch_shape)])

    def _log_prob(self, value: Tensor, context: Tensor | None) -> Tensor:
        kappa = self.concentration
        log_i0 = torch.log(torch.special.i0e(kappa)) + kappa
        return kappa * torch.cos(value - self.loc) - log_i0 - math.log(2 * math.pi)
