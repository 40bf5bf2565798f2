r"""One-line flows with sensible defaults: ``maf``, ``iaf``, ``realnvp``, ``nsf``, ``cnf``.

Each returns a :class:`~nfkit.distributions.TransformedDistribution` of a standard normal base:
``layers`` flow layers with a reversal of the coordinates between them, so that every
coordinate is transformed conditioned on every other one somewhere in the stack.

Example:
    >>> import torch, nfkit
    >>> flow = nfkit.flows.maf(3, layers=2, hidden=[16])
    >>> flow.log_prob(torch.zeros(4, 3)).shape
    torch.Size([4])

``context=`` (the width of a conditioning input) makes any of them a conditional density
:math:`q(x \mid c)`; ``embedding=`` adds a network of summary features of the context, trained
with the flow (the result is a :class:`~nfkit.distributions.Conditional`):

    >>> from torch import nn
    >>> q = nfkit.flows.nsf(2, layers=2, hidden=[16], context=50,
    ...                     embedding=nn.Sequential(nn.Linear(50, 8), nn.ReLU()))
    >>> q.sample(3, context=torch.zeros(4, 50)).shape
    torch.Size([3, 4, 2])

"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from nfkit.bijectors import (
    ActNorm,
    AutoregressiveNetwork,
    Bijector,
    Chain,
    CouplingNetwork,
    FlatImage,
    InverseAutoregressiveFlow,
    Invert,
    MaskedAutoregressiveFlow,
    MaskedAutoregressiveSpline,
    MixedCoupling,
    Permute,
    RealNVP,
    Reverse,
    Scale,
    ScaleMatvecLU,
    Shift,
    Sigmoid,
    SplineCoupling,
    SqueezeTime,
    WaveNetCoupling,
)
from nfkit.bijectors.glow import glow_level
from nfkit.bijectors.splines import spline_parameter_count
from nfkit.continuous.cnf import ContinuousFlow, Divergence
from nfkit.distributions import (
    Blockwise,
    Conditional,
    Distribution,
    Independent,
    MultivariateNormalDiag,
    Normal,
    TransformedDistribution,
    VonMises,
)
from nfkit.nets import Activation, VelocityNetwork

__all__ = ["FLOWS", "cnf", "flowavenet", "glow", "iaf", "maf", "mixed", "nsf", "realnvp"]


def _embeddable(build: Callable[..., TransformedDistribution]) -> Callable[..., Any]:
    """Give a builder ``embedding=``: build the flow for the embedding's output width and wrap
    it as ``Conditional(flow, embedding)``.
    """

    @functools.wraps(build)
    def builder(
        *args: Any, context: int | None = None, embedding: nn.Module | None = None, **kwargs: Any
    ) -> Distribution:
        if embedding is None:
            return build(*args, context=context, **kwargs)
        if context is None:
            raise ValueError("embedding= needs context=, the width of the raw context")
        with torch.no_grad():
            out = embedding(torch.zeros(2, context))
        if out.ndim != 2:
            raise ValueError(
                f"the embedding must map contexts (n, {context}) to rows (n, k), "
                f"got shape {tuple(out.shape)}"
            )
        return Conditional(build(*args, context=out.shape[-1], **kwargs), embedding)

    return builder


_MIXERS: dict[str, Callable[[int], Bijector]] = {
    # What goes between two layers: a reversal of the coordinates, or a learned linear map
    # (ScaleMatvecLU) started at the identity, as the `sbi` package's LU layers (a random
    # rotation start, as Glow's, was worse for NPE on slcp).
    "reverse": lambda features: Reverse(),
    "lu": lambda features: ScaleMatvecLU(nn.Parameter(torch.eye(features))),
}
MIXINGS = tuple(_MIXERS)


def check_mixing(mixing: str) -> None:
    """Refuse a ``mixing=`` that is not one of :data:`MIXINGS`."""
    if mixing not in _MIXERS:
        raise ValueError(f"mixing must be one of {MIXINGS}, got {mixing!r}")


def _stack(
    features: int, layers: int, make: Callable[[], Bijector], mixing: str = "reverse"
) -> TransformedDistribution:
    if features < 1 or layers < 1:
        raise ValueError(f"features and layers must be positive, got {features} and {layers}")
    check_mixing(mixing)
    bijectors: list[Bijector] = []
    for i in range(layers):
        if i:
            bijectors.append(_MIXERS[mixing](features))
        bijectors.append(make())
    return TransformedDistribution(MultivariateNormalDiag(loc=[0.0] * features), Chain(bijectors))


def _autoregressive(
    kind: type[MaskedAutoregressiveFlow] | type[InverseAutoregressiveFlow],
    features: int,
    layers: int,
    hidden: Sequence[int],
    activation: Activation,
    context: int | None,
    mixing: str,
) -> TransformedDistribution:
    def make() -> Bijector:
        net = AutoregressiveNetwork(2, features, hidden, activation, context_features=context)
        return kind(net)

    return _stack(features, layers, make, mixing)


@_embeddable
def maf(
    features: int,
    *,
    layers: int = 5,
    hidden: Sequence[int] = (128, 128),
    activation: Activation = "relu",
    mixing: str = "reverse",
    context: int | None = None,
    embedding: nn.Module | None = None,
) -> TransformedDistribution:
    """Masked autoregressive flow (Papamakarios et al. 2017): fast density, D-pass sampling.

    Args:
        features: data dimension D.
        layers: MAF layers.
        hidden: MADE hidden widths.
        activation: hidden activation.
        mixing: between layers, ``"reverse"`` (the coordinates reversed) or ``"lu"`` (a
            learned invertible linear map, :class:`~nfkit.bijectors.ScaleMatvecLU`, started at
            the identity: the flow learns which coordinates to mix; measured for NPE on the
            SBI benchmark, better on some tasks and worse on others: see
            :class:`~nfkit.sbi.NPE`).
        context: width of a conditioning input (conditional density), or ``None``.
        embedding: a module from contexts ``(n, context)`` to summary features ``(n, k)``,
            trained with the flow; the result is a
            :class:`~nfkit.distributions.Conditional` (it sees the raw context: put a
            :class:`~nfkit.nets.ContextEmbedding` in front to standardize it).

    """
    return _autoregressive(
        MaskedAutoregressiveFlow, features, layers, hidden, activation, context, mixing
    )


@_embeddable
def iaf(
    features: int,
    *,
    layers: int = 5,
    hidden: Sequence[int] = (128, 128),
    activation: Activation = "relu",
    mixing: str = "reverse",
    context: int | None = None,
    embedding: nn.Module | None = None,
) -> TransformedDistribution:
    """Inverse autoregressive flow (Kingma et al. 2016): one-pass sampling, D-pass density.

    Arguments as :func:`maf`.
    """
    return _autoregressive(
        InverseAutoregressiveFlow, features, layers, hidden, activation, context, mixing
    )


def _coupling_network(
    features: int, hidden: Sequence[int], activation: Activation, params: int, context: int | None
) -> CouplingNetwork:
    """A coupling conditioner built now for the halves of ``features`` (and the context)."""
    kept = round(0.5 * features)
    return CouplingNetwork(
        hidden,
        activation,
        params=params,
        in_features=kept,
        units=features - kept,
        context_features=context or 0,
    )


@_embeddable
def realnvp(
    features: int,
    *,
    layers: int = 5,
    hidden: Sequence[int] = (128, 128),
    activation: Activation = "relu",
    mixing: str = "reverse",
    context: int | None = None,
    embedding: nn.Module | None = None,
) -> TransformedDistribution:
    """Affine coupling flow (Dinh et al. 2016): one pass in both directions; needs D >= 2.

    Arguments as :func:`maf`; each layer transforms the second half given the first (and the
    context).
    """
    if features < 2:
        raise ValueError("realnvp needs at least 2 features (it splits them in two halves)")

    def make() -> Bijector:
        net = _coupling_network(features, hidden, activation, 2, context)
        return RealNVP(fraction_masked=0.5, conditioner=net)

    return _stack(features, layers, make, mixing)


@_embeddable
def nsf(
    features: int,
    *,
    layers: int = 5,
    hidden: Sequence[int] = (128, 128),
    activation: Activation = "relu",
    bins: int = 8,
    bound: float = 3.0,
    coupling: bool = False,
    mixing: str = "reverse",
    context: int | None = None,
    embedding: nn.Module | None = None,
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

        def make() -> Bijector:
            net = _coupling_network(features, hidden, activation, params, context)
            return SplineCoupling(fraction_masked=0.5, conditioner=net, bins=bins, bound=bound)

    else:

        def make() -> Bijector:
            net = AutoregressiveNetwork(
                params, features, hidden, activation, context_features=context
            )
            return MaskedAutoregressiveSpline(net, bins=bins, bound=bound)

    return _stack(features, layers, make, mixing)


@_embeddable
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
    kinetic_energy: float = 0.0,
    jacobian_norm: float = 0.0,
    context: int | None = None,
    embedding: nn.Module | None = None,
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
        kinetic_energy: RNODE weight of the kinetic energy in maximum-likelihood training.
        jacobian_norm: RNODE weight of the Jacobian's Frobenius norm.
        context: width of a conditioning input: the field becomes :math:`v(x, t, c)`.
        embedding: a module from contexts ``(n, context)`` to summary features ``(n, k)``,
            trained with the flow; the result is a
            :class:`~nfkit.distributions.Conditional` (it sees the raw context: put a
            :class:`~nfkit.nets.ContextEmbedding` in front to standardize it).

    """
    if divergence is None:
        divergence = "exact" if features <= 10 else "hutchinson"

    def make() -> Bijector:
        field = None
        if context is not None:  # built now, so that the context's width is fixed
            field = VelocityNetwork(hidden, activation, features=features, context_features=context)
        return ContinuousFlow(
            field,
            hidden_units=hidden,
            activation=activation,
            divergence=divergence,
            method=method,
            rtol=rtol,
            atol=atol,
            adjoint=adjoint,
            kinetic_energy=kinetic_energy,
            jacobian_norm=jacobian_norm,
        )

    if features < 1 or layers < 1:
        raise ValueError(f"features and layers must be positive, got {features} and {layers}")
    bijector = make() if layers == 1 else Chain([make() for _ in range(layers)])
    return TransformedDistribution(MultivariateNormalDiag(loc=[0.0] * features), bijector)


def _multiscale_shape(
    shape: Sequence[int], rank: int, name: str, halvings: int, steps: int
) -> tuple[int, ...]:
    """Check an image ``(C, H, W)`` (rank 3) or sequence ``(C, T)`` (rank 2) shape, adding a
    missing channel dim, for a flow that halves its sizes ``halvings`` times.
    """
    form = "(C, H, W) or (H, W)" if rank == 3 else "(C, T) or (T,)"
    full = tuple(int(n) for n in shape)
    full = (1, *full) if len(full) == rank - 1 else full
    if len(full) != rank or min(full) < 1:
        raise ValueError(f"{name} must be {form}, got {tuple(shape)}")
    if halvings < 1 or steps < 1:
        raise ValueError(
            f"the number of scales and of steps per scale must be positive, got {halvings} and "
            f"{steps}"
        )
    sizes = full[1:]
    if any(n % 2**halvings for n in sizes):
        raise ValueError(
            f"{halvings} scales halve the input {halvings} times: its sizes must be divisible by "
            f"{2**halvings}, got {'x'.join(map(str, sizes))}"
        )
    return full


def glow(
    image_shape: Sequence[int],
    *,
    levels: int = 2,
    steps: int = 4,
    hidden_channels: int = 64,
    logit_alpha: float | None = 0.05,
    flat: bool = False,
) -> TransformedDistribution:
    r"""Glow (Kingma & Dhariwal 2018) with RealNVP's multi-scale architecture, for images with
    values in [0, 1] (channels first).

    Each level squeezes 2x2 pixels into channels, runs ``steps`` steps of ActNorm → invertible
    1x1 convolution → affine coupling (a conv net), and hands half of the channels to the next
    level, the other half going to the base (standard normal over the image). With
    ``logit_alpha`` = :math:`\alpha`, the data first goes through
    :math:`y = \operatorname{logit}(\alpha + (1 - 2\alpha) x)` (RealNVP's pre-processing of
    bounded data), part of the model, so ``log_prob`` is the density of :math:`x` itself.
    Dequantize integer pixels first (:func:`nfkit.data.dequantize`).

    Args:
        image_shape: ``(C, H, W)`` or ``(H, W)``; H and W divisible by :math:`2^{levels}`.
        levels: number of scales.
        steps: Glow steps per level.
        hidden_channels: width of the coupling networks.
        logit_alpha: :math:`\alpha` of the logit pre-processing, or ``None`` for none.
        flat: model rows of :math:`CHW` pixels instead of images (tables, the command line).

    Example:
        >>> import torch, nfkit
        >>> flow = nfkit.flows.glow((8, 8), levels=2, steps=1, hidden_channels=8)
        >>> flow.log_prob(torch.rand(3, 1, 8, 8)).shape, flow.sample(2).shape
        (torch.Size([3]), torch.Size([2, 1, 8, 8]))

    """
    shape = _multiscale_shape(image_shape, 3, "image_shape", levels, steps)
    parts: list[Bijector] = []
    if logit_alpha is not None:
        if not 0.0 < logit_alpha < 0.5:
            raise ValueError(f"logit_alpha must lie in (0, 0.5), got {logit_alpha}")
        parts += [Scale(1.0 / (1.0 - 2.0 * logit_alpha)), Shift(-logit_alpha), Sigmoid()]
    parts.append(glow_level(shape[0], 0, levels, steps, hidden_channels))
    if flat:
        base = MultivariateNormalDiag(loc=[0.0] * math.prod(shape))
        return TransformedDistribution(base, FlatImage(Chain(parts), shape))
    base = Independent(Normal(torch.zeros(shape), torch.ones(shape)), 3)
    return TransformedDistribution(base, Chain(parts))


def _flowavenet_block(block: int, blocks: int, flows: int, hidden: int, layers: int) -> Bijector:
    """Squeeze time, ``flows`` steps (ActNorm, WaveNet coupling alternating halves), the next
    block, unsqueeze; listed in the density direction's order.
    """
    parts: list[Bijector] = [Invert(SqueezeTime())]
    for i in range(flows):
        parts += [
            ActNorm(forward_min_event_ndims=2),
            WaveNetCoupling(hidden_channels=hidden, layers=layers, swap=bool(i % 2)),
        ]
    if block + 1 < blocks:
        parts.append(_flowavenet_block(block + 1, blocks, flows, hidden, layers))
    parts.append(SqueezeTime())
    return Chain(parts)


def flowavenet(
    sequence_shape: Sequence[int],
    *,
    blocks: int = 2,
    flows: int = 4,
    hidden_channels: int = 32,
    layers: int = 4,
) -> TransformedDistribution:
    """FloWaveNet (Kim et al. 2019) for sequences ``(C, T)`` or ``(T,)``: each block folds pairs
    of time steps into channels (:class:`~nfkit.bijectors.SqueezeTime`) and runs ``flows``
    steps of ActNorm and an affine coupling whose network is a WaveNet of dilated causal
    convolutions (alternating which half of the channels is kept); blocks nest, each on the
    previous one's squeezed sequence. A standard normal base over the whole sequence.

    Args:
        sequence_shape: ``(C, T)`` or ``(T,)``; T divisible by :math:`2^{blocks}`.
        blocks: squeeze-and-flow blocks.
        flows: coupling steps per block.
        hidden_channels: width of the WaveNets.
        layers: residual blocks per WaveNet (dilations 1, 2, 4, ...).

    Example:
        >>> import torch, nfkit
        >>> flow = nfkit.flows.flowavenet((16,), blocks=2, flows=2, hidden_channels=8)
        >>> flow.log_prob(torch.randn(3, 1, 16)).shape, flow.sample(2).shape
        (torch.Size([3]), torch.Size([2, 1, 16]))

    """
    shape = _multiscale_shape(sequence_shape, 2, "sequence_shape", blocks, flows)
    bijector = _flowavenet_block(0, blocks, flows, hidden_channels, layers)
    base = Independent(Normal(torch.zeros(shape), torch.ones(shape)), 2)
    return TransformedDistribution(base, bijector)


def _von_mises_concentration(r: torch.Tensor) -> torch.Tensor:
    """The maximum-likelihood concentration for mean resultant length ``r`` (Fisher 1993,
    eq. 4.40's approximation).
    """
    small = 2 * r + r**3 + 5 * r**5 / 6
    middle = -0.4 + 1.39 * r + 0.43 / (1 - r)
    large = 1 / (r**3 - 4 * r**2 + 3 * r)
    return torch.where(r < 0.53, small, torch.where(r < 0.85, middle, large)).clamp(min=1e-6)


def mixed(
    features: int,
    angles: Sequence[int],
    *,
    layers: int = 8,
    hidden: Sequence[int] = (128, 128),
    activation: Activation = "relu",
    bins: int = 8,
    bound: float = 3.0,
    data: Any = None,
    seed: int = 0,
) -> TransformedDistribution:
    r"""A flow on :math:`\mathbb R^a \times \mathbb T^b` (e.g. a molecule's internal
    coordinates: bonds and angles real, torsions circular): :class:`~nfkit.bijectors.MixedCoupling`
    layers keeping half the columns each, a fixed random permutation between them (``seed``),
    on a base that is normal on the real columns and von Mises on the angles.

    Args:
        features: :math:`D`.
        angles: the circular columns (of the data; e.g. ``InternalTarget.torsions``).
        layers: coupling layers.
        hidden: hidden widths of each conditioner.
        activation: its activation.
        bins: spline bins.
        bound: the real splines act on :math:`[-B, B]` standard deviations.
        data: rows ``(N, D)`` that set the start (e.g. MD samples): the real columns are
            standardized by their mean and standard deviation, and each angle's base is the von
            Mises law of its circular mean and maximum-likelihood concentration, so that the
            untrained flow already has the data's marginals (a sharp torsion is hard to learn
            from a uniform start). Without data: standard normal and uniform.
        seed: seed of the permutations.

    Example:
        >>> import torch, nfkit
        >>> flow = nfkit.flows.mixed(4, angles=[1, 3], layers=2, hidden=[16])
        >>> x = flow.sample(5)
        >>> bool((x[:, [1, 3]].abs() <= torch.pi).all()), flow.log_prob(x).shape
        (True, torch.Size([5]))

    """
    angle_set = {int(a) for a in angles}
    if not angle_set <= set(range(features)) or features < 2 or layers < 1:
        raise ValueError(
            f"need features >= 2, layers >= 1 and angles among 0..{features - 1}; got "
            f"{features}, {layers}, {sorted(angle_set)}"
        )
    real, circular = sorted(set(range(features)) - angle_set), sorted(angle_set)
    shift, factor = torch.zeros(features), torch.ones(features)
    centre, kappa = torch.zeros(features), torch.full((features,), 1e-6)
    if data is not None:
        rows = torch.as_tensor(data, dtype=torch.float64).reshape(-1, features)
        shift[real], factor[real] = rows[:, real].mean(0).float(), rows[:, real].std(0).float()
        cos, sin = rows[:, circular].cos().mean(0), rows[:, circular].sin().mean(0)
        centre[circular] = torch.atan2(sin, cos).float()
        kappa[circular] = _von_mises_concentration((cos**2 + sin**2).sqrt()).float()
    generator = torch.Generator().manual_seed(seed)
    parts: list[Bijector] = [Shift(shift), Scale(factor)]  # data side first
    source = list(range(features))  # the data column each current column carries
    for i in range(layers):
        current = [c for c in range(features) if source[c] in angle_set]
        parts.append(
            MixedCoupling(
                features // 2,
                current,
                bins=bins,
                bound=bound,
                hidden_units=hidden,
                activation=activation,
            )
        )
        if i < layers - 1:
            order = torch.randperm(features, generator=generator)
            parts.append(Permute(order))
            below = [0] * features
            for c in range(features):
                below[int(order[c])] = source[c]  # x_c = z_order[c]
            source = below
    base_real = [c for c in range(features) if source[c] not in angle_set]
    base_angles = [c for c in range(features) if source[c] in angle_set]
    blocks: list[Distribution] = []
    columns: list[list[int]] = []
    if base_real:
        blocks.append(MultivariateNormalDiag(loc=[0.0] * len(base_real)))
        columns.append(base_real)
    if base_angles:
        origin = [source[c] for c in base_angles]
        blocks.append(Independent(VonMises(centre[origin], kappa[origin]), 1))
        columns.append(base_angles)
    return TransformedDistribution(Blockwise(blocks, columns), Chain(parts))


FLOWS: dict[str, Callable[..., TransformedDistribution]] = {
    "maf": maf,
    "iaf": iaf,
    "realnvp": realnvp,
    "nsf": nsf,
    "cnf": cnf,
}
