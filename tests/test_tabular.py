"""Defaults for small tables (issue 17): the flow starts at the Gaussian mixture that fits the
data, keeps it when training does not beat it, dequantizes few-valued columns; the estimator
and the command share these defaults."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_iris
from sklearn.mixture import GaussianMixture

import nfkit
from nfkit.sklearn import FlowDensityEstimator
from nfkit.train.tabular import FlowStart, dequantize, few_valued_columns, table_sizes


def _two_clusters(n=300, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(-2, 0.5, (n // 2, 2)), rng.normal(2, 0.5, (n // 2, 2))])


def test_the_flow_starts_exactly_at_the_mixture_chosen_by_bic():
    rows = _two_clusters()
    start = FlowStart(nfkit.flows.nsf(2, layers=2, hidden=[16]), rows)
    assert start.components == 2
    fits = [GaussianMixture(k, reg_covar=1e-3, random_state=0).fit(rows) for k in range(1, 11)]
    best = min(fits, key=lambda g: g.bic(rows))
    x = torch.as_tensor(rows[:50], dtype=torch.float32)
    with torch.no_grad():
        ours = start.model.log_prob(x).double().numpy()
    np.testing.assert_allclose(ours, best.score_samples(rows[:50]), rtol=1e-4, atol=1e-4)


def test_a_run_that_does_not_beat_its_start_keeps_it():
    rows = _two_clusters()
    # lr 1.0 wrecks every epoch: the start must come back, exactly.
    est = FlowDensityEstimator(layers=1, hidden=(8,), epochs=3, lr=1.0, random_state=0).fit(rows)
    assert est.start_.kept_start and est.start_.components == 2
    mean, std = rows.mean(0), rows.std(0)
    gmm = [GaussianMixture(k, reg_covar=1e-3, random_state=0) for k in (1, 2)]
    assert np.isfinite(est.score(rows))
    # The kept start scores (in data units) as a 2-component mixture fit, far above 1 Gaussian.
    one = gmm[0].fit((rows - mean) / std).score((rows - mean) / std) - np.log(std).sum()
    assert est.score(rows) > one + 0.5


def test_small_real_table_defaults_beat_a_gaussian_held_out():
    x = load_iris().data
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    train, test = x[order[:120]], x[order[120:]]
    mean, cov = train.mean(0), np.cov(train, rowvar=False)
    gauss = -0.5 * np.einsum("ni,ij,nj->n", test - mean, np.linalg.inv(cov), test - mean)
    gauss = (gauss - 0.5 * np.linalg.slogdet(2 * np.pi * cov)[1]).mean()
    est = FlowDensityEstimator(random_state=0).fit(train)
    assert est.sizes_ == table_sizes(120, 4) and est.sizes_.hidden == (64, 64)
    assert est.score(test) > gauss + 0.3  # iris is three clusters; one Gaussian is poor


def test_few_valued_columns_are_dequantized_over_their_gap():
    rng = np.random.default_rng(0)
    x = np.stack([rng.integers(0, 2, 400).astype(float), rng.normal(size=400)], 1)
    assert few_valued_columns(x) == {0: 1.0}
    spread = dequantize(x, {0: 1.0}, seed=0)
    assert np.all(np.abs(spread[:, 0] - x[:, 0]) <= 0.5) and len(np.unique(spread[:, 0])) == 400
    np.testing.assert_array_equal(spread[:, 1], x[:, 1])
    est = FlowDensityEstimator(layers=2, hidden=(16,), epochs=20, random_state=0).fit(x)
    assert est.dequantized_columns_ == [0]
    flag = est.sample(2000, random_state=0)[:, 0]
    near_a_value = np.minimum(np.abs(flag), np.abs(flag - 1)) < 0.05
    assert near_a_value.mean() < 0.4  # spread over the gaps, not two spikes


@pytest.mark.parametrize("rows", [-1, 1])
def test_table_sizes_refuse_tables_with_no_rows(rows):
    with pytest.raises(ValueError, match="need at least 2 rows"):
        table_sizes(rows, 3)


def test_default_scores_stay_finite_with_gaussian_tails_far_from_the_data():
    from sklearn.datasets import load_wine

    x = load_wine().data
    est = FlowDensityEstimator(epochs=5, random_state=0).fit(x)
    far = np.repeat(x[:1], 4, 0)
    far[:, 0] = [13.0, 1e3, 1e6, 1e30]  # alcohol: 11-15 in the data
    scores = est.score_samples(far)
    assert np.isfinite(scores).all() and np.all(np.diff(scores) < 0)
    ratio = (scores[2] - scores[0]) / (scores[1] - scores[0])
    assert 0.5e6 < ratio < 2e6  # quadratic in the distance: a Gaussian tail


def test_log_columns_model_positive_columns_in_data_units():
    rng = np.random.default_rng(0)
    x = np.exp(rng.normal(1.0, 1.5, size=(600, 2)))  # two independent lognormal columns
    train, test = x[:500], x[500:]
    est = FlowDensityEstimator(log_columns=[0, 1], epochs=5, random_state=0).fit(train)
    assert (est.sample(200, random_state=0) > 0).all()
    exact = -(1.0 + 0.5 * np.log(2 * np.pi * 1.5**2) + 0.5)  # lognormal log-likelihood per row
    assert abs(est.score(test) / 2 - exact) < 0.15
    plain = FlowDensityEstimator(start_components=1, epochs=5, random_state=0).fit(train)
    assert est.score(test) > plain.score(test) + 1.0  # a Gaussian start on raw scales is poor
    with pytest.raises(ValueError, match="column 1' has values <= 0"):
        FlowDensityEstimator(log_columns=[1]).fit(np.c_[train[:, 0], np.log(train[:, 1])])
