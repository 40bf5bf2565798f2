"""The scikit-learn estimator: its protocol checks, model selection, and real density quality."""

import numpy as np
import pytest
from sklearn.datasets import make_moons
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import estimator_checks_generator

from nfkit.sklearn import FlowDensityEstimator

FAST = dict(layers=1, hidden=(8,), epochs=2, batch_size=64, random_state=0)


# Every check scikit-learn runs on an estimator, except the array-API one: it tests inputs from
# other array libraries (CuPy, array-api-strict), which a torch-based estimator does not accept,
# and scikit-learn itself skips it unless SCIPY_ARRAY_API is set.
CHECKS = [
    (estimator, check)
    for estimator, check in estimator_checks_generator(FlowDensityEstimator(**FAST), mark=None)
    if "array_api" not in getattr(check, "func", check).__name__
]


@pytest.mark.parametrize(
    ("estimator", "check"), CHECKS, ids=[getattr(c, "func", c).__name__ for _, c in CHECKS]
)
def test_scikit_learn_checks(estimator, check):
    check(estimator)


def test_learns_moons_better_than_a_gaussian():
    x = make_moons(2000, noise=0.05, random_state=0)[0]
    x_test = make_moons(2000, noise=0.05, random_state=1)[0]
    # From a standard normal base: the default base, the mixture by BIC, already scores about
    # -0.42 here before any training (tests/test_tabular.py covers it), so it would hide whether
    # the flow learns.
    est = FlowDensityEstimator(
        layers=3, hidden=(64, 64), epochs=12, batch_size=64, lr=3e-3, random_state=0,
        start_components=0,
    )  # fmt: skip
    est.fit(x)
    mean, std = x.mean(0), x.std(0)
    gauss = -0.5 * (((x_test - mean) / std) ** 2).sum(1) - np.log(std).sum() - np.log(2 * np.pi)
    assert gauss.mean() < -1.6
    assert est.score(x_test) > -0.8
    samples = est.sample(500, random_state=0)
    np.testing.assert_array_equal(samples, est.sample(500, random_state=0))
    assert samples.shape == (500, 2)


def test_grid_search_and_pipeline():
    x = make_moons(600, noise=0.1, random_state=0)[0]
    grid = GridSearchCV(FlowDensityEstimator(**FAST), {"hidden": [(4,), (16,)]}, cv=2)
    grid.fit(x)
    assert grid.best_params_["hidden"] in [(4,), (16,)]
    pipe = make_pipeline(FunctionTransformer(lambda a: a * 2.0), FlowDensityEstimator(**FAST))
    pipe.fit(x)
    assert pipe.score_samples(x[:5]).shape == (5,)


def test_bad_flow_name():
    with pytest.raises(ValueError, match="flow must be one of"):
        FlowDensityEstimator(flow="glowworm").fit(np.random.rand(10, 2))


def test_continuous_flow_estimator_trains_by_flow_matching():
    x = make_moons(2000, noise=0.05, random_state=0)[0]
    est = FlowDensityEstimator("cnf", hidden=(64, 64), epochs=100, lr=1e-2, random_state=0)
    est.fit(x)
    assert "val_loss" in est.history_.history and len(est.history_.history["loss"]) == 100
    # The best single Gaussian scores -2.00 nats per point on these moons.
    assert est.score(make_moons(1000, noise=0.05, random_state=1)[0]) > -1.5
    assert est.sample(7, random_state=0).shape == (7, 2)


def test_conditional_estimator_learns_x_given_y():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=600).astype(float)
    x = np.stack([y, -y], 1) * 2.0 + 0.3 * rng.normal(size=(600, 2))
    est = FlowDensityEstimator(layers=2, hidden=(32,), epochs=80, batch_size=64, random_state=0,
                               conditional=True).fit(x[:500], y[:500])  # fmt: skip
    # Given the right label a row is far likelier than given another one (the means are 2.8
    # apart against a spread of 0.3); the best possible mean is log N(0, 0.3^2 I) = -0.43.
    right, wrong = est.score(x[500:], y[500:]), est.score(x[500:], (y[500:] + 1) % 3)
    assert right > -1.2 and right > wrong + 5.0
    draws = est.sample(200, random_state=0, y=[2.0])
    np.testing.assert_allclose(draws.mean(0), [4.0, -4.0], atol=0.3)
    assert est.sample(5, y=[[0.0], [1.0]]).shape == (5, 2, 2)
    with pytest.raises(ValueError, match="conditional=True\\): pass y"):
        est.score_samples(x[:3])
    with pytest.raises(ValueError, match="y has 2 rows for 3 rows of X"):
        est.score_samples(x[:3], y[:2])
