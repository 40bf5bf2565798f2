"""TFP's documented examples, ported by changing only the imports (issue 16): each asserts what
TFP's docstring states. Our own ports of the examples of TFP's API pages for Reshape, Inline,
a Bijector subclass written the TFP way, ScaleMatvecLU and batch shapes through
TransformedDistribution."""

import numpy as np
import pytest
import torch

import nfkit.bijectors as tfb
import nfkit.distributions as tfd


def tf_linalg_lu(w):
    """What ``tf.linalg.lu`` returns, from torch's factorization (w = P L U)."""
    p, lower, upper = torch.linalg.lu(w)
    return lower.tril(-1) + upper, p.argmax(0)


def test_reshape_docstring_example():
    r = tfb.Reshape(event_shape_out=[1, -1])
    np.testing.assert_array_equal(r.forward([3.0, 4.0]), [[3.0, 4.0]])  # shape [1, 2]
    np.testing.assert_array_equal(r.forward([[1.0, 2.0], [3.0, 4.0]]), [[[1.0, 2.0]], [[3.0, 4.0]]])
    np.testing.assert_array_equal(r.inverse([[3.0, 4.0]]), [3.0, 4.0])  # shape [2]
    assert float(r.forward_log_det_jacobian([3.0, 4.0])) == 0.0
    assert float(r.inverse_log_det_jacobian([[3.0, 4.0]])) == 0.0
    assert r.forward_min_event_ndims == 1 and r.inverse_min_event_ndims == 2
    with pytest.raises(ValueError, match="cannot reshape 5 numbers"):
        tfb.Reshape([2, -1]).forward(torch.zeros(5))


def test_reshape_expands_the_rank_inside_a_chain_and_a_distribution():
    # The chapter's Glow remark: from a flat vector to an image, and the density follows.
    base = tfd.MultivariateNormalDiag(loc=[0.0] * 12)
    flow = tfd.TransformedDistribution(
        base, tfb.Chain([tfb.Scale(2.0), tfb.Reshape(event_shape_out=[3, 2, 2])])
    )
    assert flow.event_shape == (3, 2, 2)
    x = flow.sample(5)
    assert x.shape == (5, 3, 2, 2)
    expected = base.log_prob((x / 2.0).reshape(5, 12)) - 12 * np.log(2.0)
    torch.testing.assert_close(flow.log_prob(x), expected)
    squeezed = tfb.Chain([tfb.Squeeze(), tfb.Reshape([1, 4, 4])])
    assert squeezed.forward_event_shape([16]) == (4, 2, 2)
    assert squeezed.inverse_event_shape([4, 2, 2]) == (16,)
    assert squeezed.forward_event_shape_tensor([16]).tolist() == [4, 2, 2]
    assert tfb.Invert(squeezed).forward_event_shape([4, 2, 2]) == (16,)


def test_inline_docstring_example():
    exp = tfb.Inline(
        forward_fn=torch.exp,
        inverse_fn=torch.log,
        inverse_log_det_jacobian_fn=(lambda y: -torch.sum(torch.log(y), dim=-1)),
        forward_min_event_ndims=1,
        name="exp",
    )
    x = torch.tensor([[0.5, -1.0], [2.0, 0.0]])
    torch.testing.assert_close(exp.forward(x), torch.exp(x))
    torch.testing.assert_close(exp.forward_log_det_jacobian(x), x.sum(-1))  # derived
    torch.testing.assert_close(exp.inverse(torch.exp(x)), x)
    assert exp.name == "exp"
    with pytest.raises(ValueError, match="log_det_jacobian_fn"):
        tfb.Inline(forward_fn=torch.exp)


class Exp(tfb.Bijector):
    """TFP's Bijector docstring: 'Example Bijector: Exp' (written the TFP way)."""

    def __init__(self, validate_args=False, name="exp"):
        super().__init__(validate_args=validate_args, forward_min_event_ndims=0, name=name)

    def _forward(self, x):
        return torch.exp(x)

    def _inverse(self, y):
        return torch.log(y)

    def _inverse_log_det_jacobian(self, y):
        return -self._forward_log_det_jacobian(self._inverse(y))

    def _forward_log_det_jacobian(self, x):
        return x  # the log-det of exp is x, elementwise


def test_a_bijector_written_the_tfp_way():
    b = Exp()
    x = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    torch.testing.assert_close(b.forward(x), torch.exp(x))
    torch.testing.assert_close(b.inverse_log_det_jacobian(torch.exp(x), event_ndims=1), -x.sum(-1))
    assert b.name == "exp" and Exp(name="e").name == "e"
    flow = tfd.TransformedDistribution(tfd.Normal(0.0, 1.0), b)  # the lognormal
    torch.testing.assert_close(
        flow.log_prob(torch.tensor([1.0, 2.0])),
        torch.distributions.LogNormal(0.0, 1.0).log_prob(torch.tensor([1.0, 2.0])),
    )

    class OnlyForward(tfb.Bijector):
        def _forward(self, x):
            return x

    with pytest.raises(NotImplementedError, match="_forward_log_det_jacobian"):
        OnlyForward().forward_log_det_jacobian(torch.zeros(2))
    with pytest.raises(NotImplementedError, match="no analytic inverse"):
        OnlyForward().inverse(torch.zeros(2))


def test_scale_matvec_lu_docstring_example():
    def trainable_lu_factorization(event_size, seed=0):
        torch.manual_seed(seed)
        random_orthonormal = torch.linalg.qr(torch.rand(event_size, event_size))[0]
        lower_upper, permutation = tf_linalg_lu(random_orthonormal)
        return torch.nn.Parameter(lower_upper), permutation, random_orthonormal

    channels = 3
    lower_upper, permutation, w = trainable_lu_factorization(channels)
    conv1x1 = tfb.ScaleMatvecLU(lower_upper, permutation, validate_args=True)
    x = torch.rand(2, 28, 28, channels)
    fwd = conv1x1.forward(x)
    torch.testing.assert_close(conv1x1.inverse(fwd), x, atol=1e-5, rtol=0)  # ==> x
    torch.testing.assert_close(fwd, x @ w.T, atol=1e-5, rtol=0)  # the matrix factorized


def test_transformed_distribution_takes_the_bijectors_batch_shape():
    td = tfd.TransformedDistribution(tfd.Normal(0.0, 1.0), tfb.Shift([-1.0, 0.0, 1.0]))
    assert td.batch_shape == (3,) and td.event_shape == ()
    x = td.sample(5)
    assert x.shape == (5, 3)
    torch.testing.assert_close(
        td.log_prob(torch.zeros(3)), tfd.Normal([1.0, 0.0, -1.0], 1.0).log_prob(torch.zeros(3))
    )
    assert td.sample_and_log_prob(4)[1].shape == (4, 3)
    # On vectors the same shift is one bijector: no batch.
    vec = tfd.TransformedDistribution(
        tfd.MultivariateNormalDiag(loc=[0.0] * 3), tfb.Shift([1.0, 2, 3])
    )
    assert vec.batch_shape == () and vec.event_shape == (3,)
    assert tfb.Scale([[1.0], [2.0]]).experimental_batch_shape(x_event_ndims=1) == (2,)
