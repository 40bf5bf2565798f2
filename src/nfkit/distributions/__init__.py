"""Distributions: base densities and transformed distributions (TFP's ``tfd`` vocabulary)."""

from nfkit.distributions.autoregressive import Autoregressive
from nfkit.distributions.base import Distribution
from nfkit.distributions.blockwise import Blockwise
from nfkit.distributions.conditional import Conditional
from nfkit.distributions.discrete import Bernoulli, Categorical
from nfkit.distributions.gamma import Gamma
from nfkit.distributions.mixture import MixtureSameFamily
from nfkit.distributions.simple import (
    Independent,
    MultivariateNormalDiag,
    MultivariateNormalTriL,
    Normal,
    Sample,
    Uniform,
    VonMises,
)
from nfkit.distributions.torch_compat import AsTorchDistribution, TorchDistribution
from nfkit.distributions.transformed import TransformedDistribution

__all__ = [
    "AsTorchDistribution",
    "Autoregressive",
    "Bernoulli",
    "Blockwise",
    "Categorical",
    "Conditional",
    "Distribution",
    "Gamma",
    "Independent",
    "MixtureSameFamily",
    "MultivariateNormalDiag",
    "MultivariateNormalTriL",
    "Normal",
    "Sample",
    "TorchDistribution",
    "TransformedDistribution",
    "Uniform",
    "VonMises",
]
