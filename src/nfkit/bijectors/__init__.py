"""Bijectors: invertible maps with tractable log-determinants (TFP's ``tfb`` vocabulary)."""

from nfkit.bijectors.affine import Scale, ScaleMatvecDiag, ScaleMatvecTriL, Shift
from nfkit.bijectors.autoregressive import (
    AutoregressiveNetwork,
    InverseAutoregressiveFlow,
    MaskedAutoregressiveFlow,
)
from nfkit.bijectors.base import Bijector, Chain, Invert, NotInvertibleError
from nfkit.bijectors.coupling import CouplingNetwork, RealNVP
from nfkit.bijectors.elementwise import Exp, Identity, Sigmoid, Softplus, Tanh
from nfkit.bijectors.permute import Permute, Reverse

__all__ = [
    "AutoregressiveNetwork",
    "Bijector",
    "Chain",
    "CouplingNetwork",
    "Exp",
    "Identity",
    "Invert",
    "InverseAutoregressiveFlow",
    "MaskedAutoregressiveFlow",
    "NotInvertibleError",
    "Permute",
    "RealNVP",
    "Reverse",
    "Scale",
    "ScaleMatvecDiag",
    "ScaleMatvecTriL",
    "Shift",
    "Sigmoid",
    "Softplus",
    "Tanh",
]
