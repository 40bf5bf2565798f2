"""The chapter's MAF built in each library, behind one small interface, for side-by-side runs.

Every builder returns a :class:`Model` for the same architecture: ``layers`` x [affine MAF whose
MADE has ``hidden`` relu units, then a reversal of the two coordinates], standard normal base.
Peers are optional (``pip install -e .[bench]``); :func:`available` lists what imports.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class Model:
    """A trainable density: ``module`` holds the parameters, ``log_prob`` and ``sample`` use it."""

    module: nn.Module
    log_prob: Callable[[Tensor], Tensor]
    sample: Callable[[int], Tensor]


def build_nfkit(features: int, layers: int, hidden: list[int], scale: str = "softplus") -> Model:
    import nfkit.bijectors as nfb
    import nfkit.distributions as nfd

    bijectors = []
    for _ in range(layers):
        net = nfb.AutoregressiveNetwork(params=2, hidden_units=hidden, activation="relu")
        bijectors += [nfb.MaskedAutoregressiveFlow(net, scale=scale), nfb.Reverse()]
    flow = nfd.TransformedDistribution(
        nfd.MultivariateNormalDiag(loc=[0.0] * features), nfb.Chain(bijectors)
    )
    flow._log_prob(torch.zeros(1, features), None)  # build the lazy networks
    return Model(flow, lambda x: flow._log_prob(x, None), lambda n: flow._rsample((n,), None))


def build_zuko(features: int, layers: int, hidden: list[int]) -> Model:
    import zuko

    flow = zuko.flows.MAF(features, transforms=layers, hidden_features=hidden)
    return Model(flow, lambda x: flow().log_prob(x), lambda n: flow().sample((n,)))


def build_nflows(features: int, layers: int, hidden: list[int]) -> Model:
    from nflows.distributions.normal import StandardNormal
    from nflows.flows.base import Flow
    from nflows.transforms.autoregressive import MaskedAffineAutoregressiveTransform
    from nflows.transforms.base import CompositeTransform
    from nflows.transforms.permutations import ReversePermutation

    if len(set(hidden)) != 1:
        raise ValueError("nflows' MADE has equal hidden layers")
    transforms = []
    for _ in range(layers):
        transforms += [
            MaskedAffineAutoregressiveTransform(
                features, hidden[0], num_blocks=len(hidden) - 1, use_residual_blocks=False
            ),
            ReversePermutation(features),
        ]
    flow = Flow(CompositeTransform(transforms), StandardNormal([features]))
    return Model(flow, flow.log_prob, flow.sample)


def build_normflows(features: int, layers: int, hidden: list[int]) -> Model:
    import normflows as nf

    if len(set(hidden)) != 1:
        raise ValueError("normflows' MADE has equal hidden layers")
    flows = []
    for _ in range(layers):
        flows += [
            nf.flows.MaskedAffineAutoregressive(
                features, hidden[0], num_blocks=len(hidden) - 1, use_residual_blocks=False
            ),
            nf.flows.Permute(features, mode="swap"),
        ]
    flow = nf.NormalizingFlow(nf.distributions.DiagGaussian(features, trainable=False), flows)
    return Model(flow, flow.log_prob, lambda n: flow.sample(n)[0])


def build_nfkit_nsf(features: int, layers: int, hidden: list[int]) -> Model:
    from nfkit import flows

    flow = flows.nsf(features, layers=layers, hidden=hidden, bins=8, bound=5.0)
    flow._log_prob(torch.zeros(1, features), None)
    return Model(flow, lambda x: flow._log_prob(x, None), lambda n: flow._rsample((n,), None))


def build_zuko_nsf(features: int, layers: int, hidden: list[int]) -> Model:
    import zuko

    flow = zuko.flows.NSF(features, transforms=layers, hidden_features=hidden, bins=8)
    return Model(flow, lambda x: flow().log_prob(x), lambda n: flow().sample((n,)))


def build_nflows_nsf(features: int, layers: int, hidden: list[int]) -> Model:
    from nflows.distributions.normal import StandardNormal
    from nflows.flows.base import Flow
    from nflows.transforms.autoregressive import (
        MaskedPiecewiseRationalQuadraticAutoregressiveTransform as Spline,
    )
    from nflows.transforms.base import CompositeTransform
    from nflows.transforms.permutations import ReversePermutation

    transforms = []
    for _ in range(layers):
        transforms += [
            Spline(
                features,
                hidden[0],
                num_bins=8,
                tails="linear",
                tail_bound=5.0,
                num_blocks=len(hidden) - 1,
                use_residual_blocks=False,
            ),
            ReversePermutation(features),
        ]
    flow = Flow(CompositeTransform(transforms), StandardNormal([features]))
    return Model(flow, flow.log_prob, flow.sample)


def build_normflows_nsf(features: int, layers: int, hidden: list[int]) -> Model:
    import normflows as nf

    flows = []
    for _ in range(layers):
        flows += [
            nf.flows.AutoregressiveRationalQuadraticSpline(
                features, len(hidden) - 1, hidden[0], num_bins=8, tail_bound=5.0
            ),
            nf.flows.Permute(features, mode="swap"),
        ]
    flow = nf.NormalizingFlow(nf.distributions.DiagGaussian(features, trainable=False), flows)
    return Model(flow, flow.log_prob, lambda n: flow.sample(n)[0])


NSF_BUILDERS: dict[str, Callable[[int, int, list[int]], Model]] = {
    "nfkit": build_nfkit_nsf,
    "zuko": build_zuko_nsf,
    "nflows": build_nflows_nsf,
    "normflows": build_normflows_nsf,
}

BUILDERS: dict[str, Callable[[int, int, list[int]], Model]] = {
    "nfkit": build_nfkit,
    "zuko": build_zuko,
    "nflows": build_nflows,
    "normflows": build_normflows,
}


def available() -> list[str]:
    """The libraries that import here, nfkit first."""
    return [name for name in BUILDERS if importlib.util.find_spec(name) is not None]
