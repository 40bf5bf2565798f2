"""MADE: the autoregressive property, lazy building and conditioning."""

import math

import pytest
import torch

import nfkit.bijectors as nfb
from nfkit.nets import MaskedLinear


@pytest.mark.parametrize("order", ["left-to-right", "right-to-left", "random", [2, 4, 1, 3]])
def test_outputs_depend_only_on_earlier_inputs(order):
    torch.manual_seed(0)
    net = nfb.AutoregressiveNetwork(
        3, event_shape=4, hidden_units=[32, 32], input_order=order, zero_last=False
    )
    x = torch.randn(4, requires_grad=True)
    degrees = net.input_degrees
    out = net(x)
    assert out.shape == (4, 3)
    for i in range(4):
        for k in range(3):
            (grad,) = torch.autograd.grad(out[i, k], x, retain_graph=True)
            allowed = degrees < degrees[i]
            assert torch.all(grad[~allowed] == 0), (i, k)
    # and the mask is not vacuous: the last dim in the order depends on earlier ones
    last = int(torch.argmax(degrees))
    (grad,) = torch.autograd.grad(out[last].sum(), x)
    assert grad.abs().sum() > 0


def test_lazy_build_and_errors():
    net = nfb.AutoregressiveNetwork(2, hidden_units=[8])
    assert not net.built and sum(1 for _ in net.parameters()) == 0
    net(torch.zeros(5, 3))
    assert net.built and net.event_size == 3
    with pytest.raises(ValueError, match=r"expected trailing shape \(3,\)"):
        net(torch.zeros(5, 2))
    with pytest.raises(ValueError, match="unknown activation"):
        nfb.AutoregressiveNetwork(2, hidden_units=[8], activation="nope")(torch.zeros(1, 2))
    with pytest.raises(ValueError, match=r"permutation of 1\.\.3"):
        nfb.AutoregressiveNetwork(2, event_shape=3, input_order=[1, 1, 2])


def test_context_reaches_every_output():
    torch.manual_seed(0)
    net = nfb.AutoregressiveNetwork(2, hidden_units=[16], zero_last=False)
    x, c = torch.randn(3), torch.randn(2, requires_grad=True)
    out = net(x, context=c)
    for i in range(3):
        (grad,) = torch.autograd.grad(out[i, 0], c, retain_graph=True)
        assert grad.abs().sum() > 0
    with pytest.raises(ValueError, match="conditional"):
        net(x)


def test_maf_samples_in_d_passes_and_iaf_is_its_inverse():
    torch.manual_seed(0)
    net = nfb.AutoregressiveNetwork(2, hidden_units=[16], zero_last=False)
    calls = []
    net.register_forward_hook(lambda *a: calls.append(1))
    maf = nfb.MaskedAutoregressiveFlow(net)
    z = torch.randn(10, 5)
    x = maf.forward(z)
    assert len(calls) == 5  # one pass per dimension when sampling
    calls.clear()
    maf.inverse(x)
    assert len(calls) == 1  # one pass for the density
    iaf = nfb.Invert(maf)
    torch.testing.assert_close(iaf.forward(x), maf.inverse(x))


def test_maf_scale_parametrizations_match_their_formulas():
    torch.manual_seed(0)
    x = torch.randn(5, 3)
    a, b = torch.randn(5, 3), torch.randn(5, 3)

    def fn(_):
        return a, b

    # A function given TFP's way takes TFP's formula x = z e^b + a by default.
    for maf in (nfb.MaskedAutoregressiveFlow(fn, scale="exp"), nfb.MaskedAutoregressiveFlow(fn)):
        assert maf.scale == "exp"
        z, ildj = maf.inverse_and_log_det(x)
        torch.testing.assert_close(z, (x - a) * torch.exp(-b))
        torch.testing.assert_close(ildj, -b.sum(-1))
    s = torch.nn.functional.softplus(b) + 1e-3
    z, ildj = nfb.MaskedAutoregressiveFlow(fn, scale="softplus").inverse_and_log_det(x)
    torch.testing.assert_close(z, s * x + a)
    torch.testing.assert_close(ildj, s.log().sum(-1))
    # nfkit's own network keeps nfkit's softplus form (the chapter's results need it).
    assert nfb.MaskedAutoregressiveFlow(nfb.AutoregressiveNetwork(2)).scale == "softplus"
    # A zero network output: the identity for exp, a scale of log 2 + 1e-3 for softplus.
    zero = torch.zeros(5, 3)
    maf = nfb.MaskedAutoregressiveFlow(lambda _: (zero, zero))
    torch.testing.assert_close(maf.inverse(x), x)
    maf = nfb.MaskedAutoregressiveFlow(lambda _: (zero, zero), scale="softplus")
    torch.testing.assert_close(maf.inverse(x), x * (math.log(2) + 1e-3))
    # TFP's x = z e^b + a is finite for b far below -88, where e^{-b} overflows float32:
    # the sampling direction is computed in that form, not as (z - t) / m (NaN before).
    shift, tiny = torch.full((5, 3), 2.0), torch.full((5, 3), -100.0)
    far = nfb.MaskedAutoregressiveFlow(lambda _: (shift, tiny), scale="exp")
    x, fldj = far.forward_and_log_det(torch.randn(5, 3))
    torch.testing.assert_close(x, shift)
    torch.testing.assert_close(fldj, torch.full((5,), -300.0))
    with pytest.raises(ValueError, match="scale must be"):
        nfb.MaskedAutoregressiveFlow(fn, scale="sigmoid")
    with pytest.raises(ValueError, match="log_scale_bound applies"):
        nfb.MaskedAutoregressiveFlow(fn, scale="softplus", log_scale_bound=3.0)


def _reference(net: nfb.AutoregressiveNetwork, x: torch.Tensor) -> torch.Tensor:
    """The masked MLP written from the state dict's per-layer names, layer by layer."""
    state = net.state_dict()
    layers = [i for i, m in enumerate(net.net) if isinstance(m, MaskedLinear)]
    h = x
    for j, i in enumerate(layers):
        weight = state[f"net.{i}.weight"] * state[f"net.{i}.mask"]
        h = h @ weight.T + state[f"net.{i}.bias"]
        if j < len(layers) - 1:
            h = torch.relu(h)
    return h.unflatten(-1, (net.params, net.event_size)).transpose(-1, -2)


def test_one_flat_parameter_under_the_usual_state_dict_names():
    """MADE keeps all its weights in one tensor (one optimizer update instead of two per
    layer); state dicts and model files still name each layer's weight and bias."""
    torch.manual_seed(0)
    net = nfb.AutoregressiveNetwork(2, 3, hidden_units=[16, 16], activation="relu")
    assert [name for name, _ in net.named_parameters()] == ["weights"]
    keys = set(net.state_dict())
    assert {f"net.{i}.{n}" for i in (0, 2, 4) for n in ("weight", "bias", "mask")} <= keys
    assert "weights" not in keys and "weight_mask" not in keys
    x = torch.randn(7, 3)
    torch.testing.assert_close(net(x), _reference(net, x))

    # a state dict by those names (as every older file holds) loads into a fresh network
    other = nfb.AutoregressiveNetwork(2, 3, hidden_units=[16, 16], activation="relu")
    other.load_state_dict(net.state_dict())
    torch.testing.assert_close(other(x), net(x), rtol=0, atol=0)


def test_masked_weights_get_no_gradient_and_layer_views_write_through():
    torch.manual_seed(0)
    net = nfb.AutoregressiveNetwork(2, 3, hidden_units=[8], activation="relu")
    net(torch.randn(5, 3)).sum().backward()  # the zero output layer still gets a gradient
    grad = net.weights.grad
    assert grad is not None and torch.all(grad[net.weight_mask == 0] == 0)
    assert torch.any(grad[net.weight_mask == 1] != 0)
    net.zero_output()
    torch.testing.assert_close(net(torch.randn(4, 3)), torch.zeros(4, 3, 2))
    weight, _ = net.layer_parameters()[0]
    with torch.no_grad():
        weight.fill_(0.5)
    assert torch.all(net.state_dict()["net.0.weight"] == 0.5)


def test_flat_network_moves_with_the_module():
    net = nfb.AutoregressiveNetwork(2, 2, hidden_units=[8], activation="relu").double()
    assert net.weights.dtype == net.weight_mask.dtype == torch.float64
    assert net(torch.randn(3, 2, dtype=torch.float64)).dtype == torch.float64


def test_the_torch_start_and_the_previous_one():
    """Default: every layer as torch.nn.Linear starts (bounds 1/sqrt(n_in)), output drawn;
    init="glorot", zero_last=True: the previous fixed-map start; a bad name is refused."""
    torch.manual_seed(0)
    net = nfb.AutoregressiveNetwork(2, 3, hidden_units=[64], activation="relu")
    for weight, bias in net.layer_parameters():
        bound = 1 / math.sqrt(weight.shape[1])
        assert weight.abs().max() <= bound and bias.abs().max() <= bound
        assert weight.abs().max() > 0.5 * bound  # drawn, not zero
    old = nfb.AutoregressiveNetwork(2, 3, hidden_units=[64], init="glorot", zero_last=True)
    torch.testing.assert_close(old(torch.randn(4, 3)), torch.zeros(4, 3, 2))
    with pytest.raises(ValueError, match="init must be"):
        nfb.AutoregressiveNetwork(2, 3, hidden_units=[8], init="xavier")
