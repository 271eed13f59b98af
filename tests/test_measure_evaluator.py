"""evaluate(): store look-up first, only missing objectives measured, failures recorded not raised."""

import pytest

from sliver.core import BUILTIN
from sliver.measure.base import Evaluator, Measured
from sliver.measure.evaluator import evaluate
from sliver.space import DepthGate, Dimension, SearchSpace
from sliver.store import Origin, ResultStore

SPACE = SearchSpace([Dimension("d", (1, 2)), Dimension("k", (3, 5), length=2)], [DepthGate("d", (2,), ("k",))])


class CountingEvaluator:
    """A torch-free evaluator that counts every objective it is asked to measure."""

    space = SPACE
    objectives = [BUILTIN["accuracy"], BUILTIN["latency_ms"], BUILTIN["params"]]
    supernet_hash = "net"
    fingerprint = "fpA"

    def __init__(self, fail: str | None = None):
        self.calls: list[tuple[str, str]] = []
        self.fail = fail

    def fingerprint_for(self, objective):
        return self.fingerprint if objective == "latency_ms" else "any"

    def measure(self, config, objectives):
        out = {}
        for name in objectives:
            self.calls.append((self.space.key(config), name))
            if name == self.fail:
                out[name] = RuntimeError("export failed\nlong traceback")
            else:
                out[name] = float(sum(config["k"]) + config["d"] + len(name))
        return out


@pytest.fixture
def store(tmp_path):
    with ResultStore(f"sqlite:///{tmp_path / 'e.db'}") as s:
        yield s


def test_protocol_and_repeat_is_a_cache_hit(store):
    ev = CountingEvaluator()
    assert isinstance(ev, Evaluator)
    study = store.get_or_create_study("s", SPACE, ev.objectives, ev.supernet_hash, ev.fingerprint)
    first = evaluate(ev, {"d": 1, "k": [3, 5]}, store, study.id, origin=Origin.CLI)
    assert not first.cached and first.ok and len(ev.calls) == 3
    # the same network written differently (inactive gene changed) is served from the store: no model run
    again = evaluate(ev, {"d": 1, "k": [3, 3]}, store, study.id)
    assert again.cached and again.values == first.values and again.key == first.key and len(ev.calls) == 3
    assert again.wall == 0.0 and again.seconds == {}
    assert [t.seq for t in store.trials(study.id)] == [1]


def test_only_missing_objectives_are_measured(store):
    ev = CountingEvaluator()
    cfg = {"d": 2, "k": [5, 5]}
    evaluate(ev, cfg, store, objectives=["accuracy"])
    res = evaluate(ev, cfg, store)
    assert [name for _, name in ev.calls] == ["accuracy", "latency_ms", "params"]
    assert not res.cached and res.measured == ["latency_ms", "params"]
    # another hardware target re-measures latency only
    ev.fingerprint = "fpB"
    evaluate(ev, cfg, store)
    assert [name for _, name in ev.calls][3:] == ["latency_ms"]


def test_failed_objective_is_stored_and_the_run_goes_on(store):
    ev = CountingEvaluator(fail="latency_ms")
    study = store.get_or_create_study("f", SPACE, ev.objectives, ev.supernet_hash, ev.fingerprint)
    res = evaluate(ev, {"d": 2, "k": [3, 5]}, store, study.id)
    assert not res.ok and set(res.values) == {"accuracy", "params"}
    assert res.errors == {"latency_ms": "RuntimeError: export failed"}
    assert store.count_measurements("failed") == 1
    trial = store.trials(study.id)[0]
    assert trial.errors == res.errors and set(trial.values) == {"accuracy", "params"}
    # a stored failure is served as such; retry_failed measures it again
    n = len(ev.calls)
    assert evaluate(ev, {"d": 2, "k": [3, 5]}, store).errors == res.errors and len(ev.calls) == n
    ev.fail = None
    fixed = evaluate(ev, {"d": 2, "k": [3, 5]}, store, retry_failed=True)
    assert fixed.ok and len(ev.calls) == n + 1 and store.count_measurements("failed") == 0


def test_evaluator_crash_and_bad_values_become_errors():
    class Broken(CountingEvaluator):
        def measure(self, config, objectives):
            raise ValueError("cannot extract")

    res = evaluate(Broken(), {"d": 1, "k": [3, 3]})
    assert set(res.errors) == {"accuracy", "latency_ms", "params"} and "cannot extract" in res.errors["params"]

    class NaN(CountingEvaluator):
        def measure(self, config, objectives):
            return {"accuracy": float("nan")}

    res = evaluate(NaN(), {"d": 1, "k": [3, 3]}, objectives=["accuracy", "params"])
    assert res.errors == {"accuracy": "non-finite value nan", "params": "RuntimeError: the evaluator returned no value"}


def test_seconds_and_stats_an_evaluator_returns_are_stored(store):
    class Timed(CountingEvaluator):
        def measure(self, config, objectives):
            out = Measured()
            out.record("latency_ms", 2.5, seconds=7.0, stats={"runs": 30})
            out.record("accuracy", ValueError("no data"), seconds=1.0, stats={"samples": 0})
            return out  # params left out

    ev = Timed()
    study = store.get_or_create_study("s", SPACE, ev.objectives, ev.supernet_hash, ev.fingerprint)
    res = evaluate(ev, {"d": 1, "k": [3, 3]}, store, study.id)
    assert res.values == {"latency_ms": 2.5}
    assert res.errors == {"accuracy": "ValueError: no data", "params": "RuntimeError: the evaluator returned no value"}
    found = store.get_measurements(res.key, "net", {"latency_ms": "fpA", "accuracy": "any", "params": "any"})
    assert (found["latency_ms"].seconds, found["latency_ms"].stats) == (7.0, {"runs": 30})
    assert (found["accuracy"].status, found["accuracy"].seconds, found["accuracy"].stats) == ("failed", 1.0, {"samples": 0})
    assert found["params"].status == "failed" and found["params"].stats == {}


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="objective 'macs' is not measured"):
        evaluate(CountingEvaluator(), {"d": 1, "k": [3, 3]}, objectives=["macs"])
    with pytest.raises(ValueError, match=r"dimension 'k\[1\]'"):
        evaluate(CountingEvaluator(), {"d": 1, "k": [3, 4]})
