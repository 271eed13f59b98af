"""Few-shot latency transfer: fallback to the prior, fitting from k samples, clear errors, the CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau, spearmanr
from typer.testing import CliRunner

from sliver.cli import app
from sliver.errors import UserError
from sliver.predict.latency import LatencyPredictor
from sliver.predict.transfer import MIN_SAMPLES_FOR_FIT, DeviceTransfer, RuntimeTransfer, TransferLatencyModel, latency_columns, transfer
from sliver.space import DepthGate, Dimension, SearchSpace


def _table(n_arch: int = 300, n_dev: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sources and a new device that share two latent architecture factors (compute, memory)."""
    rng = np.random.default_rng(seed)
    arch = rng.uniform(0.5, 2.0, size=(n_arch, 2))
    dev = rng.uniform(0.2, 1.0, size=(2, n_dev + 1))
    lat = arch @ dev * np.exp(rng.normal(0, 0.01, size=(n_arch, n_dev + 1)))
    return lat[:, :n_dev], lat[:, n_dev]


def test_k0_falls_back_to_prior_and_says_so():
    source, _ = _table()
    model = DeviceTransfer(source).fit([], [])
    assert model.fallback
    assert "falling back to the prior" in model.describe()
    # the prior is the geometric mean of the source devices
    np.testing.assert_allclose(model.predict(), np.exp(np.log(source).mean(1)), rtol=1e-9)


def test_few_samples_shift_the_prior_to_their_level():
    source, target = _table()
    rows = np.arange(MIN_SAMPLES_FOR_FIT - 1)
    model = DeviceTransfer(source).fit(rows, target[rows])
    assert model.fallback and f"{len(rows)} samples" in model.describe()
    prior = np.exp(np.log(source).mean(1))
    ratio = model.predict() / prior
    np.testing.assert_allclose(ratio, ratio[0])  # same ranking as the prior, only rescaled
    assert np.isclose(np.log(ratio[0]), np.mean(np.log(target[rows] / prior[rows])))


def test_ten_samples_rank_the_new_device_better_than_the_prior():
    source, target = _table()
    rows = np.random.default_rng(1).choice(len(target), 10, replace=False)
    model = DeviceTransfer(source).fit(rows, target[rows])
    assert not model.fallback and "10 samples" in model.describe()
    rest = np.setdiff1d(np.arange(len(target)), rows)
    rho_fit = spearmanr(model.predict()[rest], target[rest])[0]
    rho_prior = spearmanr(np.log(source).mean(1)[rest], target[rest])[0]
    assert rho_fit > 0.95
    assert rho_fit > rho_prior
    mape = np.mean(np.abs(model.predict()[rest] / target[rest] - 1))
    assert mape < 0.1  # predictions are in ms, not just a ranking


def test_additive_view_helps_a_device_that_is_a_sum_of_option_costs():
    """Sources and the new device all price each layer's option; a network's latency is the sum.

    The new device's option costs mix two source devices' costs *linearly*, so in log space the
    source columns only approximate it; the features' additive refit of each column carries it.
    """
    rng = np.random.default_rng(3)
    n_arch, n_layers, n_opts, n_dev = 400, 8, 4, 6
    choice = rng.integers(0, n_opts, size=(n_arch, n_layers))
    onehot = np.zeros((n_arch, n_layers * n_opts))
    onehot[np.arange(n_arch)[:, None], np.arange(n_layers) * n_opts + choice] = 1.0
    costs = rng.gamma(2.0, 1.0, size=(n_layers * n_opts, n_dev))
    source = onehot @ costs * np.exp(rng.normal(0, 0.03, size=(n_arch, n_dev)))  # noisy source timings
    target = onehot @ (0.7 * costs[:, 0] + 0.3 * costs[:, 1])
    rows = rng.choice(n_arch, 10, replace=False)
    rest = np.setdiff1d(np.arange(n_arch), rows)
    plain = DeviceTransfer(source, devices=[f"d{j}" for j in range(n_dev)]).fit(rows, target[rows])
    additive = DeviceTransfer(source, features=onehot).fit(rows, target[rows])
    assert "additive views" in additive.describe() and "nearest sources d" in plain.describe()
    rho_plain = spearmanr(plain.predict()[rest], target[rest])[0]
    rho_additive = spearmanr(additive.predict()[rest], target[rest])[0]
    assert rho_additive > 0.95 and rho_additive > rho_plain
    with pytest.raises(ValueError, match="features: expected one row per architecture"):
        DeviceTransfer(source, features=onehot[:10])


def test_a_measurement_spike_among_the_samples_is_down_weighted(monkeypatch):
    """One of ten timings 50% slow (a spike): it is flagged and the ranking stays as good as without it."""
    from sliver.predict import transfer as transfer_module

    source, target = _table()
    rows = np.random.default_rng(1).choice(len(target), 10, replace=False)
    rest = np.setdiff1d(np.arange(len(target)), rows)
    clean = DeviceTransfer(source).fit(rows, target[rows])
    assert "spike" not in clean.describe()  # no false alarm on clean samples
    spiked = target[rows].copy()
    spiked[0] *= 1.5
    robust = DeviceTransfer(source).fit(rows, spiked)
    assert "1 sample(s) down-weighted as measurement spikes" in robust.describe()
    monkeypatch.setattr(transfer_module, "SPIKE_T", np.inf)  # the same fit trusting every sample
    trusting = DeviceTransfer(source).fit(rows, spiked)
    rho = {name: spearmanr(m.predict()[rest], target[rest])[0] for name, m in
           (("clean", clean), ("robust", robust), ("trusting", trusting))}
    assert rho["robust"] > rho["clean"] - 0.002
    assert rho["robust"] > rho["trusting"] + 0.02


def test_bad_inputs_are_one_line_errors():
    source, target = _table()
    with pytest.raises(ValueError, match="source table"):
        DeviceTransfer(source[:, :0])
    model = DeviceTransfer(source)
    with pytest.raises(ValueError, match="3 architectures but 2 latencies"):
        model.fit([0, 1, 2], [1.0, 2.0])
    with pytest.raises(ValueError, match="out of range"):
        model.fit([0, 1, 10_000], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="positive"):
        model.fit([0, 1, 2], [1.0, -2.0, 3.0])
    with pytest.raises(ValueError, match="listed twice"):
        model.fit([0, 0, 2], [1.0, 2.0, 3.0])


def test_transfer_by_architecture_name_averages_repeats_and_rejects_unknown():
    source, target = _table(n_arch=50)
    names = [f"a{i}" for i in range(50)]
    frame = pd.DataFrame(source, index=names, columns=[f"lat_ms_d{j}" for j in range(source.shape[1])])
    samples = pd.Series([target[0], target[0] * 1.1, target[5], target[9], target[20]], index=["a0", "a0", "a5", "a9", "a20"])
    result = transfer(frame, samples)
    assert result.n_samples == 4 and not result.fallback
    assert list(result.latency_ms.index) == names
    with pytest.raises(ValueError, match="'zz' is not in the source table"):
        transfer(frame, pd.Series([1.0], index=["zz"]))


def test_transfer_latency_model_learns_from_what_the_search_measures():
    source, target = _table()
    given = {0: float(target[0]), 1: float(target[1])}  # measured by the user beforehand: too few to fit
    model = TransferLatencyModel(DeviceTransfer(source), row_of=lambda c: c["row"], samples=given)
    configs = [{"row": i} for i in range(len(target))]
    rest = np.arange(30, len(target))
    rho_before = spearmanr(np.asarray(model(configs))[rest], target[rest])[0]
    assert model.model.fallback and "falling back to the prior" in model.describe()

    # the search measured rows 1..29 (row 1 again, a little slower: averaged with the user's value)
    seen = [{"row": i} for i in range(1, 30)]
    lat = target[1:30].copy()
    lat[0] *= 1.1
    model.observe(seen, lat)
    assert not model.model.fallback and "from 30 samples" in model.describe()
    predicted = np.asarray(model(configs))
    assert spearmanr(predicted[rest], target[rest])[0] > max(0.95, rho_before)
    # the search passes all its measurements each round: observing them again changes nothing
    model.observe(seen, lat)
    np.testing.assert_allclose(model(configs), predicted)
    # averaging: the same fit as giving row 1 the mean of its two measurements directly
    direct = DeviceTransfer(source).fit(np.arange(30), np.r_[target[0], (target[1] + lat[0]) / 2, target[2:30]])
    np.testing.assert_allclose(model(configs), direct.predict())


def test_latency_columns_prefers_lat_ms_prefix():
    frame = pd.DataFrame({"arch": ["x"], "acc": [90.0], "lat_ms_a": [1.0], "lat_ms_b": [2.0]})
    assert latency_columns(frame) == ["lat_ms_a", "lat_ms_b"]
    assert latency_columns(frame.drop(columns=["lat_ms_a", "lat_ms_b"])) == ["acc"]
    with pytest.raises(ValueError, match="no column starts with 'gpu_'"):
        latency_columns(frame, "gpu_")


def test_cli_transfer_writes_predictions_and_warns_on_fallback(tmp_path):
    source, target = _table(n_arch=40)
    names = [f"a{i}" for i in range(40)]
    pd.DataFrame(source, columns=[f"lat_ms_d{j}" for j in range(source.shape[1])]).assign(arch=names).to_csv(tmp_path / "src.csv", index=False)
    pd.DataFrame({"arch": names[:12], "latency_ms": target[:12]}).to_csv(tmp_path / "new.csv", index=False)
    runner = CliRunner()
    out = tmp_path / "pred.csv"
    res = runner.invoke(app, ["latency", "transfer", "--source", str(tmp_path / "src.csv"), "--samples", str(tmp_path / "new.csv"), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "fitted the new device from 12 samples" in res.output
    pred = pd.read_csv(out)
    assert list(pred.columns) == ["arch", "latency_ms"] and len(pred) == 40

    pd.DataFrame({"arch": [], "latency_ms": []}).to_csv(tmp_path / "none.csv", index=False)
    res = runner.invoke(app, ["latency", "transfer", "--source", str(tmp_path / "src.csv"), "--samples", str(tmp_path / "none.csv")])
    assert res.exit_code == 0
    assert "falling back to the prior" in res.output

    res = runner.invoke(app, ["latency", "transfer", "--source", str(tmp_path / "src.csv"), "--samples", str(tmp_path / "new.csv"), "--latency-column", "ms"])
    assert res.exit_code == 2 and "no column 'ms'" in res.output


def _log_linear_table(seed: int, n_arch: int = 300, n_dev: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Devices whose log-latencies are linear in three architecture factors: the transfer model's own prior."""
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(n_arch, 3))
    loadings = rng.normal(size=(3, n_dev + 1)) * np.array([[1.0], [0.5], [0.3]])
    lat = 10 * np.exp(0.3 * factors @ loadings + rng.normal(0, 0.02, size=(n_arch, n_dev + 1)))
    return lat[:, :n_dev], lat[:, n_dev]


@pytest.mark.parametrize("seed", range(5))
def test_suggested_samples_predict_better_than_random_ones(seed):
    source, target = _log_linear_table(seed)
    model = DeviceTransfer(source)

    def error(rows):
        rest = np.setdiff1d(np.arange(len(target)), rows)
        return np.mean(np.abs(np.log(model.fit(rows, target[rows]).predict()[rest] / target[rest])))

    designed = error(model.suggest(6))
    random_draws = [error(np.random.default_rng(s).choice(len(target), 6, replace=False)) for s in range(20)]
    assert designed < np.median(random_draws)


def test_suggest_is_deterministic_and_respects_measured_and_candidates():
    source, _ = _table()
    model = DeviceTransfer(source)
    picks = model.suggest(8)
    np.testing.assert_array_equal(picks, model.suggest(8))
    assert len(set(picks.tolist())) == 8
    # the design spreads over fast and slow networks, not only one end
    level = np.log(source).mean(1)
    assert level[picks].min() < np.quantile(level, 0.25) and level[picks].max() > np.quantile(level, 0.75)
    # continuing from measured rows: they are not suggested again, and the first picks are the next ones
    more = model.suggest(4, measured=picks[:4])
    assert not set(more.tolist()) & set(picks[:4].tolist())
    np.testing.assert_array_equal(more, picks[4:])
    allowed = np.arange(0, 300, 3)
    assert set(model.suggest(5, candidates=allowed).tolist()) <= set(allowed.tolist())
    with pytest.raises(ValueError, match="k must be between 0 and the 2 candidate"):
        model.suggest(3, measured=[0], candidates=[0, 1, 2])
    with pytest.raises(ValueError, match="measured: row index out of range"):
        model.suggest(2, measured=[300])


def test_suggest_samples_by_name_and_cli_writes_a_sheet_to_fill_in(tmp_path):
    from sliver.predict.transfer import suggest_samples

    source, target = _table(n_arch=40)
    names = [f"a{i}" for i in range(40)]
    frame = pd.DataFrame(source, index=names)
    picks = suggest_samples(frame, 5, measured=["a0", "a1"])
    assert len(picks) == 5 and not {"a0", "a1"} & set(picks)
    with pytest.raises(ValueError, match="architecture 'zz' is not in the source table"):
        suggest_samples(frame, 3, measured=["zz"])

    pd.DataFrame(source, columns=[f"lat_ms_d{j}" for j in range(source.shape[1])]).assign(arch=names).to_csv(tmp_path / "src.csv", index=False)
    pd.DataFrame({"arch": ["a0", "a1"], "latency_ms": target[:2]}).to_csv(tmp_path / "done.csv", index=False)
    runner = CliRunner()
    sheet = tmp_path / "to_measure.csv"
    res = runner.invoke(app, ["latency", "suggest", "--source", str(tmp_path / "src.csv"), "-k", "5",
                              "--samples", str(tmp_path / "done.csv"), "-o", str(sheet)])
    assert res.exit_code == 0, res.output
    out = pd.read_csv(sheet)
    assert list(out.columns) == ["arch", "latency_ms"] and list(out["arch"]) == list(picks)
    assert out["latency_ms"].isna().all()
    res = runner.invoke(app, ["latency", "transfer", "--source", str(tmp_path / "src.csv"), "--samples", str(sheet)])
    assert res.exit_code == 2 and "samples: 5 architecture(s) have no latency" in res.output  # the sheet not filled in yet
    res = runner.invoke(app, ["latency", "suggest", "--source", str(tmp_path / "src.csv"), "-k", "50"])
    assert res.exit_code == 2 and "k must be between 0 and the 40" in res.output


def test_leave_one_out_error_tracks_the_error_on_unmeasured_architectures():
    source, target = _table()
    noisy = target * np.exp(np.random.default_rng(3).normal(0, 0.15, size=target.shape))
    rows = np.random.default_rng(1).choice(len(target), 15, replace=False)
    rest = np.setdiff1d(np.arange(len(target)), rows)
    model = DeviceTransfer(source)
    assert model.loo_error_pct is None
    errors = {}
    for name, device in (("clean", target), ("noisy", noisy)):
        model.fit(rows, device[rows])
        actual = np.mean(np.abs(model.predict()[rest] / device[rest] - 1)) * 100
        errors[name] = model.loo_error_pct
        assert 0.3 * actual < errors[name] < 3 * actual
        assert f"leave-one-out error on the samples {errors[name]:.1f} %" in model.describe()
    assert errors["noisy"] > 3 * errors["clean"]
    assert model.fit(rows[:2], target[rows[:2]]).loo_error_pct is None  # the prior has no samples to check


# ------------------------------------------------------------------ transfer to a new runtime, over a space
#: a MobileNet-like space: kernel and expand per block, blocks per stage, input resolution
RT_SPACE = SearchSpace([Dimension("ks", (3, 5, 7), 12), Dimension("e", (3, 4, 6), 12), Dimension("d", (2, 3, 4), 3),
                        Dimension("r", tuple(range(128, 225, 16)))], [DepthGate("d", (4, 4, 4), ("ks", "e"))])
RT_STAGE = (1.0, 0.75, 0.6)
RT_OPS = [(s, k, e) for s in range(3) for k in (3, 5, 7) for e in (3, 4, 6)]


def _runtimes(seed: int, n: int = 5) -> list[tuple[float, float, dict]]:
    """Runtimes as a CPU's runtimes differ: each prices every (stage, kernel, expand) block its own way, along
    three shared directions (depthwise vs pointwise efficiency, ...), with its own per-layer overhead and its
    own growth with resolution (caches); pointwise work is compute-bound, depthwise mostly memory-bound."""
    rng = np.random.default_rng(seed)
    base = np.array([RT_STAGE[s] * (0.25 * e + 0.3 * e * (1 + 0.15 * (k - 3))) for s, k, e in RT_OPS])
    factors = rng.normal(size=(3, len(RT_OPS)))
    return [(rng.uniform(0.02, 0.15), rng.uniform(1.6, 2.0),
             dict(zip(RT_OPS, base * np.exp(rng.normal(0, 0.15, 3) @ factors + rng.normal(0, 0.05, len(RT_OPS))))))
            for _ in range(n)]


def _blocks(config):
    for s, depth in enumerate(config["d"]):
        for b in range(depth):
            yield s, config["ks"][4 * s + b], config["e"][4 * s + b]


def _latency(config, runtime, rng=None) -> float:
    """ms on ``runtime``; with ``rng``, as measured (2 % timing noise)."""
    overhead, growth, cost = runtime
    t = 0.5 + sum(overhead + (config["r"] / 224) ** growth * cost[op] for op in _blocks(config))
    return t * (float(np.exp(rng.normal(0, 0.02))) if rng is not None else 1.0)


def _rt_features(configs):
    """One-hot genes plus MACs and params (which price depthwise kernels by k^2, unlike the runtimes)."""
    costs = [(sum((c["r"] / 224) ** 2 * RT_STAGE[s] * (0.25 * e + 0.01 * e * k * k) for s, k, e in _blocks(c)),
              sum((e + 0.02 * e * k * k) / RT_STAGE[s] for s, k, e in _blocks(c))) for c in configs]
    return np.c_[RT_SPACE.features(configs), costs]


def _runtime_problem(seed: int, n_source: int = 100, k: int = 8):
    rng = np.random.default_rng(seed)
    runtimes = _runtimes(seed)
    measured, held_out = RT_SPACE.sample(rng, n_source), RT_SPACE.sample(rng, 300)
    source = np.array([[_latency(c, r, rng) for r in runtimes[:4]] for c in measured])
    new = runtimes[4]
    samples = [(c, _latency(c, new, rng)) for c in measured[:k]]
    return measured, source, new, samples, held_out


@pytest.mark.parametrize("seed", range(3))
def test_runtime_transfer_ranks_unmeasured_networks_and_beats_the_k_samples_alone(seed):
    measured, source, new, samples, held_out = _runtime_problem(seed)
    model = RuntimeTransfer(RT_SPACE, measured, source, ["torch", "ort", "ov", "ort-t2"], features=_rt_features,
                            samples=samples, seed=seed)
    truth = [_latency(c, new) for c in held_out]
    tau = kendalltau(model(held_out), truth).statistic
    configs, y = [c for c, _ in samples], [v for _, v in samples]
    alone = max(kendalltau(LatencyPredictor(kind).fit(_rt_features(configs), y).predict(_rt_features(held_out)), truth).statistic
                for kind in ("ridge", "gp_additive"))
    assert tau >= 0.75, tau
    assert tau > alone + 0.2, (tau, alone)
    assert "transfer from torch, ort, ov, ort-t2 (100 networks measured there" in model.describe()
    assert "from 8 samples" in model.describe()
    mape = np.mean(np.abs(np.asarray(model(held_out)) / truth - 1))
    assert mape < 0.15  # milliseconds, not only a ranking


def test_runtime_transfer_learns_from_the_search_and_suggests_unmeasured_networks():
    measured, source, new, _, held_out = _runtime_problem(0)
    model = RuntimeTransfer(RT_SPACE, measured, source, ["a", "b", "c", "d"], features=_rt_features)
    assert model.model.fallback and "falling back to the prior" in model.describe()
    picks = model.suggest(8)
    keys = {RT_SPACE.key(c) for c in measured}
    assert len(picks) == 8 and all(RT_SPACE.key(c) in keys for c in picks)
    assert [RT_SPACE.key(c) for c in picks] == [RT_SPACE.key(c) for c in model.suggest(8)]  # deterministic
    # the search measures networks outside the source table too: they join the fit
    seen = picks + held_out[:12]
    model.observe(seen, [_latency(c, new) for c in seen])
    assert not model.model.fallback and "from 20 samples" in model.describe()
    assert not {RT_SPACE.key(c) for c in model.suggest(5)} & {RT_SPACE.key(c) for c in seen}
    rest = held_out[12:]
    assert kendalltau(model(rest), [_latency(c, new) for c in rest]).statistic > 0.75


def test_runtime_transfer_bad_inputs_are_one_line_errors():
    measured, source, *_ = _runtime_problem(0, n_source=20)
    with pytest.raises(UserError, match="need at least 10"):
        RuntimeTransfer(RT_SPACE, measured[:5], source[:5])
    with pytest.raises(UserError, match="one row per measured network"):
        RuntimeTransfer(RT_SPACE, measured, source[:-1])
    bad = source.copy()
    bad[3, 1] = np.nan
    with pytest.raises(UserError, match="positive finite numbers"):
        RuntimeTransfer(RT_SPACE, measured, bad)


def test_predict_new_reproduces_the_table_rows():
    source, target = _table()
    features = np.random.default_rng(0).integers(0, 2, size=(len(source), 6)).astype(float)
    for feats in (None, features):
        model = DeviceTransfer(source, features=feats).fit(np.arange(10), target[:10])
        np.testing.assert_allclose(model.predict_new(source, feats), model.predict(), rtol=1e-12)
    prior = DeviceTransfer(source).fit([0], [target[0]])  # the fallback rescales the prior the same way
    np.testing.assert_allclose(prior.predict_new(source[:5]), prior.predict()[:5], rtol=1e-12)
