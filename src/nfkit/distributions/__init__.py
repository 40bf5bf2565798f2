"""Distributions: base densities and transformed distributions (TFP's ``tfd`` vocabulary)."""

from nfkit.distributions.base import Distribution
from nfkit.distributions.blockwise import Blockwise
from nfkit.distributions.conditional import Conditional
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
    "Blockwise",
    "Conditional",
    "Distribution",
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
