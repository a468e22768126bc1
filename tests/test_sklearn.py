"""pvae.sklearn: scikit-learn's own estimator checks, pipelines, grid search, pickling, scores."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import pvae
from pvae.sklearn import VAEOutlierDetector, VAETransformer, expected_failed_checks

TINY = dict(epochs=2, hidden_dims=(8,), num_samples=10, random_state=0)


@parametrize_with_checks([VAETransformer(**TINY), VAEOutlierDetector(**TINY)],
                         expected_failed_checks=expected_failed_checks)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def table():
    """200 rows of 6 correlated features (a 2-D latent table), on a non-unit scale."""
    rng = np.random.RandomState(0)
    z = rng.randn(200, 2)
    return 5.0 + 3.0 * (z @ rng.randn(2, 6) + 0.1 * rng.randn(200, 6))


@pytest.fixture(scope="module")
def fitted(table):
    return VAETransformer(z_dim=2, epochs=40, batch_size=32, lr=1e-2, hidden_dims=(16,),
                          random_state=0).fit(StandardScaler().fit_transform(table))


@pytest.mark.parametrize("scaler", [StandardScaler, MinMaxScaler])
def test_pipeline_after_a_scaler_equals_the_steps_by_hand(table, scaler):
    pipe = make_pipeline(scaler(), VAETransformer(z_dim=3, epochs=3, hidden_dims=(8,),
                                                  random_state=1))
    z = pipe.fit_transform(table)
    assert z.shape == (200, 3) and z.dtype == np.float64
    by_hand = VAETransformer(z_dim=3, epochs=3, hidden_dims=(8,), random_state=1)
    scaled = scaler().fit_transform(table)
    np.testing.assert_array_equal(z, by_hand.fit(scaled).transform(scaled))
    assert pipe.score(table) == pytest.approx(by_hand.score(scaled))
    assert list(pipe.get_feature_names_out()) == ["vaetransformer0", "vaetransformer1",
                                                  "vaetransformer2"]


def test_grid_search_over_z_dim_uses_score(table):
    x = StandardScaler().fit_transform(table)
    base = VAETransformer(epochs=3, hidden_dims=(8,), num_samples=10, random_state=0)
    cv = KFold(2, shuffle=True, random_state=0)
    search = GridSearchCV(base, {"z_dim": [1, 3]}, cv=cv).fit(x)
    means = search.cv_results_["mean_test_score"]
    assert np.isfinite(means).all()
    assert search.best_params_["z_dim"] == [1, 3][int(np.argmax(means))]
    assert search.best_estimator_.transform(x).shape[1] == search.best_params_["z_dim"]
    train, test = next(cv.split(x))  # the search's first split, scored by hand
    one = clone(base).set_params(z_dim=3).fit(x[train])
    assert search.cv_results_["split0_test_score"][1] == pytest.approx(one.score(x[test]))


def test_clone_gives_an_unfitted_copy_with_the_same_parameters(fitted):
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params()
    assert not hasattr(copy, "model_")
    with pytest.raises(NotFittedError):
        copy.transform(np.zeros((1, 6)))


def test_pickle_round_trip_gives_identical_outputs(fitted, table):
    x = StandardScaler().fit_transform(table)
    back = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(back.transform(x), fitted.transform(x))
    np.testing.assert_array_equal(back.score_samples(x), fitted.score_samples(x))
    z = x[:, :2]
    np.testing.assert_array_equal(back.inverse_transform(z), fitted.inverse_transform(z))


def test_get_feature_names_out(fitted):
    assert list(fitted.get_feature_names_out()) == ["vaetransformer0", "vaetransformer1"]


def test_scores_are_the_elbo_and_log_likelihood_of_pvae(fitted, table):
    """With many draws the mean score matches pvae.evaluate's estimates (independent
    draws there); with the same draws log p(x) >= ELBO row by row (Jensen)."""
    x = StandardScaler().fit_transform(table)[:100]
    ours = clone(fitted).set_params(num_samples=2000)
    ours.model_ = fitted.model_
    ours.n_features_in_ = fitted.n_features_in_
    elbo = ours.score_samples(x)
    ll = ours.set_params(score_method="log_likelihood").score_samples(x)
    assert (ll >= elbo - 1e-9).all() and (ll > elbo).any()
    ref = pvae.evaluate.elbo(fitted.model_, x.astype(np.float32), num_samples=2000).numpy()
    assert abs(elbo.mean() - ref.mean()) < 0.05
    ref_ll = pvae.evaluate.log_likelihood(fitted.model_, x.astype(np.float32),
                                          num_samples=2000).numpy()
    assert abs(ll.mean() - ref_ll.mean()) < 0.05


def test_inverse_transform_and_sample(fitted, table):
    x = StandardScaler().fit_transform(table)
    recon = fitted.inverse_transform(fitted.transform(x))
    assert recon.shape == x.shape
    assert np.mean((recon - x) ** 2) < 0.1  # of unit variance: the 2-D structure is learned
    draws = fitted.sample(5, random_state=3)
    assert draws.shape == (5, 6)
    np.testing.assert_array_equal(draws, fitted.sample(5, random_state=3))
    with pytest.raises(ValueError, match="z_dim=2"):
        fitted.inverse_transform(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="n_samples"):
        fitted.sample(0)


def test_training_leaves_global_random_states_alone(table):
    """With an int random_state (None draws from numpy's global stream, as in scikit-learn)."""
    np.random.seed(5), random.seed(5), torch.manual_seed(5)
    expected = (np.random.rand(), random.random(), torch.rand(1).item())
    np.random.seed(5), random.seed(5), torch.manual_seed(5)
    VAETransformer(epochs=1, hidden_dims=(8,), random_state=0).fit(table).sample(2, random_state=1)
    assert (np.random.rand(), random.random(), torch.rand(1).item()) == expected


def test_outlier_detector_flags_the_contamination_and_finds_far_rows(table):
    x = StandardScaler().fit(table)
    inliers = x.transform(table)
    det = VAEOutlierDetector(z_dim=2, contamination=0.05, epochs=40, batch_size=32, lr=1e-2,
                             hidden_dims=(16,), random_state=0).fit(inliers)
    assert (det.predict(inliers) == -1).sum() == 10  # 5% of 200 training rows
    rng = np.random.RandomState(1)
    far = rng.randn(20, 6) * 3.0  # off the 2-D latent plane of the table
    scores = det.score_samples(np.vstack([inliers[:100], far]))
    assert roc_auc_score(np.r_[np.zeros(100), np.ones(20)], -scores) > 0.95
    assert (det.predict(far) == -1).mean() > 0.9
    np.testing.assert_allclose(det.decision_function(far), det.score_samples(far) - det.offset_)


@pytest.mark.parametrize("params, match", [
    (dict(contamination=0.7), "contamination must be a number in \\(0, 0.5\\]"),
    (dict(contamination="auto"), "contamination"),
    (dict(score_method="iwae"), "score_method must be one of elbo, log_likelihood"),
    (dict(num_samples=0), "num_samples must be a positive int"),
    (dict(z_dim=0), "z_dim"),
    (dict(likelihood="gamma"), "unknown likelihood 'gamma'"),
])
def test_bad_parameters_are_refused_at_fit(params, match, table):
    with pytest.raises(ValueError, match=match):
        VAEOutlierDetector(**{**TINY, **params}).fit(table)


def test_bad_data_errors_read_like_sklearn_and_pvae(fitted, table):
    bad = table.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        VAETransformer(**TINY).fit(bad)
    with pytest.raises(ValueError, match="X has 5 features, but VAETransformer is expecting 6"):
        fitted.transform(table[:, :5])
    with pytest.raises(ValueError, match="likelihood 'bernoulli'"):  # pvae's support check
        VAETransformer(**{**TINY, "likelihood": "bernoulli"}).fit(table)


def test_digits_in_a_pipeline_with_bernoulli_likelihood(binary_digits):
    x = binary_digits.train.x.numpy()[:300]
    est = VAETransformer(z_dim=4, likelihood="bernoulli", epochs=2, hidden_dims=(32,),
                         random_state=0).fit(x)
    assert est.transform(x).shape == (300, 4)
    assert est.score(x) < 0  # log-probabilities of binary images


def test_scores_in_chunks_equal_scores_at_once(fitted, table, monkeypatch):
    """Equal to float64 rounding (the last bit may differ with the number of rows)."""
    x = StandardScaler().fit_transform(table)
    whole = fitted.score_samples(x)
    monkeypatch.setattr("pvae.sklearn.CHUNK_ELEMENTS", 7 * fitted.num_samples * 6)  # 7 rows
    np.testing.assert_allclose(fitted.score_samples(x), whole, rtol=1e-13, atol=0)
