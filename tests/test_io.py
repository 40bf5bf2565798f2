"""Model files: exact rebuild, no pickle, and clear refusals of files that are not good models."""

import json
import struct

import pytest
import torch
from sklearn.datasets import make_moons

import nfkit
import nfkit.bijectors as nfb
import nfkit.distributions as nfd
from nfkit._config import REGISTRY
from nfkit.io import FORMAT_VERSION, ModelFileError, read_header


def trained_flow():
    torch.manual_seed(0)
    layers = []
    for order in ("left-to-right", "random"):
        net = nfb.AutoregressiveNetwork(
            2, hidden_units=[16, 16], activation="relu", input_order=order
        )
        layers += [nfb.MaskedAutoregressiveFlow(net), nfb.Permute([1, 0])]
    layers.append(nfb.RealNVP(1, hidden_units=[8]))
    flow = nfd.TransformedDistribution(
        nfd.MultivariateNormalDiag(loc=[0.0] * 2), nfb.Shift([0.5, -0.5])(nfb.Chain(layers))
    )
    x, _ = make_moons(512, noise=0.05, random_state=0)
    nfkit.fit(flow, x, epochs=2, batch_size=64, lr=1e-2, verbose=0, seed=0)
    return flow


def test_trained_flow_rebuilds_exactly_with_metadata(tmp_path):
    flow = trained_flow()
    path = nfkit.save(flow, tmp_path / "m.safetensors", metadata={"columns": ["a", "b"]})
    loaded = nfkit.load(path)
    x = torch.randn(100, 2)
    torch.testing.assert_close(loaded.log_prob(x), flow.log_prob(x), rtol=0, atol=0)
    torch.manual_seed(1)
    a = flow.sample(5)
    torch.manual_seed(1)
    torch.testing.assert_close(loaded.sample(5), a, rtol=0, atol=0)
    assert not loaded.training
    header = read_header(path)
    assert header["metadata"] == {"columns": ["a", "b"]}
    assert header["config"]["class"] == "TransformedDistribution"
    # Loaded weights are trainable again (parameters, not constants).
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in flow.parameters())


def test_file_is_plain_safetensors_without_pickle(tmp_path):
    path = nfkit.save(trained_flow(), tmp_path / "m.safetensors")
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])  # a JSON header, then raw tensor bytes: nothing to unpickle
    assert header["__metadata__"]["format"] == "nfkit"
    assert b"\x80\x04\x95" not in raw[: 8 + n] and b"torch._utils" not in raw


@pytest.fixture
def saved(tmp_path):
    return nfkit.save(trained_flow(), tmp_path / "m.safetensors")


def test_truncated_file_is_refused(saved):
    saved.write_bytes(saved.read_bytes()[:-100])
    with pytest.raises(ModelFileError, match="not an nfkit model file"):
        nfkit.load(saved)


def test_tampered_weights_are_refused(saved):
    raw = bytearray(saved.read_bytes())
    raw[-5] ^= 0xFF
    saved.write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        nfkit.load(saved)


def _rewrite_header(path, change):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    change(header["__metadata__"])
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n :])


def test_edited_config_is_refused(saved):
    _rewrite_header(saved, lambda m: m.update(config=m["config"].replace("16", "17")))
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        nfkit.load(saved)


def test_newer_format_is_refused_with_upgrade_hint(saved):
    _rewrite_header(saved, lambda m: m.update(format_version=str(FORMAT_VERSION + 1)))
    with pytest.raises(ModelFileError, match=r"newer nfkit.*upgrade"):
        nfkit.load(saved)


def test_files_that_are_not_models(tmp_path):
    text = tmp_path / "notes.csv"
    text.write_text("a,b\n1,2\n")
    with pytest.raises(ModelFileError, match="not an nfkit model file"):
        nfkit.load(text)
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(ModelFileError, match="not an nfkit model"):
        nfkit.load(other)
    with pytest.raises(FileNotFoundError, match="no model file"):
        nfkit.load(tmp_path / "missing.safetensors")


def test_unsaveable_parts_are_named_and_leave_the_old_file(tmp_path):
    path = nfkit.save(trained_flow(), tmp_path / "m.safetensors")
    before = path.read_bytes()
    lam = nfb.MaskedAutoregressiveFlow(lambda x: (x * 0, x * 0))
    with pytest.raises(TypeError, match=r"bijector\.shift_and_log_scale_fn: a function"):
        nfkit.save(lam(nfd.MultivariateNormalDiag(loc=[0.0] * 2)), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary left behind


class Cube(nfb.Bijector):
    """x = z**3, a user's own bijector."""

    def __init__(self, gain: float = 1.0) -> None:
        super().__init__()
        self.gain = gain

    def _forward_and_log_det(self, z, context):
        return self.gain * z**3, (torch.log(3 * self.gain * z**2)).sum(-1)

    def _inverse_and_log_det(self, x, context):
        z = torch.sign(x) * (x.abs() / self.gain) ** (1 / 3)
        return z, -(torch.log(3 * self.gain * z**2)).sum(-1)


def test_user_bijectors_need_registering(tmp_path):
    flow = Cube(2.0)(nfd.MultivariateNormalDiag(loc=[0.0] * 2))
    with pytest.raises(TypeError, match=r"not a registered class.*nfkit\.register"):
        nfkit.save(flow, tmp_path / "cube.safetensors")
    nfkit.register(Cube)
    try:
        path = nfkit.save(flow, tmp_path / "cube.safetensors")
        x = torch.tensor([[1.0, -2.0]])
        torch.testing.assert_close(nfkit.load(path).log_prob(x), flow.log_prob(x))
    finally:
        REGISTRY.pop("Cube")
    with pytest.raises(ModelFileError, match="'Cube', which this program has not registered"):
        nfkit.load(path)
