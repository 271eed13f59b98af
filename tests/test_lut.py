"""Operator lookup tables: coverage, summing, fingerprint refusal, YAML round trip, resumable build."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")

from sliver.elastic.mobilenet import ElasticMobileNet  # noqa: E402
from sliver.measure.hardware import HardwareTarget  # noqa: E402
from sliver.predict.lut import OperatorLUT, build_lut, build_operator, enumerate_operators, operators  # noqa: E402

FAST = dict(warmup=0, min_repeats=3, max_repeats=3, max_seconds=0.5)


@pytest.fixture(scope="module")
def tiny():
    return ElasticMobileNet.from_preset("tiny")


def test_enumeration_covers_every_operator_of_random_configs(tiny):
    table = enumerate_operators(tiny)
    for config in tiny.space.sample(0, n=40):
        arch = tiny.arch_config(config)
        keys = [k for k, _, _ in operators(arch)]
        assert len(keys) == len(arch["blocks"]) + 2  # stem, each block, head
        assert not [k for k in keys if k not in table]


def test_lut_sum_equals_hand_checked_operator_sum(tiny):
    space = tiny.space
    config = dict(space.min_config(), r=28)
    arch = tiny.arch_config(config)
    lut = OperatorLUT({"machine": "test"}, "abc", {k: float(i + 1) for i, k in enumerate(enumerate_operators(tiny))})
    ops = operators(arch)
    # min config of the tiny preset: stem, the fixed first block, one block per stage (3), head
    assert [kind for _, kind, _ in ops] == ["stem", "block", "block", "block", "block", "head"]
    assert ops[0][2] == {"in": 1, "out": 8, "stride": 1, "act": arch["stem"]["act"], "res": 28}
    assert [spec["res"] for _, kind, spec in ops if kind == "block"] == [28, 28, 14, 7]
    assert ops[-1][2]["res"] == 4
    assert lut.predict(arch) == sum(lut.entries[k] for k, _, _ in ops)
    del lut.entries[ops[2][0]]
    with pytest.raises(ValueError, match="no entry for operator 'block:"):
        lut.predict(arch)


def test_lut_from_one_fingerprint_is_refused_for_another(tmp_path):
    one = HardwareTarget.preset("cpu-torch-b1")
    other = HardwareTarget.preset("cpu-torch-b2")
    lut = OperatorLUT.for_target(one)
    lut.entries["stem:x"] = 1.0
    lut.save(tmp_path / "lut.yaml")
    assert OperatorLUT.load(tmp_path / "lut.yaml", one).entries == {"stem:x": 1.0}
    with pytest.raises(ValueError, match="differs in batch_size"):
        OperatorLUT.load(tmp_path / "lut.yaml", other)
    old = yaml.safe_load((tmp_path / "lut.yaml").read_text())
    assert old.pop("copies") == 8
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(old))
    assert OperatorLUT.load(tmp_path / "old.yaml", one).copies == 1  # written before copies: timed alone
    (tmp_path / "bad.yaml").write_text("entries: {}\n")
    with pytest.raises(ValueError, match="field 'fingerprint' is missing"):
        OperatorLUT.load(tmp_path / "bad.yaml")


def test_operator_modules_run_and_match_the_extracted_network(tiny):
    config = tiny.space.sample(3)
    arch = tiny.arch_config(config)
    for _, kind, spec in operators(arch):
        module, example = build_operator(kind, spec)
        with torch.no_grad():
            out = module(example)
        if kind == "head":
            assert out.shape == (1, arch["num_classes"])
        else:
            assert out.shape[1] == spec["out"]
    with pytest.raises(ValueError, match="operator kind 'pool' is unknown"):
        build_operator("pool", {})


def test_operators_timed_in_turn_run_independent_copies(tiny):
    from sliver.predict.lut import in_turn

    kind, spec = next(iter(enumerate_operators(tiny).values()))
    (first, example), (second, _) = build_operator(kind, spec), build_operator(kind, spec)
    turn = in_turn([first, second])
    with torch.no_grad():
        outs = turn(example)
    assert len(outs) == 2 and outs[0].shape == outs[1].shape
    assert not torch.equal(outs[0], outs[1])  # independently initialised: nothing for ONNX Runtime to merge


@pytest.mark.slow
def test_build_lut_is_resumable_and_predicts_positive_latency(tmp_path):
    net = ElasticMobileNet.from_preset("digits")
    target = HardwareTarget.preset("cpu-torch-b1", **FAST)
    all_ops = enumerate_operators(net)
    path = tmp_path / "lut.yaml"
    # a partial table on disk, as left by an interrupted build
    partial = OperatorLUT.for_target(target, copies=2)
    first = next(iter(all_ops))
    partial.entries[first] = 123.0
    partial.save(path)
    with pytest.raises(ValueError, match="timed 2 copies per operator, this build 8"):
        build_lut(net, target, path)
    seen = []
    lut = build_lut(net, target, path, copies=2, on_progress=lambda done, total: seen.append((done, total)))
    assert lut.entries[first] == 123.0  # kept, not re-timed
    assert set(lut.entries) == set(all_ops)
    assert seen[0] == (2, len(all_ops)) and seen[-1] == (len(all_ops), len(all_ops))
    assert set(OperatorLUT.load(path, target).entries) == set(all_ops)
    arch = net.arch_config(net.space.sample(1))
    assert np.isfinite(lut.predict(arch)) and lut.predict(arch) > 0


def test_cli_build_lut_refuses_a_table_of_another_target(tmp_path):
    from pathlib import Path

    from typer.testing import CliRunner

    from sliver.cli import app

    OperatorLUT.for_target(HardwareTarget.preset("cpu-torch-b1")).save(tmp_path / "lut.yaml")
    example = Path(__file__).resolve().parents[1] / "examples" / "mobilenet_digits.yaml"
    res = CliRunner().invoke(app, ["latency", "build-lut", str(example), "--target", "cpu-torch-b2", "-o", str(tmp_path / "lut.yaml")])
    assert res.exit_code == 2
    assert "build a table on this target" in res.output


# ------------------------------------------------------------------ the store
def test_store_tables_round_trip_replace_and_list(tmp_path):
    from sliver.store import ResultStore

    url = f"sqlite:///{tmp_path / 'r.db'}"
    with ResultStore(url) as store:
        assert store.get_table("operator_lut", "fp1", "mobilenet") is None
        store.put_table("operator_lut", "fp1", "mobilenet", {"entries": {"a": 1.5}})
        store.put_table("operator_lut", "fp1", "mobilenet", {"entries": {"a": 2.0, "b": 3.0}})  # replaces
        store.put_table("operator_lut", "fp2", "mobilenet", {"entries": {}})
        store.put_table("other", "fp1", "x", {"k": [1, 2]})
        assert store.get_table("operator_lut", "fp1", "mobilenet") == {"entries": {"a": 2.0, "b": 3.0}}
        assert store.list_tables("operator_lut") == [("operator_lut", "fp1", "mobilenet"), ("operator_lut", "fp2", "mobilenet")]
        assert len(store.list_tables()) == 3
        with pytest.raises(ValueError, match="data must be a dict"):
            store.put_table("other", "fp1", "x", [1, 2])
    # a store written before tables existed gains them on open: test_store.py's early-v1 migration case


def test_lut_in_the_store_is_keyed_by_fingerprint(tmp_path, tiny):
    from sliver.store import ResultStore

    one, other = HardwareTarget.preset("cpu-torch-b1", **FAST), HardwareTarget.preset("cpu-torch-b2", **FAST)
    ops = enumerate_operators(tiny)
    with ResultStore(f"sqlite:///{tmp_path / 'r.db'}") as store:
        lut = OperatorLUT.for_target(one)
        lut.entries = {k: 0.01 * (i + 1) for i, k in enumerate(ops)}
        missing = list(ops)[-2:]
        for k in missing:
            del lut.entries[k]
        lut.save_to_store(store)
        assert OperatorLUT.from_store(store, one).entries == lut.entries
        assert OperatorLUT.from_store(store, other) is None  # never served to another fingerprint
        # the build resumes from the store: only the two missing operators are timed
        seen = []
        built = build_lut(tiny, one, store=store, copies=lut.copies, on_progress=lambda done, total: seen.append((done, total)))
        assert seen == [(len(ops) - 1, len(ops)), (len(ops), len(ops))]
        assert set(OperatorLUT.from_store(store, one).entries) == set(ops) == set(built.entries)
        assert all(built.entries[k] == lut.entries[k] for k in lut.entries)


# ------------------------------------------------------------ the correction
def test_lut_latency_model_learns_the_whole_network_correction(tiny):
    from sliver.predict.lut import LUTLatencyModel

    rng = np.random.default_rng(0)
    ops = enumerate_operators(tiny)
    lut = OperatorLUT({"machine": "test"}, "abc", {k: float(rng.uniform(0.05, 0.5)) for k in ops})
    model = LUTLatencyModel(lut, tiny)
    configs = tiny.space.sample(1, n=30)
    sums = model.lut_sum(configs)
    # whole networks: slower than their isolated operators, more so the larger they are (caches)
    measured = 1.3 * sums ** 1.1 * np.exp(rng.normal(0, 0.01, sums.size))
    assert np.array_equal(model(configs), sums)  # uncorrected: the plain sum
    with pytest.raises(ValueError, match="at least 3 whole-network measurements"):
        model.fit(configs[:2], measured[:2])
    with pytest.raises(ValueError, match="positive finite"):
        model.fit(configs[:5], -measured[:5])
    with pytest.raises(ValueError, match="falls as the LUT sum grows"):
        model.fit(configs[:10], 1.0 / sums[:10])
    model.fit(configs[:10], measured[:10])
    assert model.corrected and model.n_samples == 10
    err_sum = np.abs(sums[10:] / measured[10:] - 1).mean()
    err_fit = np.abs(model(configs[10:]) / measured[10:] - 1).mean()
    assert err_fit < 0.02 < 0.2 < err_sum
    assert np.array_equal(np.argsort(model(configs)), np.argsort(sums))  # the correction never reorders


# ------------------------------------------------- a latency model in the search
def test_linas_uses_the_given_latency_model_and_reports_measured_values():
    from test_search import FAST_OPTIONS, ToyEvaluator  # the search tests' toy space and counting evaluator

    from sliver.search import Search, make_strategy

    ev = ToyEvaluator()
    calls = []

    def model(configs):
        # the toy's latency up to a factor (as a LUT misses whole-network overheads), without the per-block term
        calls.append(len(configs))
        out = []
        for c in configs:
            active = [k for k, a in zip(c["k"], ev.space.active_mask(c)["k"]) if a]
            out.append(0.05 * sum(k * k for k in active) * c["w"])
        return np.array(out)

    search = Search(ev.space, ev, ["accuracy", "latency_ms"], "linas", budget=16, seed=0,
                    strategy_options=dict(FAST_OPTIONS["linas"], latency_model=model))
    result = search.run()
    assert calls and result.n_evaluations == len(ev.measured) == 16
    assert any("latency_ms from the given latency model" in line for line in result.log)
    assert not any("latency_ms predictor" in line for line in result.log)  # no predictor fitted for latency
    for p in result.points:  # what the search reports is what the evaluator measured, never the model
        assert p.values["latency_ms"] == pytest.approx(ev.measure(p.config, ["latency_ms"])["latency_ms"])
    with pytest.raises(ValueError, match="latency_model must be callable"):
        make_strategy("linas", latency_model="lut.yaml")


def test_linas_refits_a_learning_latency_model_on_every_latency_it_measured():
    from test_search import FAST_OPTIONS, ToyEvaluator

    from sliver.search import Search

    ev = ToyEvaluator()

    class Learning:
        """Per-block cost times a scale it learns from the measured latencies; records what it was shown."""

        def __init__(self):
            self.scale, self.shown = 1.0, []

        def _size(self, c):
            active = [k for k, a in zip(c["k"], ev.space.active_mask(c)["k"]) if a]
            return sum(k * k for k in active) * c["w"]

        def observe(self, configs, latency_ms):
            self.shown.append([(ev.space.key(c), float(v)) for c, v in zip(configs, latency_ms)])
            self.scale = float(np.median(np.asarray(latency_ms) / [self._size(c) for c in configs]))

        def __call__(self, configs):
            return [self.scale * self._size(c) for c in configs]

    model = Learning()
    result = Search(ev.space, ev, ["accuracy", "latency_ms"], "linas", budget=20, seed=0,
                    strategy_options=dict(FAST_OPTIONS["linas"], latency_model=model)).run()
    rounds = [line for line in result.log if "from the given latency model" in line]
    assert len(model.shown) == len(rounds) >= 2
    sizes = [len(shown) for shown in model.shown]
    assert sizes[0] == FAST_OPTIONS["linas"]["n_init"] and sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    truth = {p.key: p.values["latency_ms"] for p in result.points}
    for shown in model.shown:  # every round: all latencies measured so far, as measured
        assert all(v == pytest.approx(truth[key]) for key, v in shown)
    assert f"refitted on {sizes[-1]} measured points" in rounds[-1]
