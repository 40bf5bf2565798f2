"""Alanine dipeptide through OpenMM (issue 19): energies and forces equal OpenMM called
directly, the gradient is the forces, and the Ramachandran angles are the textbook torsions."""

import math

import numpy as np
import openmm
import pytest
import torch
from openmm import app, unit

import nfkit
from nfkit.targets import AlanineDipeptide
from nfkit.targets.molecules import openmmtools_data


def _openmm_energy(positions, implicit):
    folder = "alanine-dipeptide-gbsa/alanine-dipeptide"
    prmtop = app.AmberPrmtopFile(str(openmmtools_data(f"{folder}.prmtop")))
    system = prmtop.createSystem(
        implicitSolvent=app.OBC1 if implicit else None, constraints=None, nonbondedCutoff=None
    )
    reference = openmm.Platform.getPlatformByName("Reference")  # double precision, as the target
    context = openmm.Context(system, openmm.VerletIntegrator(1e-3), reference)
    context.setPositions(positions * unit.nanometer)
    state = context.getState(getEnergy=True, getForces=True)
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    return energy, np.asarray(forces)


@pytest.mark.parametrize("solvent", ["vacuum", "implicit"])
def test_energy_and_forces_match_openmm_called_directly(solvent):
    target = AlanineDipeptide(solvent, temperature=300.0)
    rng = np.random.default_rng(0)
    known = target.positions.numpy()
    for positions in (known, known + 0.005 * rng.standard_normal(known.shape)):
        energy, forces = _openmm_energy(positions, solvent == "implicit")
        x = torch.tensor(positions.reshape(1, 66), requires_grad=True)
        log_p = target.log_prob(x)
        (grad,) = torch.autograd.grad(log_p.sum(), x)
        kt = 8.314462618e-3 * 300.0
        assert float(log_p.detach()) == pytest.approx(-energy / kt, rel=1e-6)
        np.testing.assert_allclose(grad.numpy().reshape(22, 3), forces / kt, rtol=1e-5, atol=1e-4)
    # The two solvents are different energies: implicit solvent adds the GB term.
    assert abs(_openmm_energy(known, True)[0] - _openmm_energy(known, False)[0]) > 10


def test_the_gradient_is_the_derivative_of_the_log_density():
    target = AlanineDipeptide(temperature=600.0)
    x = target.positions.reshape(1, 66).clone()
    direction = torch.randn(1, 66, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(target.log_prob(x).sum(), x)
    h = 1e-6
    with torch.no_grad():
        slope = (target.log_prob(x + h * direction) - target.log_prob(x - h * direction)) / (2 * h)
    assert float((grad * direction).sum()) == pytest.approx(float(slope), rel=1e-4)
    assert target.kT == pytest.approx(8.314462618e-3 * 600.0)


def test_batches_and_broken_rows():
    target = AlanineDipeptide()
    x = target.positions.reshape(1, 66).repeat(3, 1)
    x[1] = x[1] + 0.01
    x[2, 0] = math.nan
    log_p = target.log_prob(x.float())
    assert log_p.dtype == torch.float32 and log_p.shape == (3,)
    assert math.isfinite(log_p[0]) and math.isfinite(log_p[1]) and math.isnan(log_p[2])
    with pytest.raises(ValueError, match="66-dimensional"):
        target.log_prob(torch.zeros(2, 60))
    with pytest.raises(ValueError, match="solvent"):
        AlanineDipeptide("water")


def test_ramachandran_angles_follow_the_torsion_convention():
    target = AlanineDipeptide()
    # Rotating the C-terminal half about the CA-C bond changes psi by exactly that angle.
    atoms = target.positions.clone()
    phi, psi = target.dihedrals(atoms.reshape(66))
    axis = atoms[14] - atoms[8]
    axis = axis / axis.norm()
    angle = 0.7
    k = torch.tensor([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = torch.eye(3, dtype=k.dtype) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k
    moved = atoms.clone()
    moved[15:] = (atoms[15:] - atoms[14]) @ rotation.T + atoms[14]
    phi2, psi2 = target.dihedrals(moved.reshape(66))
    assert float(phi2) == pytest.approx(float(phi), abs=1e-9)
    assert math.remainder(float(psi2 - psi) - angle, 2 * math.pi) == pytest.approx(0.0, abs=1e-9)
    assert nfkit.targets.AlanineDipeptide is AlanineDipeptide
