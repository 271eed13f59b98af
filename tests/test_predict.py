"""Predictors: every family fits and ranks, the ensemble gives an uncertainty, bad input is a clear error."""

import numpy as np
import pytest

from sliver.predict import FAMILIES, Predictor, choose_family, cross_validate, kendall_tau, mape, spearman
from sliver.predict.features import features_from_vectors
from sliver.space import Dimension, SearchSpace


def data(n=120, seed=0):
    space = SearchSpace([Dimension("op", (0, 1, 2, 3), 6)])
    rng = np.random.default_rng(seed)
    configs = space.sample(rng, n)
    X = space.features(configs)
    w = rng.normal(size=X.shape[1])
    y = X @ w + 0.3 * (X[:, 3] * X[:, 7]) + 0.05 * rng.normal(size=n)
    return space, configs, X, y


@pytest.mark.parametrize("kind", list(FAMILIES) + ["ensemble", "auto"])
def test_each_kind_ranks_held_out_points(kind):
    _, _, X, y = data(160)
    model = Predictor(kind, seed=0).fit(X[:120], y[:120])
    mean, std = model.predict_dist(X[120:])
    assert mean.shape == std.shape == (40,)
    assert kendall_tau(mean, y[120:]) > 0.6
    if kind == "ensemble" or (model.chosen or kind).startswith("gp"):  # member spread; a Gaussian process's own posterior
        assert (std > 0).all()
    else:
        assert (std == 0).all()


def test_gp_fits_an_additive_metric_exactly_from_few_points():
    """A sum of per-option costs (latency on many devices) is recovered almost exactly by the additive GP."""
    space = SearchSpace([Dimension("edge", (0, 1, 2, 3), 10)])
    rng = np.random.default_rng(7)
    configs = space.sample(rng, 400)
    X = space.features(configs)
    cost = rng.uniform(0.1, 1.0, X.shape[1])
    lat = 1.0 + X @ cost
    rel = {kind: np.abs(Predictor(kind, seed=0).fit(X[:60], lat[:60]).predict(X[60:]) / lat[60:] - 1)
           for kind in ("gp", "gp_additive")}
    assert np.median(rel["gp_additive"]) < 1e-5 and rel["gp_additive"].max() < 1e-4
    assert np.median(rel["gp"]) > 1e-4  # the Matern kernel alone only approximates the sum


def test_rank_targets_resist_a_heavy_tail():
    _, _, X, y = data(200, seed=1)
    y = np.where(np.arange(200) % 10 == 0, 100.0, y)  # a few broken networks far away
    good = np.arange(150, 200)[y[150:] < 50]
    raw = Predictor("ridge", target="raw").fit(X[:150], y[:150]).predict(X[good])
    rank = Predictor("ridge", target="rank").fit(X[:150], y[:150]).predict(X[good])
    assert kendall_tau(rank, y[good]) > kendall_tau(raw, y[good])


def test_wrong_feature_length_is_a_clear_error():
    _, _, X, y = data()
    model = Predictor("ridge").fit(X, y)
    with pytest.raises(ValueError, match="expected 24 columns"):
        model.predict(X[:, :5])


@pytest.mark.parametrize("bad", ["forest", "xgboost"])
def test_unknown_kind_names_the_choices(bad):
    with pytest.raises(ValueError, match="ridge"):
        Predictor(bad)


def test_unfitted_and_nan_targets():
    _, _, X, y = data()
    with pytest.raises(RuntimeError, match="not fitted"):
        Predictor("ridge").predict(X)
    y = y.copy()
    y[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        Predictor("ridge").fit(X, y)


def test_metrics_and_cross_validation():
    t = np.arange(10.0)
    assert kendall_tau(t, t) == pytest.approx(1.0)
    assert spearman(t, -t) == pytest.approx(-1.0)
    assert mape(t + 1 + 0.1 * (t + 1), t + 1) == pytest.approx(10.0)
    _, _, X, y = data()
    cv = cross_validate("ridge", X, y, folds=3)
    assert cv["kendall_tau"] > 0.6 and cv["n"] == len(y)
    assert choose_family(X, y, ["ridge", "svr"], folds=3) in ("ridge", "svr")


def test_vector_features_match_space_features():
    space, configs, X, _ = data(30)
    V = np.stack([space.encode(c) for c in configs])
    assert np.array_equal(features_from_vectors(space, V), X)


def test_noise_covers_held_out_error():
    """With noise=True the spread includes the cross-validated residual, so it covers real held-out errors."""
    _, _, X, y = data(200, seed=2)
    y = y + 0.5 * np.random.default_rng(2).normal(size=len(y))  # noise no member can explain
    plain = Predictor("ridge").fit(X[:150], y[:150])
    noisy = Predictor("ridge", noise=True).fit(X[:150], y[:150])
    mean, sd = noisy.predict_dist(X[150:])
    assert (plain.predict_dist(X[150:])[1] == 0).all() and (sd > 0).all()
    z = np.abs(y[150:] - mean) / sd
    assert 0.5 < np.median(z) < 1.0  # about 0.67 for a calibrated Gaussian


def test_rank_samples_stay_within_the_plausible_range():
    """Draws of a rank-target model keep the skew of the data: no draw far beyond the best measured value."""
    _, _, X, y = data(200, seed=3)
    y = np.where(np.arange(200) % 10 == 0, 100.0, y)  # a heavy tail of broken networks
    model = Predictor("ridge", target="rank", noise=True).fit(X[:150], y[:150])
    eps = np.random.default_rng(0).standard_normal(64)
    draws = model.sample(X[150:], eps)
    assert draws.shape == (64, 50)
    good = y[:150][y[:150] < 50]
    assert draws.min() > good.min() - (good.max() - good.min())
    assert np.allclose(model.sample(X[150:], np.zeros(1))[0], model.predict(X[150:]))


def test_log_targets_fit_relative_noise_and_stay_positive():
    """Latency-like data: multiplicative noise; the log target ranks as well and never predicts a negative time."""
    _, _, X, y = data(200, seed=4)
    rng = np.random.default_rng(4)
    lat = np.exp(0.8 * (y - y.mean()) / y.std()) * np.exp(0.05 * rng.normal(size=200))
    model = Predictor("gp", target="log").fit(X[:150], lat[:150])
    mean, sd = model.predict_dist(X[150:])
    assert (mean > 0).all() and (sd > 0).all()
    assert kendall_tau(mean, lat[150:]) > 0.6
    draws = model.sample(X[150:], np.random.default_rng(0).standard_normal(16))
    assert (draws > 0).all()
    with pytest.raises(ValueError, match="target 'log' needs positive values"):
        Predictor("ridge", target="log").fit(X[:150], y[:150] - y.max())


def test_predict_with_draws_is_predict_dist_and_sample_in_one_pass():
    _, _, X, y = data(160, seed=5)
    model = Predictor("ridge", target="rank", noise=True).fit(X[:120], y[:120])
    eps = np.random.default_rng(1).standard_normal(8)
    mean, sd, draws = model.predict_with_draws(X[120:], eps)
    m2, s2 = model.predict_dist(X[120:])
    assert np.allclose(mean, m2) and np.allclose(sd, s2) and np.allclose(draws, model.sample(X[120:], eps))


def test_max_fit_bounds_the_gp_hyper_parameter_fit_and_keeps_every_point():
    """Beyond max_fit points the GP's kernel is tuned on a subset, then conditioned on all of them."""
    _, _, X, y = data(400, seed=6)
    full = Predictor("gp", seed=0).fit(X[:300], y[:300])
    bounded = Predictor("gp", seed=0, max_fit=60).fit(X[:300], y[:300])
    gp = bounded._models[0]
    assert gp.optimizer is None and len(gp.X_train_) == 300  # every point conditions the posterior
    assert kendall_tau(bounded.predict(X[300:]), y[300:]) > kendall_tau(full.predict(X[300:]), y[300:]) - 0.05
    assert np.allclose(Predictor("gp", seed=0, max_fit=300).fit(X[:300], y[:300]).predict(X[300:]), full.predict(X[300:]))
    kept = Predictor("gp", seed=0, kernel=full.fitted_kernel).fit(X[:310], y[:310])  # a few more points, no search
    assert kept._models[0].kernel_ == full.fitted_kernel and len(kept._models[0].X_train_) == 310


def test_predict_is_the_mean_of_predict_dist():
    _, _, X, y = data(160, seed=8)
    for kind, target in (("gp", "rank"), ("ensemble", "raw"), ("gp_additive", "log")):
        yy = np.exp(y / y.std()) if target == "log" else y
        model = Predictor(kind, seed=0, target=target).fit(X[:120], yy[:120])
        assert np.allclose(model.predict(X[120:]), model.predict_dist(X[120:])[0])
