r"""Stochastic normalizing flows (Wu, Köhler & Noé 2020, NeurIPS): bijectors interleaved with
random MCMC steps, with path weights that keep importance sampling unbiased.

A flow maps :math:`z \sim \mu_0` through layers :math:`y_0 = z, y_1, \dots, y_T = x`. A bijector
contributes :math:`\Delta S_t = \log|\det \partial y_{t+1} / \partial y_t|`; a stochastic layer
draws :math:`y_{t+1} \sim q_t(y_t \to \cdot)` and contributes the log ratio of the backward to the
forward transition, :math:`\Delta S_t = \log \tilde q_t(y_{t+1} \to y_t) - \log q_t(y_t \to
y_{t+1})`. Then

.. math:: \log w = \log \tilde p(x) - \Big[\log \mu_0(z) - \sum_t \Delta S_t\Big]

is an exact importance log-weight of the whole path: :math:`E[w] = Z` and
:math:`E[w f(x)] / E[w] = E_p[f]` for any transition kernels (Wu et al. 2020, eq. 5–8). The
bracket is what :meth:`StochasticNormalizingFlow.sample_and_log_prob` returns in place of a
log-density, so :func:`nfkit.importance` and :func:`nfkit.fit_energy` treat a stochastic flow
like any flow.

Each stochastic layer samples the interpolated density
:math:`\log\pi_\lambda(y) = (1 - \lambda) \log \mu_0(y) + \lambda \log\tilde p(y)`. For kernels
in detailed balance with :math:`\pi_\lambda` (Metropolis, MALA, HMC) the reverse kernel is the
kernel itself and :math:`\Delta S = \log\pi_\lambda(y_t) - \log\pi_\lambda(y_{t+1})`; for the
unadjusted Langevin step the ratio of the two Gaussian transition densities is used.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from nfkit.bijectors.base import Bijector
from nfkit.distributions.base import (
    BijectorKwargs,
    Distribution,
    PushedForward,
    SampleShape,
)

__all__ = [
    "HMCLayer",
    "LangevinLayer",
    "MALALayer",
    "MetropolisLayer",
    "StochasticLayer",
    "StochasticNormalizingFlow",
]

LogProb = Callable[[Tensor], Tensor]


def _value_and_grad(log_prob: LogProb, y: Tensor) -> tuple[Tensor, Tensor]:
    r""":math:`\log\pi(y)` and :math:`\nabla\log\pi(y)`, keeping the graph when training."""
    # Differentiate through the gradient only when y carries a graph back to parameters.
    keep_graph = torch.is_grad_enabled() and y.requires_grad
    with torch.enable_grad():
        if not y.requires_grad:
            y = y.detach().requires_grad_(True)
        value = log_prob(y)
        (grad,) = torch.autograd.grad(value.sum(), y, create_graph=keep_graph)
    return value, grad


class StochasticLayer(nn.Module):
    r"""A random transition :math:`y \to y'` targeting :math:`\pi_\lambda`; not a bijector.

    Args:
        lam: :math:`\lambda \in [0, 1]`, where the layer sits between the base (0) and the
            target (1).
        steps: transitions per layer.
        step_size: the proposal's scale (its meaning depends on the kernel).
        trainable: make ``step_size`` a parameter (trained by :func:`nfkit.fit_energy`).

    """

    autograd_at_eval = True  # gradient-based kernels differentiate the target while sampling

    def __init__(
        self, lam: float = 1.0, steps: int = 1, step_size: float = 0.1, trainable: bool = False
    ) -> None:
        super().__init__()
        if not 0.0 <= lam <= 1.0 or steps < 1 or step_size <= 0:
            raise ValueError(
                f"need 0 <= lam <= 1, steps >= 1 and step_size > 0; got {lam}, {steps}, {step_size}"
            )
        self.lam, self.steps = lam, steps
        self.log_step = nn.Parameter(torch.tensor(math.log(step_size)), requires_grad=trainable)
        self.acceptance: float | None = None

    @property
    def step_size(self) -> Tensor:
        return self.log_step.exp()

    def transition(self, y: Tensor, log_prob: LogProb) -> tuple[Tensor, Tensor]:
        r"""``steps`` transitions from ``y`` (N, D); returns :math:`y'` and :math:`\Delta S`."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(lam={self.lam}, steps={self.steps}, "
            f"step_size={float(self.step_size):.4g})"
        )


class _MetropolisKernel(StochasticLayer):
    r"""Metropolis–Hastings steps; subclasses propose. Detailed balance gives
    :math:`\Delta S = \log\pi(y_0) - \log\pi(y_K)` for the whole layer.
    """

    def _propose(self, y: Tensor, log_prob: LogProb) -> tuple[Tensor, Tensor]:
        r"""A proposal and :math:`\log[q(y' \to y) / q(y \to y')]` (0 when symmetric)."""
        raise NotImplementedError

    def transition(self, y: Tensor, log_prob: LogProb) -> tuple[Tensor, Tensor]:
        start = current = log_prob(y)
        accepted = 0.0
        for _ in range(self.steps):
            proposal, log_q_ratio = self._propose(y, log_prob)
            proposed = log_prob(proposal)
            log_alpha = (proposed - current + log_q_ratio).detach()
            log_u = torch.rand_like(log_alpha).log()
            accept = (log_u < log_alpha) & torch.isfinite(proposed)
            y = torch.where(accept.unsqueeze(-1), proposal, y)
            current = torch.where(accept, proposed, current)
            accepted += float(accept.float().mean())
        self.acceptance = accepted / self.steps
        return y, start - current


class MetropolisLayer(_MetropolisKernel):
    r"""Random-walk Metropolis: propose :math:`y' = y + \sigma\xi`, :math:`\xi \sim \mathcal N(0,
    I)`, accept with probability :math:`\min(1, \pi(y')/\pi(y))`. ``step_size`` is
    :math:`\sigma`.
    """

    def _propose(self, y: Tensor, log_prob: LogProb) -> tuple[Tensor, Tensor]:
        return y + self.step_size * torch.randn_like(y), torch.zeros(y.shape[:-1]).to(y)


class MALALayer(_MetropolisKernel):
    r"""Metropolis-adjusted Langevin (Roberts & Tweedie 1996): propose
    :math:`y' = y + \epsilon\nabla\log\pi(y) + \sqrt{2\epsilon}\,\xi` and correct the asymmetric
    proposal in the acceptance. ``step_size`` is :math:`\epsilon`.
    """

    def _propose(self, y: Tensor, log_prob: LogProb) -> tuple[Tensor, Tensor]:
        eps = self.step_size
        _, grad = _value_and_grad(log_prob, y)
        proposal = y + eps * grad + (2 * eps).sqrt() * torch.randn_like(y)
        _, grad_back = _value_and_grad(log_prob, proposal)
        forward = (proposal - y - eps * grad).square().sum(-1)
        backward = (y - proposal - eps * grad_back).square().sum(-1)
        return proposal, (forward - backward) / (4 * eps)


class HMCLayer(_MetropolisKernel):
    r"""Hamiltonian Monte Carlo (Duane et al. 1987; Neal 2011): a fresh momentum
    :math:`p \sim \mathcal N(0, I)`, ``leapfrog`` leapfrog steps of size :math:`\epsilon` under
    :math:`H = -\log\pi(y) + \frac12\|p\|^2`, accepted with :math:`\min(1, e^{-\Delta H})`.
    The kernel keeps :math:`\pi` invariant and is reversible, so the layer's
    :math:`\Delta S` is that of any Metropolis kernel.
    """

    def __init__(
        self,
        lam: float = 1.0,
        steps: int = 1,
        step_size: float = 0.1,
        leapfrog: int = 5,
        trainable: bool = False,
    ) -> None:
        super().__init__(lam, steps, step_size, trainable)
        if leapfrog < 1:
            raise ValueError(f"leapfrog must be >= 1, got {leapfrog}")
        self.leapfrog = leapfrog

    def _propose(self, y: Tensor, log_prob: LogProb) -> tuple[Tensor, Tensor]:
        eps = self.step_size
        p = torch.randn_like(y)
        kinetic = 0.5 * p.square().sum(-1)
        _, grad = _value_and_grad(log_prob, y)
        q = y
        p = p + 0.5 * eps * grad
        for i in range(self.leapfrog):
            q = q + eps * p
            _, grad = _value_and_grad(log_prob, q)
            p = p + (eps if i < self.leapfrog - 1 else 0.5 * eps) * grad
        # The momentum part of the Hamiltonian's change enters like a proposal ratio.
        return q, kinetic - 0.5 * p.square().sum(-1)


class LangevinLayer(StochasticLayer):
    r"""Unadjusted overdamped Langevin steps, :math:`y' = y + \epsilon\nabla\log\pi(y) +
    \sqrt{2\epsilon}\,\xi` (no rejection). Its stationary law is only close to :math:`\pi`,
    but the path weight is exact: with the reverse step from :math:`y'`,

    .. math:: \Delta S = \tfrac12\|\xi\|^2
              - \frac{\|y - y' - \epsilon\nabla\log\pi(y')\|^2}{4\epsilon}

    (Wu et al. 2020, Sec. 3), so importance weights stay unbiased for any :math:`\epsilon`.
    """

    def transition(self, y: Tensor, log_prob: LogProb) -> tuple[Tensor, Tensor]:
        eps = self.step_size
        delta = torch.zeros(y.shape[:-1]).to(y)
        _, grad = _value_and_grad(log_prob, y)
        for _ in range(self.steps):
            noise = torch.randn_like(y)
            new = y + eps * grad + (2 * eps).sqrt() * noise
            _, grad_new = _value_and_grad(log_prob, new)
            back = (y - new - eps * grad_new).square().sum(-1) / (4 * eps)
            delta = delta + 0.5 * noise.square().sum(-1) - back
            y, grad = new, grad_new
        return y, delta


class StochasticNormalizingFlow(PushedForward):
    r"""A base distribution pushed through bijectors and stochastic layers (Wu et al. 2020).

    ``sample``/``rsample`` run the layers forward (reparametrized: gradients pass through
    bijectors, Langevin/MALA/HMC updates and accepted proposals). ``sample_and_log_prob``
    returns the samples with :math:`\log\mu_0(z) - \sum_t\Delta S_t` in place of the (intractable)
    marginal log-density: :math:`\log\tilde p(x)` minus it is an unbiased importance log-weight.
    ``log_prob`` raises; ``fit`` by maximum likelihood therefore does not apply, but
    :func:`nfkit.fit_energy` (reverse KL of the path, Wu et al. eq. 9) and
    :func:`nfkit.importance` do.

    Args:
        base: :math:`\mu_0`, a distribution with event shape ``(D,)``.
        layers: bijectors (event rank 1) and :class:`StochasticLayer` s, in sampling order.
        target: :math:`\log\tilde p`, the function the stochastic layers interpolate towards.

    Example:
        >>> import math, torch, nfkit.distributions as nfd
        >>> from nfkit.stochastic import HMCLayer, StochasticNormalizingFlow
        >>> _ = torch.manual_seed(0)
        >>> target = lambda x: -0.5 * ((x - 2.0) ** 2).sum(-1)  # log Z = log 2 pi = 1.84
        >>> ladder = [HMCLayer(lam=k / 10, step_size=0.3, leapfrog=5) for k in range(1, 11)]
        >>> base = nfd.MultivariateNormalDiag(loc=[0.0, 0.0])
        >>> snf = StochasticNormalizingFlow(base, ladder, target)
        >>> x, log_q = snf.sample_and_log_prob(20_000)
        >>> log_z = torch.logsumexp(target(x) - log_q, 0) - math.log(20_000)
        >>> round(float(x.mean()), 1), round(float(log_z), 1)
        (2.0, 1.8)

    """

    def __init__(
        self, base: Distribution, layers: Sequence[Bijector | StochasticLayer], target: LogProb
    ) -> None:
        super().__init__(batch_shape=base.batch_shape, event_shape=base.event_shape)
        if len(base.event_shape) != 1:
            raise ValueError(
                f"a stochastic normalizing flow needs vector events, got {list(base.event_shape)}"
            )
        for layer in layers:
            if not isinstance(layer, Bijector | StochasticLayer):
                raise TypeError(f"layers must be bijectors or stochastic layers, got {layer!r}")
        self.distribution = base
        self.layers = nn.ModuleList(layers)
        self.target = target

    def _interpolated(self, lam: float) -> LogProb:
        if lam == 1.0:
            return self.target
        base = self.distribution
        if lam == 0.0:
            return lambda y: base._log_prob(y, None)
        return lambda y: (1 - lam) * base._log_prob(y, None) + lam * self.target(y)

    def _path(self, shape: torch.Size, context: Tensor | None) -> tuple[Tensor, Tensor]:
        z, log_q = self.distribution.sample_and_log_prob(shape, context=context)
        y = z.reshape(-1, z.shape[-1])
        log_q = log_q.reshape(-1)
        for layer in self.layers:
            if isinstance(layer, StochasticLayer):
                y, delta = layer.transition(y, self._interpolated(layer.lam))
            else:
                y, delta = layer.forward_and_log_det(y, event_ndims=1, context=context)
            log_q = log_q - delta
        return y.reshape(z.shape), log_q.reshape(z.shape[:-1])

    def _rsample(self, shape: torch.Size, context: Tensor | None) -> Tensor:
        return self._path(shape[: len(shape) - len(self.batch_shape)], context)[0]

    def sample_and_log_prob(
        self,
        sample_shape: SampleShape = (),
        *,
        context: Tensor | None = None,
        bijector_kwargs: BijectorKwargs = None,
    ) -> tuple[Tensor, Tensor]:
        r"""Samples and the path term :math:`\log\mu_0(z) - \sum_t\Delta S_t` (see above)."""
        sample_shape, context = self._sampling_context(sample_shape, context, bijector_kwargs)
        return self._path(sample_shape, context)

    def _log_prob(self, value: Tensor, context: Tensor | None) -> Tensor:
        raise NotImplementedError(
            "a stochastic normalizing flow has no tractable density: use sample_and_log_prob, "
            "whose second value gives unbiased importance weights, or nfkit.importance"
        )
