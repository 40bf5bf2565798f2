"""Evaluation in chunks (issue 18): without gradients, log_prob and sample run on blocks of
rows and give the numbers of one whole-batch call; models whose rows share their batch are
not chunked."""

import pytest
import torch

import nfkit
import nfkit.bijectors as nfb
import nfkit.distributions as nfd
from nfkit.distributions import base


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(base, "CHUNK_ROWS", 7)


def _whole(fn):
    """``fn()`` with chunking off."""
    saved, base.CHUNK_ROWS = base.CHUNK_ROWS, None
    try:
        return fn()
    finally:
        base.CHUNK_ROWS = saved


@pytest.mark.parametrize("name", ["maf", "nsf", "realnvp"])
def test_chunked_log_prob_and_sample_equal_one_call(small_chunks, name):
    torch.manual_seed(0)
    flow = getattr(nfkit.flows, name)(3, layers=2, hidden=[8]).eval()
    x = torch.randn(50, 3)
    calls = []
    original = flow.bijector.inverse_and_log_det

    def counted(value, **kw):
        calls.append(value.shape[0])
        return original(value, **kw)

    flow.bijector.inverse_and_log_det = counted
    with torch.no_grad():
        chunked = flow.log_prob(x)
    assert calls == [7] * 7 + [1]  # it did run in chunks
    whole = _whole(lambda: flow.log_prob(x.numpy()))
    # the same numbers up to float rounding (the products' blocking differs with the rows)
    torch.testing.assert_close(chunked, torch.as_tensor(whole), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(flow.sample(30, seed=1), _whole(lambda: flow.sample(30, seed=1)))


def test_gradients_batch_statistics_and_batched_contexts_are_not_chunked(small_chunks):
    x = torch.randn(20, 2) * 3.0 + 1.0
    norm = nfd.TransformedDistribution(nfd.MultivariateNormalDiag([0.0, 0.0]), nfb.BatchNorm(2))
    with torch.no_grad():  # training mode: the batch's own statistics, over all 20 rows
        torch.testing.assert_close(norm.log_prob(x), _whole(lambda: norm.log_prob(x)))
    flow = nfkit.flows.maf(2, layers=1, hidden=[4])
    lp = flow.log_prob(x)
    assert lp.grad_fn is not None and lp.shape == (20,)
    cond = nfkit.flows.maf(2, layers=1, hidden=[4], context=1).eval()
    with torch.no_grad():
        given = torch.randn(20, 1)
        torch.testing.assert_close(
            cond.log_prob(x, context=given), _whole(lambda: cond.log_prob(x, context=given))
        )
