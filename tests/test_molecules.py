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


def _openmm_energy(positions, implicit, platform="Reference"):
    folder = "alanine-dipeptide-gbsa/alanine-dipeptide"
    prmtop = app.AmberPrmtopFile(str(openmmtools_data(f"{folder}.prmtop")))
    system = prmtop.createSystem(
        implicitSolvent=app.OBC1 if implicit else None, constraints=None, nonbondedCutoff=None
    )
    chosen = openmm.Platform.getPlatformByName(platform)
    context = openmm.Context(system, openmm.VerletIntegrator(1e-3), chosen)
    context.setPositions(positions * unit.nanometer)
    state = context.getState(getEnergy=True, getForces=True)
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    return energy, np.asarray(forces)


@pytest.mark.parametrize("solvent", ["vacuum", "implicit"])
def test_energy_and_forces_match_openmm_called_directly(solvent):
    target = AlanineDipeptide(solvent, temperature=300.0)
    # The default platforms: Reference (double precision) in vacuum, CPU (mixed) with OBC1.
    assert target.platform == ("Reference" if solvent == "vacuum" else "CPU")
    rng = np.random.default_rng(0)
    known = target.positions.numpy()
    for positions in (known, known + 0.005 * rng.standard_normal(known.shape)):
        x = torch.tensor(positions.reshape(1, 66), requires_grad=True)
        log_p = target.log_prob(x)
        (grad,) = torch.autograd.grad(log_p.sum(), x)
        kt = 8.314462618e-3 * 300.0
        energy, forces = _openmm_energy(positions, solvent == "implicit", target.platform)
        assert float(log_p.detach()) == pytest.approx(-energy / kt, rel=1e-6)
        np.testing.assert_allclose(grad.numpy().reshape(22, 3), forces / kt, rtol=1e-5, atol=1e-4)
        # The CPU platform's single-precision energies agree with double precision.
        energy, forces = _openmm_energy(positions, solvent == "implicit")
        assert float(log_p.detach()) == pytest.approx(-energy / kt, rel=1e-4, abs=1e-3)
        np.testing.assert_allclose(grad.numpy().reshape(22, 3), forces / kt, rtol=1e-3, atol=1e-2)
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


def test_internal_coordinates_rebuild_the_molecule_and_carry_the_global_motion_first():
    target = AlanineDipeptide()
    ic = nfkit.bijectors.InternalCoordinates(target.zmatrix())
    x = target.positions.reshape(1, 66)
    z = ic.inverse(x)
    torch.testing.assert_close(ic.forward(z), x, atol=1e-12, rtol=0)
    bonds = z.reshape(22, 3)[1:, 0]
    assert torch.all((bonds > 0.09) & (bonds < 0.16))  # nm: C-H ~0.109 to C-C ~0.153
    # Moving the first six values (translation, two rotations) and row 2's torsion (the third
    # rotation) moves the molecule rigidly: the energy stays.
    moved = z.clone().reshape(22, 3)
    moved[0] += torch.tensor([0.3, -1.0, 2.0], dtype=z.dtype)
    moved[1, 1:] += torch.tensor([0.4, -0.8], dtype=z.dtype)
    moved[2, 2] += 1.1
    x2 = ic.forward(moved.reshape(1, 66))
    assert float((x2 - x).abs().max()) > 0.5
    torch.testing.assert_close(target.log_prob(x2), target.log_prob(x), atol=1e-6, rtol=1e-9)
    # A torsion later in the Z-matrix is internal: changing it changes the energy.
    bent = z.clone().reshape(22, 3)
    bent[10, 2] += 1.0
    change = target.log_prob(ic.forward(bent.reshape(1, 66))) - target.log_prob(x)
    assert abs(float(change)) > 0.1


def test_internal_target_has_the_volume_of_the_removed_rotations():
    # Two independent standard normal bond vectors: bonds are chi(3), the angle between them
    # has density sin(a) / 2 -- in internal coordinates, up to one constant.
    class Chain3(nfkit.targets.Target):
        dim = 9

        def log_prob(self, x):
            p = x.reshape(*x.shape[:-1], 3, 3)
            return -0.5 * ((p[..., 1, :] - p[..., 0, :]).square().sum(-1)
                           + (p[..., 2, :] - p[..., 1, :]).square().sum(-1))  # fmt: skip

    target = nfkit.targets.InternalTarget(Chain3(), [[0], [1, 0], [2, 1, 0]])
    assert target.dim == 3 and target.bonds == [0, 1] and target.angles == [2]
    g = torch.Generator().manual_seed(0)
    z = torch.rand(50, 3, generator=g, dtype=torch.float64) * torch.tensor([3.0, 3.0, 3.1])
    z = z + torch.tensor([0.05, 0.05, 0.02], dtype=torch.float64)
    exact = (2 * z[:, :2].log() - 0.5 * z[:, :2].square()).sum(-1) + z[:, 2].sin().log()
    difference = target.log_prob(z) - exact
    assert float(difference.max() - difference.min()) < 1e-10


def test_alanine_in_internal_coordinates():
    molecule = AlanineDipeptide()
    target = nfkit.targets.InternalTarget(molecule, molecule.zmatrix())
    assert target.dim == 60 and len(target.torsions) == 19 and len(target.bonds) == 21
    z = target.from_cartesian(molecule.positions.reshape(1, 66))
    torch.testing.assert_close(target.from_cartesian(target.to_cartesian(z)), z)
    assert torch.isfinite(target.log_prob(z)).all()
    # The rebuilt molecule has the same shape: the same energy as the shipped conformation.
    torch.testing.assert_close(
        molecule.log_prob(target.to_cartesian(z)),
        molecule.log_prob(molecule.positions.reshape(1, 66)),
    )


def test_langevin_dynamics_samples_at_the_temperature():
    # Near a minimum the potential energy is about a sum of 3N - 6 = 60 harmonic modes: its
    # mean above the minimum is 30 kT, its standard deviation sqrt(30) kT.
    from nfkit.targets.molecules import molecular_dynamics

    target = AlanineDipeptide(temperature=300.0)
    context = openmm.Context(target.system, openmm.VerletIntegrator(1e-3))
    context.setPositions(target.positions.numpy())
    openmm.LocalEnergyMinimizer.minimize(context, 1e-3)
    state = context.getState(getEnergy=True)
    u_min = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) / target.kT
    x = molecular_dynamics(target, 400, interval=250, equilibration=20_000, seed=3)
    excess = -target.log_prob(x) - u_min
    assert 24 < float(excess.mean()) < 36
    assert 3.5 < float(excess.std()) < 7.5
    hot = molecular_dynamics(AlanineDipeptide(temperature=600.0), 400, interval=250, seed=3)
    assert float((-target.log_prob(hot) - u_min).mean()) > 45  # twice as hot: about 60 kT(300)


def test_a_mixed_flow_learns_alanine_from_molecular_dynamics():
    # Forward KL on MD frames in internal coordinates (torsions on the circle), from the
    # data's marginals; the flow's own samples are then molecules at MD's energies.
    from nfkit.targets.molecules import molecular_dynamics

    torch.manual_seed(0)
    molecule = AlanineDipeptide(temperature=300.0)
    target = nfkit.targets.InternalTarget(molecule, molecule.zmatrix())
    md = target.from_cartesian(molecular_dynamics(molecule, 3000, interval=100, seed=1)).float()
    train, test = md[:2500], md[2500:]
    blind = nfkit.flows.mixed(60, target.torsions, layers=3, hidden=[64, 64])
    flow = nfkit.flows.mixed(60, target.torsions, layers=3, hidden=[64, 64], data=train)
    with torch.no_grad():
        start = -float(flow.log_prob(test).mean())
        assert start < -float(blind.log_prob(test).mean()) - 100  # the marginals' start
    nfkit.fit(
        flow, train, epochs=20, batch_size=128, lr=1e-3, validation_split=0.1, patience=5,
        verbose=0, seed=0,
    )  # fmt: skip
    with torch.no_grad():
        assert -float(flow.log_prob(test).mean()) < start  # measured: -123.2 -> -124.6
        samples = flow.sample(2000).double()
    assert bool((samples[:, target.torsions].abs() <= math.pi).all())
    energy_md = -molecule.log_prob(target.to_cartesian(test.double()))
    energy_flow = -molecule.log_prob(target.to_cartesian(samples))
    assert abs(float(energy_flow.median() - energy_md.median())) < 12  # kT; measured 7


def test_the_zmatrix_measures_methyl_hydrogens_from_each_other():
    rows = AlanineDipeptide().zmatrix()
    by_atom = {row[0]: row for row in rows}
    # Ace's methyl hydrogens 0, 2, 3 on carbon 1: the second and third torsions are taken from
    # the hydrogen placed before them, so they are near-constant (about +-120 degrees).
    assert by_atom[2][1:3] == [1, 4] and by_atom[2][3] == 0 and by_atom[3][3] == 2


@pytest.mark.parametrize(
    ("method", "solvent", "cache"),
    [
        ("md", "vacuum", "alanine_md_3000_0.npy"),
        ("fab", "vacuum", "alanine_md_3000_0.npy"),
    ],
)
def test_the_alanine_example_runs_end_to_end(tmp_path, method, solvent, cache):
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parents[1] / "examples" / "alanine_dipeptide.py"
    out = tmp_path / "ala.png"
    subprocess.run(
        [sys.executable, str(script), "--out", str(out), "--cache", str(tmp_path),
         "--frames", "3000", "--epochs", "2", "--samples", "3000", "--method", method,
         "--solvent", solvent, "--steps", "20"],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    summary = json.loads(out.with_suffix(".json").read_text())
    assert out.exists() and list(tmp_path.glob(cache))
    assert (summary["method"], summary["solvent"]) == (method, solvent)
    assert 0 < summary["ess"] <= 1
    md = summary["rows"]["MD (OpenMM, reference)"]
    assert abs(md["kl_to_md"]) < 1e-12 and math.isfinite(md["delta_f"])
