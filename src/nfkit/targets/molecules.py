r"""A real molecule: alanine dipeptide (Ace-Ala-Nme, 22 atoms) with its energy and forces from
OpenMM, the standard test of Boltzmann generators (Noé et al. 2019, Science 365; Midgley et
al. 2023, ICLR).

The force field is openmmtools' alanine-dipeptide test system: Amber ff96, no cutoff, no
constraints, in vacuum or in OBC1 implicit solvent (the systems ``AlanineDipeptideVacuum`` and
``AlanineDipeptideImplicit`` build), read from the files that ship with openmmtools (nothing is
downloaded). At temperature :math:`T`,

.. math:: \log\tilde p(x) = -\frac{U(x)}{k_B T}, \qquad
          \nabla_x \log\tilde p(x) = \frac{F(x)}{k_B T},

with :math:`x` the 66 Cartesian coordinates in nanometres, :math:`U` in kJ/mol and
:math:`F = -\nabla U` the forces OpenMM returns. ``log_prob`` is differentiable once (its
gradient is the forces); ``log_z`` is unknown.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nfkit.bijectors.internal import InternalCoordinates, dihedral, zmatrix_from_bonds
from nfkit.targets.base import Target

__all__ = ["AlanineDipeptide", "InternalTarget", "molecular_dynamics"]

MOLAR_GAS_CONSTANT = 8.314462618e-3  # kJ / (mol K)
_INSTALL = "pip install openmm && pip install --no-deps openmmtools"


def _openmm() -> Any:
    try:
        import openmm
    except ImportError as err:
        raise ImportError(f"AlanineDipeptide needs OpenMM: {_INSTALL}") from err
    return openmm


def openmmtools_data(name: str) -> Path:
    """A file of openmmtools' ``data`` folder, found without importing openmmtools (its
    modules need packages that the data files do not).
    """
    spec = importlib.util.find_spec("openmmtools")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"AlanineDipeptide reads openmmtools' data files: {_INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from this openmmtools installation")
    return path


class _Energy(torch.autograd.Function):
    """:math:`-U/k_BT` of rows ``(B, 66)`` with its gradient from OpenMM's forces."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, target: AlanineDipeptide) -> Tensor:
        log_p, grad = target._evaluate(x.detach().cpu().double().numpy())
        ctx.save_for_backward(torch.from_numpy(grad).to(x))
        return torch.from_numpy(log_p).to(x)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None]:
        (grad,) = ctx.saved_tensors
        return grad_output[:, None] * grad, None


class AlanineDipeptide(Target):
    r"""Alanine dipeptide's Boltzmann density :math:`e^{-U(x)/k_BT}` on :math:`\mathbb
    R^{66}` (22 atoms x 3, nm), energies and forces from OpenMM (see the module).

    Args:
        solvent: ``"vacuum"`` or ``"implicit"`` (OBC1 generalized Born).
        temperature: :math:`T` in kelvin.
        platform: the OpenMM platform; by default ``"Reference"`` in vacuum and ``"CPU"`` in
            implicit solvent, the faster for 22 atoms (measured on one thread, per
            configuration: 30-40 against 330-420 us in vacuum, 1300 against 800 us with OBC1).

    Attributes:
        platform: the OpenMM platform's name.
        positions: the conformation shipped with the force field, ``(22, 3)`` nm (float64).
        kT: :math:`k_B T` in kJ/mol.
        atoms: the atom names (``"ALA2:CA"``, ...), in coordinate order.

    Example:
        >>> from nfkit.targets import AlanineDipeptide
        >>> target = AlanineDipeptide()
        >>> x = target.positions.reshape(1, 66)
        >>> round(float(target.energy(x)) * target.kT, 2)  # kJ/mol
        -88.09

    """

    phi_atoms = (4, 6, 8, 14)  # C(Ace) - N - CA - C
    psi_atoms = (6, 8, 14, 16)  # N - CA - C - N(Nme)

    def __init__(
        self,
        solvent: str = "vacuum",
        temperature: float = 300.0,
        *,
        platform: str | None = None,
    ) -> None:
        super().__init__()
        if solvent not in ("vacuum", "implicit"):
            raise ValueError(f"solvent must be 'vacuum' or 'implicit', got {solvent!r}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive (kelvin), got {temperature}")
        mm = _openmm()
        from openmm import app, unit

        folder = "alanine-dipeptide-gbsa"
        prmtop = app.AmberPrmtopFile(str(openmmtools_data(f"{folder}/alanine-dipeptide.prmtop")))
        crd = app.AmberInpcrdFile(str(openmmtools_data(f"{folder}/alanine-dipeptide.crd")))
        self.system = prmtop.createSystem(
            implicitSolvent=None if solvent == "vacuum" else app.OBC1,
            constraints=None,
            nonbondedCutoff=None,
        )
        self.topology = prmtop.topology
        self.atoms = [
            f"{a.residue.name}{a.residue.index + 1}:{a.name}" for a in self.topology.atoms()
        ]
        self.dim, self.solvent, self.temperature = 66, solvent, temperature
        self.kT = MOLAR_GAS_CONSTANT * temperature
        positions = np.asarray(crd.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
        self.positions: Tensor
        self.register_buffer("positions", torch.from_numpy(positions.astype(np.float64)))
        self.platform = platform or ("Reference" if solvent == "vacuum" else "CPU")
        self._context = self.context(mm.VerletIntegrator(1e-3))
        self._unit = unit

    def context(self, integrator: Any) -> Any:
        """An OpenMM ``Context`` of this system on :attr:`platform`; the CPU platform uses
        ``torch.get_num_threads()`` threads, so one thread policy covers torch and OpenMM.
        """
        mm = _openmm()
        platform = mm.Platform.getPlatformByName(self.platform)
        threads = {"Threads": str(torch.get_num_threads())} if self.platform == "CPU" else {}
        return mm.Context(self.system, integrator, platform, threads)

    def _evaluate(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r""":math:`\log\tilde p` and its gradient for rows ``(B, 66)``; ``-inf`` (gradient 0)
        where OpenMM cannot evaluate a row or the energy is not finite.
        """
        kj, nm = self._unit.kilojoule_per_mole, self._unit.nanometer
        log_p = np.full(rows.shape[0], -math.inf)
        grad = np.zeros_like(rows)
        for i, row in enumerate(rows):
            if not np.isfinite(row).all():
                log_p[i] = math.nan
                continue
            self._context.setPositions(row.reshape(22, 3))
            state = self._context.getState(getEnergy=True, getForces=True)
            energy = state.getPotentialEnergy().value_in_unit(kj)
            forces = state.getForces(asNumpy=True).value_in_unit(kj / nm)
            if math.isfinite(energy) and np.isfinite(forces).all():
                log_p[i] = -energy / self.kT
                grad[i] = forces.reshape(-1) / self.kT
        return log_p, grad

    def log_prob(self, x: Tensor) -> Tensor:
        self._check(x)
        flat = x.reshape(-1, self.dim)
        return _Energy.apply(flat, self).reshape(x.shape[:-1])

    def dihedrals(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r"""The backbone torsions :math:`(\phi, \psi)` in radians, :math:`(-\pi, \pi]`, of points
        ``(..., 66)``: the Ramachandran coordinates.
        """
        atoms = x.reshape(*x.shape[:-1], 22, 3)
        phi, psi = ([atoms[..., i, :] for i in index] for index in (self.phi_atoms, self.psi_atoms))
        return dihedral(*phi), dihedral(*psi)

    def zmatrix(self, root: int = 8) -> list[list[int]]:
        """A Z-matrix along the molecule's bonds, breadth-first from ``root`` (the alpha
        carbon), for :class:`~nfkit.bijectors.InternalCoordinates`.
        """
        bonds = [(a.index, b.index) for a, b in self.topology.bonds()]
        return zmatrix_from_bonds(bonds, 22, root)


class InternalTarget(Target):
    r"""A molecular target in its :math:`3N - 6` internal coordinates, the global position and
    orientation removed (Noé et al. 2019): what a flow over bonds, angles and torsions learns.

    With :math:`z` the :class:`~nfkit.bijectors.InternalCoordinates` of a Z-matrix, drop row
    0 (translation), the polar angle and azimuth of row 1 and the torsion of row 2 (the three
    rotations); the energy does not depend on them, and integrating them out of
    :math:`\tilde p(x)\,|\det\partial x/\partial z|` leaves, up to a constant,

    .. math:: \log\tilde p_{int}(z) = \log\tilde p(x(z)) + 2\log b_1
              + \sum_{r \ge 2}\big(2\log b_r + \log\sin\theta_r\big).

    Coordinates, in order: row 1's bond, row 2's bond and angle, then (bond, angle, torsion) of
    every later row; ``torsions`` gives the indices of the torsions (angles in
    :math:`(-\pi, \pi]`, for circular layers), ``bonds`` and ``angles`` the others.

    Args:
        target: a :class:`Target` on Cartesian positions ``(..., 3N)``.
        zmatrix: its Z-matrix (e.g. ``AlanineDipeptide().zmatrix()``).

    """

    def __init__(self, target: Target, zmatrix: list[list[int]]) -> None:
        super().__init__()
        self.target = target
        self.transform = InternalCoordinates(zmatrix)
        rows = len(zmatrix)
        self.dim = 3 * rows - 6
        keep = [3, 6, 7, *range(9, 3 * rows)]  # row 1 bond; row 2 bond, angle; the rest
        self.register_buffer("keep", torch.tensor(keep))
        self.bonds = [i for i, k in enumerate(keep) if k % 3 == 0]
        self.angles = [i for i, k in enumerate(keep) if k % 3 == 1]
        self.torsions = [i for i, k in enumerate(keep) if k % 3 == 2]

    def to_cartesian(self, z: Tensor) -> Tensor:
        """Positions ``(..., 3N)`` in a fixed frame (first atom at the origin)."""
        self._check(z)
        full = z.new_zeros((*z.shape[:-1], 3 * self.transform.atoms))
        full[..., 4] = torch.pi / 2  # row 1's polar angle: any fixed orientation will do
        full[..., self.keep] = z
        return self.transform.forward(full)

    def from_cartesian(self, x: Tensor) -> Tensor:
        """The internal coordinates ``(..., 3N - 6)`` of positions ``(..., 3N)``."""
        return self.transform.inverse(x)[..., self.keep]

    def log_prob(self, z: Tensor) -> Tensor:
        x = self.to_cartesian(z)
        bonds, angles = z[..., self.bonds], z[..., self.angles]
        volume = 2 * bonds.log().sum(-1) + angles.sin().log().sum(-1)
        return self.target.log_prob(x) + volume


def molecular_dynamics(
    target: AlanineDipeptide,
    samples: int,
    *,
    interval: int = 500,
    equilibration: int = 10_000,
    timestep_fs: float = 1.0,
    friction_per_ps: float = 1.0,
    seed: int = 0,
    start: Tensor | None = None,
) -> Tensor:
    r"""Reference samples of ``target`` by Langevin dynamics in OpenMM (the BAOAB-type
    ``LangevinMiddleIntegrator``, Zhang et al. 2019) at the target's temperature.

    Args:
        target: the molecule.
        samples: positions to return, one every ``interval`` steps after ``equilibration``.
        interval: steps between samples.
        equilibration: steps discarded first.
        timestep_fs: the time step in femtoseconds (1 fs: no bond is constrained).
        friction_per_ps: the collision rate.
        seed: the integrator's random seed (OpenMM's, in ``[1, 2^31)``).
        start: starting positions ``(66,)`` (default: the shipped conformation).

    Returns:
        ``(samples, 66)`` positions in nm, float64.

    """
    mm = _openmm()
    unit = target._unit
    integrator = mm.LangevinMiddleIntegrator(
        target.temperature * unit.kelvin,
        friction_per_ps / unit.picosecond,
        timestep_fs * unit.femtosecond,
    )
    integrator.setRandomNumberSeed(seed + 1)
    context = target.context(integrator)
    positions = target.positions if start is None else start.reshape(22, 3)
    context.setPositions(positions.detach().cpu().double().numpy())
    context.setVelocitiesToTemperature(target.temperature * unit.kelvin, seed + 1)
    integrator.step(equilibration)
    out = np.empty((samples, 66))
    for i in range(samples):
        integrator.step(interval)
        state = context.getState(getPositions=True)
        out[i] = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer).reshape(-1)
    return torch.from_numpy(out)
