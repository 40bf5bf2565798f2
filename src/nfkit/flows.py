r"""One-line flows with sensible defaults: ``maf``, ``iaf``, ``realnvp``, ``nsf``, ``cnf``.

Each returns a :class:`~nfkit.distributions.TransformedDistribution` of a standard normal base:
``layers`` flow layers with a reversal of the coordinates between them, so that every
coordinate is transformed conditioned on every other one somewhere in the stack.

Example:
    >>> import torch, nfkit
    >>> flow = nfkit.flows.maf(3, layers=2, hidden=[16])
    >>> flow.log_prob(torch.zeros(4, 3)).shape
    torch.Size([4])

"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from nfkit.bijectors import (
    AutoregressiveNetwork,
    Bijector,
    Chain,
    InverseAutoregressiveFlow,
    MaskedAutoregressiveFlow,
    MaskedAutoregressiveSpline,
    RealNVP,
    Reverse,
    SplineCoupling,
)
from nfkit.bijectors.splines import spline_parameter_count
from nfkit.continuous.cnf import ContinuousFlow, Divergence
from nfkit.distributions import MultivariateNormalDiag, TransformedDistribution
from nfkit.nets import Activation

__all__ = ["FLOWS", "cnf", "iaf", "maf", "nsf", "realnvp"]


def _stack(features: int, layers: int, make: Callable[[], Bijector]) -> TransformedDistribution:
    if features < 1 or layers < 1:
        raise ValueError(f"features and layers must be positive, got {features} and {layers}")
    bijectors: list[Bijector] = []
    for i in range(layers):
        if i:
            bijectors.append(Reverse())
        bijectors.append(make())
    return TransformedDistribution(MultivariateNormalDiag(loc=[0.0] * features), Chain(bijectors))


def _autoregressive(
    kind: type[MaskedAutoregressiveFlow] | type[InverseAutoregressiveFlow],
    features: int,
    layers: int,
    hidden: Sequence[int],
    activation: Activation,
    context: int | None,
) -> TransformedDistribution:
    def make() -> Bijector:
        net = AutoregressiveNetwork(2, features, hidden, activation, context_features=context)
        return kind(net)

    return _stack(features, layers, make)


def maf(
    features: int,
    *,
    layers: int = 5,
    hidden: Sequence[int] = (128, 128),
    activation: Activation = "relu",
    context: int | None = None,
) -> TransformedDistribution:
    """Masked autoregressive flow (Papamakarios et al. 2017): fast density, D-pass sampling.

    Args:
        features: data dimension D.
        layers: MAF layers (reversals between them).
        hidden: MADE hidden widths.
        activation: hidden activation.
        context: width of a conditioning input (conditional density), or ``None``.

    """
    return _autoregressive(MaskedAutoregressiveFlow, features, layers, hidden, activation, context)


def iaf(
    features: int,
    *,
    layers: int = 5,
    hidden: Sequence[int] = (128, 128),
    activation: Activation = "relu",
    context: int | None = None,
) -> TransformedDistribution:
    """Inverse autoregressive flow (Kingma et al. 2016): one-pass sampling, D-pass density.

    Arguments as :func:`maf`.
    """
    return _autoregressive(InverseAutoregressiveFlow, features, layers, hidden, activation, context)


def realnvp(
    features: int,
    *,
    layers: int = 5,
    hidden: Sequence[int] = (128, 128),
    activation: Activation = "relu",
) -> TransformedDistribution:
    """Affine coupling flow (Dinh et al. 2016): one pass in both directions; needs D >= 2.

    Arguments as :func:`maf`; each layer transforms the second half given the first.
    """
    if features < 2:
        raise ValueError("realnvp needs at least 2 features (it splits them in two halves)")

    def make() -> Bijector:
        return RealNVP(fraction_masked=0.5, hidden_units=hidden, activation=activation)

    return _stack(features, layers, make)


def nsf(
    features: int,
    *,
    layers: int = 5,
    hidden: Sequence[int] = (128, 128),
    activation: Activation = "relu",
    bins: int = 8,
    bound: float = 3.0,
    coupling: bool = False,
    context: int | None = None,
) -> TransformedDistribution:
    """Neural spline flow (Durkan et al. 2019): rational-quadratic splines on ``[-bound, bound]``.

    Autoregressive (NSF-AR) by default; ``coupling=True`` gives NSF-C (one pass both ways,
    needs D >= 2). Other arguments as :func:`maf`; ``bins`` spline bins per dimension. Data
    should be standardized so that most of it lies within ``bound`` (the identity outside).
    """
    params = spline_parameter_count(bins)
    if coupling:
        if features < 2:
            raise ValueError("a coupling nsf needs at least 2 features (it splits them in two)")
        if context is not None:
            raise ValueError(
                "conditional coupling nsf is not built by this helper; use coupling=False"
            )

        def make() -> Bijector:
            return SplineCoupling(
                fraction_masked=0.5,
                bins=bins,
                bound=bound,
                hidden_units=hidden,
                activation=activation,
            )

    else:

        def make() -> Bijector:
            net = AutoregressiveNetwork(
                params, features, hidden, activation, context_features=context
            )
            return MaskedAutoregressiveSpline(net, bins=bins, bound=bound)

    return _stack(features, layers, make)


def cnf(
    features: int,
    *,
    layers: int = 1,
    hidden: Sequence[int] = (128, 128, 128),
    activation: Activation = "silu",
    divergence: Divergence | None = None,
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    adjoint: bool = False,
) -> TransformedDistribution:
    """Continuous normalizing flow (Chen et al. 2018; Grathwohl et al. 2019): one or more ODE
    blocks with a time-conditioned MLP field (:class:`~nfkit.continuous.ContinuousFlow`).

    Train it by maximum likelihood with :func:`nfkit.fit` or, much faster, by flow matching
    with :func:`nfkit.continuous.fit_flow_matching` (single block).

    Args:
        features: data dimension D.
        layers: ODE blocks, chained (FFJORD stacks several; flow matching trains one).
        hidden: hidden widths of the field.
        activation: smooth activation of the field.
        divergence: ``"exact"`` or ``"hutchinson"`` during training; default exact up to
            D = 10, Hutchinson above (evaluation is always exact).
        method: the torchdiffeq solver (``"dopri5"``, or fixed-step methods with ``steps``).
        rtol: relative tolerance of an adaptive solver.
        atol: absolute tolerance of an adaptive solver.
        adjoint: backpropagate by the adjoint ODE (constant memory).

    """
    if divergence is None:
        divergence = "exact" if features <= 10 else "hutchinson"

    def make() -> Bijector:
        return ContinuousFlow(
            hidden_units=hidden,
            activation=activation,
            divergence=divergence,
            method=method,
            rtol=rtol,
            atol=atol,
            adjoint=adjoint,
        )

    if features < 1 or layers < 1:
        raise ValueError(f"features and layers must be positive, got {features} and {layers}")
    bijector = make() if layers == 1 else Chain([make() for _ in range(layers)])
    return TransformedDistribution(MultivariateNormalDiag(loc=[0.0] * features), bijector)


FLOWS: dict[str, Callable[..., TransformedDistribution]] = {
    "maf": maf,
    "iaf": iaf,
    "realnvp": realnvp,
    "nsf": nsf,
    "cnf": cnf,
}
