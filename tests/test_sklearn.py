"""gdsl.sklearn.Estimator (issue 23, item 1): scikit-learn's own estimator checks, Pipeline and
GridSearchCV, and that transform / score_samples / sample are the model's quantities.

The estimator checks run on the shipped RBM with `binarize` (every check feeds data outside
[0, 1], which a binary model refuses unless told how to binarize) and on the Gaussian RBM
(real visibles take any data). Models are loaded in float32, the estimator's default, with
tiny hidden layers.
"""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import check_estimator

from gdsl.driver import load_module
from gdsl.sklearn import Estimator, _fit_sizes


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.data / 16.0, d.target


@pytest.mark.parametrize("estimator", [
    Estimator("rbm", sizes={"nh": 3}, epochs=1, binarize=0.5, random_state=0),
    Estimator("grbm", sizes={"nh": 3}, epochs=1, random_state=0),
], ids=["rbm, binarize", "grbm"])
def test_passes_scikit_learns_estimator_checks(estimator):
    check_estimator(estimator)


def test_a_binary_model_refuses_values_outside_its_range_unless_told_to_binarize():
    X = np.array([[0.0, 0.5, 1.0], [1.0, 1.5, 0.0]])
    with pytest.raises(ValueError, match=r"columns of v \(binary\) must lie in \[0, 1\].*MinMaxScaler"):
        Estimator("rbm", sizes={"nh": 2}, epochs=1).fit(X)
    grey = np.array([[0.0, 0.5, 1.0], [1.0, 0.25, 0.0]])
    est = Estimator("rbm", sizes={"nh": 2}, epochs=1, random_state=0).fit(grey)  # grey levels: means
    assert est.model_.shape("v") == (3,) and est.transform(grey).shape == (2, 2)
    with pytest.raises(ValueError, match="score_method='pseudo'"):
        est.score_samples(grey)  # no likelihood for grey levels under binary units
    assert est.set_params(score_method="pseudo").fit(grey).score_samples(grey).shape == (2,)


def test_sizes_are_read_from_the_columns():
    conv = load_module("conv_rbm").Model  # v[2 np + f - 1, ...]: 12 x 12 with f = 9 is np = 2
    assert _fit_sizes(conv, {}, 144) == {"np": 2}
    assert _fit_sizes(conv, {"np": 3}, 144) == {"np": 3, "f": 7}
    rbm = load_module("rbm").Model
    assert _fit_sizes(rbm, {"nh": 5}, 10) == {"nh": 5, "nv": 10}
    with pytest.raises(ValueError, match="no size or constant 'nj'|no size or constant nj"):
        _fit_sizes(rbm, {"nj": 5}, 10)
    with pytest.raises(ValueError, match="X has 10 columns but rbm with sizes"):
        Estimator("rbm", sizes={"nv": 8, "nh": 2}).fit(np.zeros((3, 10)))


def test_transform_is_the_exact_posterior_mean_and_scores_are_the_models(digits):
    X = (digits[0][:200, :16] > 0.5).astype(float)
    est = Estimator("rbm", sizes={"nh": 4}, epochs=3, lr=0.05, random_state=1).fit(X)
    p = {k: np.asarray(v, np.float64) for k, v in est.model_.params.items()}
    want = 1.0 / (1.0 + np.exp(-(X @ p["W"] + p["c"])))
    np.testing.assert_allclose(est.transform(X), want, rtol=1e-5, atol=1e-6)
    assert est.score_method_ == "exact"  # 2^4 hidden states
    np.testing.assert_allclose(est.score_samples(X), est.model_.log_prob({"v": X}), rtol=1e-6)
    assert est.score(X) == pytest.approx(np.mean(est.score_samples(X)))
    drawn = est.sample(7)
    assert drawn.shape == (7, 16) and set(np.unique(drawn)) <= {0.0, 1.0}
    wide = (digits[0][:5] > 0.5).astype(float)  # log Z: 2^64 v or 2^24 h states to enumerate
    assert Estimator("rbm", sizes={"nh": 24}, epochs=1).fit(wide).score_method_ == "ais"


def test_several_visible_groups_are_columns_side_by_side(digits):
    X, y = digits
    Xb = (X[:150, :6] > 0.5).astype(float)
    Y = np.eye(3)[y[:150] % 3]
    est = Estimator("softmax_rbm", sizes={"nh": 4, "k": 3}, epochs=2, random_state=0).fit(np.hstack([Xb, Y]))
    assert est.model_.shape("v") == (6,) and est.model_.shape("y") == (3,)
    assert est.transform(np.hstack([Xb, Y])).shape == (150, 4)
    assert est.get_feature_names_out().tolist() == [f"estimator{i}" for i in range(4)]


def test_pipeline_and_grid_search_over_sizes(digits):
    X, y = digits
    pipe = Pipeline([("rbm", Estimator("rbm", epochs=10, lr=0.1, batch_size=10, random_state=0)),
                     ("logistic", LogisticRegression(C=100, max_iter=1000))])
    search = GridSearchCV(pipe, {"rbm__sizes": [{"nh": 8}, {"nh": 64}]}, cv=2).fit(X[:600], y[:600])
    assert search.best_params_["rbm__sizes"] == {"nh": 64}  # more features separate the digits better
    # scikit-learn's BernoulliRBM with the same settings scores 0.8175 on these 400 test digits
    assert search.score(X[600:1000], y[600:1000]) > 0.75
    twin = clone(search.best_estimator_)
    assert twin.get_params()["rbm__sizes"] == {"nh": 64} and not hasattr(twin.named_steps["rbm"], "model_")
    # an int random_state makes fit reproducible
    a = Estimator("rbm", sizes={"nh": 4}, epochs=2, random_state=3).fit(X[:100]).transform(X[:5])
    b = Estimator("rbm", sizes={"nh": 4}, epochs=2, random_state=3).fit(X[:100]).transform(X[:5])
    np.testing.assert_array_equal(a, b)


def test_grid_search_on_binarised_digits(digits):
    """The issue's check as written: binarised digits (binarize=0.5) through Pipeline + GridSearchCV."""
    X, y = digits
    pipe = Pipeline([("rbm", Estimator("rbm", sizes={"nh": 64}, epochs=10, batch_size=10, binarize=0.5,
                                       random_state=0)),
                     ("logistic", LogisticRegression(C=100, max_iter=1000))])
    search = GridSearchCV(pipe, {"rbm__lr": [0.02, 0.1]}, cv=2).fit(X[:600], y[:600])
    assert search.best_params_ == {"rbm__lr": 0.1}  # 10 epochs at 0.02 leave the features undertrained
    assert search.score(X[600:1000], y[600:1000]) > 0.75  # measured 0.845
