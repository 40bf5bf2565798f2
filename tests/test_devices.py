"""Every flow on every device torch finds: the CPU always, CUDA and MPS where present (issue 7).

A model moved with ``.to(device)`` must compute what it computes on the CPU (float32, TF32
off), take data from anywhere (numpy, CPU tensors), sample on its device, train there with
``fit``/``fit_energy``/``fit_flow_matching`` (checkpoints resume exactly, the device's random
generator included), and save to a file that loads on any device. On a CPU-only machine the
same checks run for the CPU: the code paths are the ones a GPU takes, the comparison is then
CPU against a moved copy.
"""

import copy

import numpy as np
import pytest
import torch
from sklearn.datasets import make_moons

import nfkit
import nfkit.distributions as nfd
from nfkit import flows
from nfkit._tensors import resolve_device
from nfkit.sklearn import FlowDensityEstimator
from nfkit.stochastic import HMCLayer, StochasticNormalizingFlow
from nfkit.targets import DoubleWell, ManyWell, MullerBrown, rezende
from test_bijector_properties import BIJECTORS, _build

DEVICES = ["cpu"]
if torch.cuda.is_available():
    DEVICES.append("cuda")
if torch.backends.mps.is_available():
    DEVICES.append("mps")


@pytest.fixture(autouse=True)
def full_float32():
    """TF32 matrix units change float32 results at 1e-3; compare devices at full precision."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _close(on_device: torch.Tensor, on_cpu: torch.Tensor, device: str, tol: float = 1e-4):
    assert on_device.device.type == device
    scale = 1.0 + on_cpu.abs().max().item()
    torch.testing.assert_close(on_device.cpu(), on_cpu, rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(BIJECTORS))
def test_every_bijector_computes_the_same_on_the_device(name, device):
    bijector, z, context = _build(name)  # float32 here: the device's working precision
    bijector.eval()
    moved = copy.deepcopy(bijector).to(device)
    c_dev = None if context is None else context.to(device)
    with torch.no_grad():
        x, log_det = bijector.forward_and_log_det(z, context=context)
        x_dev, log_det_dev = moved.forward_and_log_det(z.to(device), context=c_dev)
        _close(x_dev, x, device)
        _close(log_det_dev, log_det, device)
        z_back, inv_log_det = moved.inverse_and_log_det(x_dev, context=c_dev)
        _close(z_back, bijector.inverse(x, context=context), device, tol=1e-3)
        _close(inv_log_det, -log_det, device, tol=1e-3)


def _families():
    torch.manual_seed(0)
    return {
        "maf": (flows.maf(3, layers=2, hidden=[16]), (3,)),
        "iaf": (flows.iaf(3, layers=2, hidden=[16]), (3,)),
        "realnvp": (flows.realnvp(3, layers=2, hidden=[16]), (3,)),
        "nsf-ar": (flows.nsf(3, layers=2, hidden=[16]), (3,)),
        "nsf-coupling": (flows.nsf(3, layers=2, hidden=[16], coupling=True), (3,)),
        "cnf": (flows.cnf(2, hidden=[16]), (2,)),
        "glow": (flows.glow((2, 8, 4), levels=2, steps=1, hidden_channels=8), (2, 8, 4)),
        "mixture": (
            nfd.MixtureSameFamily(
                torch.zeros(3),
                nfd.MultivariateNormalDiag(loc=torch.randn(3, 2), scale_diag=torch.ones(3, 2)),
            ),
            (2,),
        ),
    }


FAMILIES = sorted(_families())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("family", FAMILIES)
def test_every_flow_family_runs_on_the_device(family, device):
    flow, shape = _families()[family]
    x = torch.rand(64, *shape) * 0.8 + 0.1  # inside (0, 1) for glow's logit, fine for all
    flow.log_prob(x)  # builds lazy networks on the CPU
    flow.eval()
    on_cpu = flow.log_prob(x).detach()
    moved = copy.deepcopy(flow).to(device)
    assert moved.device.type == device
    _close(moved.log_prob(x).detach(), on_cpu, device, tol=2e-4)  # a CPU tensor follows the model
    from_numpy = moved.log_prob(x.numpy())
    assert isinstance(from_numpy, np.ndarray)
    np.testing.assert_allclose(from_numpy, on_cpu.numpy(), rtol=2e-4, atol=2e-4 * 10)
    samples = moved.sample(32)
    assert samples.device.type == device and samples.shape == (32, *shape)
    assert torch.isfinite(samples).all()
    drawn, log_p = moved.sample_and_log_prob(16)
    _close(log_p.detach(), moved.log_prob(drawn).detach().cpu(), device, tol=2e-3)
    params = [p for p in moved.parameters() if p.requires_grad]
    if params:
        moved.log_prob(x.to(device)).mean().backward()
        assert all(p.grad is not None and p.grad.device.type == device for p in params)


@pytest.mark.parametrize("device", DEVICES)
def test_a_flow_moved_before_first_use_builds_its_networks_on_the_device(device):
    flow = flows.maf(2, layers=2, hidden=[8]).to(device)
    flow.log_prob(torch.randn(5, 2))
    assert {p.device.type for p in flow.parameters()} == {device}


@pytest.mark.parametrize("device", DEVICES)
def test_fit_trains_on_the_device_and_the_file_loads_anywhere(device, tmp_path):
    data = make_moons(2000, noise=0.05, random_state=0)[0].astype(np.float32)
    torch.manual_seed(0)
    flow = flows.maf(2, layers=3, hidden=[64, 64]).to(device)
    history = nfkit.fit(
        flow, data, epochs=20, batch_size=128, lr=3e-3, validation_split=0.2, seed=0, verbose=0
    )
    assert {p.device.type for p in flow.parameters()} == {device}
    # untrained: 3.0; the best Gaussian: 2.0; this short run: about 1.4
    assert history.history["val_loss"][-1] < 1.6
    path = nfkit.save(flow, tmp_path / "moons.safetensors")
    test = torch.as_tensor(make_moons(500, noise=0.05, random_state=1)[0], dtype=torch.float32)
    flow.eval()
    expected = flow.log_prob(test).detach().cpu()
    torch.testing.assert_close(nfkit.load(path).log_prob(test).detach(), expected)
    again = nfkit.load(path, map_location=device).log_prob(test).detach()
    _close(again, expected, device)


@pytest.mark.parametrize("device", DEVICES)
def test_energy_training_on_the_device_resumes_like_an_uninterrupted_run(device, tmp_path):
    target = DoubleWell().to(device)

    def run(epochs: int, resume: bool) -> torch.Tensor:
        torch.manual_seed(1)
        flow = flows.realnvp(2, layers=2, hidden=[16]).to(device)
        nfkit.fit_energy(
            flow,
            target,
            epochs=epochs,
            steps_per_epoch=10,
            seed=3,
            verbose=0,
            checkpoint=tmp_path / "energy.ckpt",
            resume=resume,
        )
        return torch.cat([p.detach().flatten() for p in flow.parameters()]).cpu()

    straight = run(3, resume=False)
    (tmp_path / "energy.ckpt").unlink()
    run(1, resume=False)
    exact = 0.0 if device == "cpu" else 1e-6  # GPU kernels may reorder sums between runs
    torch.testing.assert_close(run(3, resume=True), straight, rtol=exact, atol=exact)


@pytest.mark.parametrize("device", DEVICES)
def test_flow_matching_trains_a_cnf_on_the_device(device):
    data = make_moons(2000, noise=0.05, random_state=0)[0].astype(np.float32)
    torch.manual_seed(0)
    flow = flows.cnf(2, hidden=[64, 64]).to(device)
    nfkit.fit_flow_matching(flow, data, epochs=100, batch_size=256, lr=5e-3, seed=0, verbose=0)
    test = torch.as_tensor(make_moons(300, noise=0.05, random_state=1)[0], dtype=torch.float32)
    flow.eval()
    nll = -flow.log_prob(test.to(device)).mean().item()
    assert nll < 1.75  # the best Gaussian: 2.0; seeds 0-2 on the CPU: 1.39-1.51


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "target", [DoubleWell(), ManyWell(4), MullerBrown(), rezende("U2")], ids=lambda t: repr(t)
)
def test_targets_and_importance_sampling_on_the_device(target, device):
    """log Z by importance sampling from a broad Gaussian on the device, within 4 se."""
    ref = target.sample(5_000, seed=1)
    x = ref[:100]
    moved = copy.deepcopy(target).to(device)
    _close(moved.log_prob(x.to(device)), target.log_prob(x), device)
    mean = ref.mean(0)
    proposal = nfd.MultivariateNormalDiag(loc=mean, scale_diag=torch.full_like(mean, 2.5))
    torch.manual_seed(0)
    result = nfkit.importance(proposal.to(device), moved, 200_000)
    assert abs(result.log_z - target.log_z) < 4 * result.log_z_se + 1e-3


@pytest.mark.parametrize("device", DEVICES)
def test_a_stochastic_normalizing_flow_runs_on_the_device(device):
    """Annealed HMC from a Gaussian to the double well: unbiased log Z on the device."""
    target = DoubleWell().to(device)
    base = nfd.MultivariateNormalDiag(loc=[0.0, 0.0], scale_diag=[2.0, 2.0])
    ladder = [HMCLayer(lam=(i + 1) / 5, steps=2, step_size=0.2) for i in range(5)]
    snf = StochasticNormalizingFlow(base, ladder, target).to(device)
    torch.manual_seed(0)
    result = nfkit.importance(snf, target, 50_000)
    assert result.ess > 0.1  # about 0.18: a five-rung ladder, not a trained flow
    assert abs(result.log_z - target.log_z) < 4 * result.log_z_se + 1e-3


@pytest.mark.parametrize("device", DEVICES)
def test_the_estimator_and_the_command_train_on_the_device(device, tmp_path):
    x = make_moons(600, noise=0.05, random_state=0)[0]
    est = FlowDensityEstimator(
        "nsf", layers=2, hidden=(32,), epochs=30, batch_size=64, random_state=0, device=device
    ).fit(x)
    assert est.flow_.device.type == "cpu"  # fitted estimators pickle and score anywhere
    assert est.score(x) > -1.5  # the best Gaussian: -2.0; seeds 0-1 on the CPU: -1.15, -1.11

    from typer.testing import CliRunner

    from nfkit.cli import app

    np.save(tmp_path / "moons.npy", x)
    args = ["train", str(tmp_path / "moons.npy"), "--epochs", "3", "--layers", "2"]
    args += ["--hidden", "16", "--device", device, "-o", str(tmp_path / "run"), "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert nfkit.load(tmp_path / "run" / "model.safetensors").log_prob(x[:3]).shape == (3,)


@pytest.mark.parametrize(
    "name, problem",
    [("gpu", "not a device name"), ("cuda:99", "cuda:99"), ("mps:7", "mps:7")],
)
def test_a_device_that_is_not_there_is_named_in_the_error(name, problem, tmp_path):
    with pytest.raises(ValueError, match=problem):
        resolve_device(name)
    with pytest.raises(ValueError, match=problem):
        FlowDensityEstimator(epochs=1, device=name).fit(np.random.rand(20, 2))

    from typer.testing import CliRunner

    from nfkit.cli import app

    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "moons", "--device", name, "-o", str(out)])
    assert result.exit_code == 2 and problem in result.output
    assert not out.exists()  # nothing written for a bad device
