"""Bijectors: invertible maps with tractable log-determinants (TFP's ``tfb`` vocabulary)."""

from nfkit.bijectors.affine import (
    InvertibleConv1x1,
    Scale,
    ScaleMatvecDiag,
    ScaleMatvecLU,
    ScaleMatvecTriL,
    Shift,
)
from nfkit.bijectors.autoregressive import (
    AutoregressiveBijector,
    AutoregressiveNetwork,
    InverseAutoregressiveFlow,
    MaskedAutoregressiveFlow,
)
from nfkit.bijectors.base import Bijector, Chain, Invert, NotInvertibleError
from nfkit.bijectors.circular import (
    AngleFeatures,
    CircularCoupling,
    CircularSpline,
    MixedCoupling,
    wrap_angle,
)
from nfkit.bijectors.coupling import CouplingBijector, CouplingNetwork, RealNVP
from nfkit.bijectors.elementwise import (
    Exp,
    Identity,
    OnColumns,
    RationalQuadraticSpline,
    Reciprocal,
    Sigmoid,
    Softplus,
    Tanh,
)
from nfkit.bijectors.glow import Glow, glow_level
from nfkit.bijectors.inline import Inline
from nfkit.bijectors.internal import InternalCoordinates, zmatrix_from_bonds
from nfkit.bijectors.joint import JointMap
from nfkit.bijectors.multiscale import (
    FactorOut,
    FlatImage,
    GlowCoupling,
    Squeeze,
)
from nfkit.bijectors.normalization import ActNorm, BatchNorm, BatchNormalization, data_init
from nfkit.bijectors.nsf import MaskedAutoregressiveSpline, SplineCoupling
from nfkit.bijectors.permute import Permute, Reverse
from nfkit.bijectors.reshape import Reshape, Transpose
from nfkit.bijectors.sequence import SqueezeTime, WaveNetCoupling
from nfkit.bijectors.templates import (
    MaskedAutoregressiveTemplate,
    RealNVPTemplate,
    masked_autoregressive_default_template,
    real_nvp_default_template,
)

__all__ = [
    "AngleFeatures",
    "CircularCoupling",
    "InternalCoordinates",
    "MixedCoupling",
    "CircularSpline",
    "wrap_angle",
    "zmatrix_from_bonds",
    "SqueezeTime",
    "WaveNetCoupling",
    "FactorOut",
    "FlatImage",
    "GlowCoupling",
    "Squeeze",
    "ActNorm",
    "BatchNorm",
    "BatchNormalization",
    "Glow",
    "JointMap",
    "glow_level",
    "Transpose",
    "MaskedAutoregressiveTemplate",
    "RealNVPTemplate",
    "masked_autoregressive_default_template",
    "real_nvp_default_template",
    "data_init",
    "InvertibleConv1x1",
    "ScaleMatvecLU",
    "AutoregressiveBijector",
    "AutoregressiveNetwork",
    "Bijector",
    "Chain",
    "CouplingBijector",
    "CouplingNetwork",
    "Exp",
    "Identity",
    "Inline",
    "Invert",
    "InverseAutoregressiveFlow",
    "MaskedAutoregressiveFlow",
    "MaskedAutoregressiveSpline",
    "NotInvertibleError",
    "OnColumns",
    "Permute",
    "RationalQuadraticSpline",
    "Reciprocal",
    "Reshape",
    "RealNVP",
    "Reverse",
    "Scale",
    "ScaleMatvecDiag",
    "ScaleMatvecTriL",
    "Shift",
    "Sigmoid",
    "Softplus",
    "SplineCoupling",
    "Tanh",
]
