r"""Sampling targets: unnormalized log-densities (minus energies) with, where known, their exact
normalizer :math:`\log Z` and exact samples, for :func:`nfkit.fit_energy` and
:func:`nfkit.importance`.

- :class:`DoubleWell`, :class:`ManyWell` — Noé et al. 2019; Midgley et al. 2023 (FAB).
- :class:`GaussianMixture` — FAB's 40-mode 2-D mixture by default.
- :func:`rezende` ``("U1" … "U4")`` — Rezende & Mohamed 2015, Table 1.
- :class:`MullerBrown` — the Müller–Brown potential at an inverse temperature.
- :class:`AlanineDipeptide` — a real molecule, energies and forces from OpenMM;
  :class:`InternalTarget` — any molecule in its internal coordinates.
- :class:`DataDensity` — the benchmarks' 2-D data densities (moons, ...), normalized.
- :class:`Target`, :class:`Box2D` — the protocol, and a 2-D density made proper by a wall.
"""

from nfkit.targets.base import Box2D, Target
from nfkit.targets.data2d import DATA_TARGETS, DataDensity
from nfkit.targets.mixtures import GaussianMixture
from nfkit.targets.molecules import AlanineDipeptide, InternalTarget
from nfkit.targets.potentials import MullerBrown, muller_brown_energy, rezende
from nfkit.targets.wells import DoubleWell, ManyWell

__all__ = [
    "AlanineDipeptide",
    "DATA_TARGETS",
    "Box2D",
    "DataDensity",
    "DoubleWell",
    "GaussianMixture",
    "InternalTarget",
    "ManyWell",
    "MullerBrown",
    "Target",
    "muller_brown_energy",
    "rezende",
]
