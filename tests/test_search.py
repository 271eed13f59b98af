"""The search loop and strategies on a small gated toy space with a counting evaluator."""

import re
import subprocess
import sys

import numpy as np
import pytest

from sliver.core import BUILTIN
from sliver.search import Constraint, Search, hypervolume, make_strategy, nondominated
from sliver.search.hv import hvi_2d
from sliver.space import DepthGate, Dimension, SearchSpace
from sliver.store import ResultStore

STRATEGIES = ["random", "nsga2", "unsga3", "tpe", "linas"]
FAST_OPTIONS = {"linas": {"n_init": 8, "batch": 4, "inner": "nsga2", "inner_pop": 20, "inner_generations": 5, "samples": 8}}


def toy_space():
    return SearchSpace(
        [Dimension("k", (3, 5, 7), 4), Dimension("d", (1, 2), 2), Dimension("w", (1, 2, 3))],
        [DepthGate("d", (2, 2), ("k",))],
    )


class Killed(BaseException):
    """Stands in for the process dying mid-search."""


class ToyEvaluator:
    """accuracy / latency_ms (expensive) and params (cheap) from the active blocks; counts what it measures."""

    def __init__(self, kill_after=None):
        self.space = toy_space()
        self.objectives = [BUILTIN["accuracy"], BUILTIN["latency_ms"], BUILTIN["params"]]
        self.supernet_hash = "toy"
        self.fingerprint = "cpu"
        self.measured = []  # keys measured for expensive objectives
        self.kill_after = kill_after

    def fingerprint_for(self, objective):
        return "cpu" if objective == "latency_ms" else "any"

    def measure(self, config, objectives):
        if "accuracy" in objectives or "latency_ms" in objectives:
            if self.kill_after is not None and len(self.measured) >= self.kill_after:
                raise Killed()
            self.measured.append(self.space.key(config))
        active = [k for k, a in zip(config["k"], self.space.active_mask(config)["k"]) if a]
        size = sum(k * k for k in active) * config["w"]
        out = {
            "accuracy": 60 + 10 * np.log(size) + (config["k"][0] == 5) * 2.0,
            "latency_ms": 0.1 * size + len(active),
            "params": float(size * 100),
        }
        return {n: out[n] for n in objectives}


def run(strategy, budget=30, **kw):
    ev = kw.pop("evaluator", None) or ToyEvaluator()
    s = Search(ev.space, ev, ["accuracy", "latency_ms"], strategy, budget=budget, seed=0,
               strategy_options=FAST_OPTIONS.get(strategy), **kw)
    return s.run(), ev


@pytest.mark.parametrize("strategy", [pytest.param(s, marks=pytest.mark.slow) if s == "linas" else s for s in STRATEGIES])
def test_budget_respected_and_no_canonical_duplicate(strategy):
    result, ev = run(strategy, budget=30)
    assert result.n_evaluations == len(ev.measured) <= 30
    assert len(set(ev.measured)) == len(ev.measured)
    assert len(ev.measured) >= 20  # the toy space has 3**... networks: no strategy should run dry this early
    assert result.hv_history and result.hv_history[-1][0] == result.n_evaluations
    assert all(b >= a for (_, a, _), (_, b, _) in zip(result.hv_history, result.hv_history[1:]))


def test_linas_returns_only_measured_points():
    result, ev = run("linas", budget=24)
    measured = set(ev.measured)
    assert {p.key for p in result.points} == measured
    assert {p.key for p in result.front} <= measured
    assert any("Kendall tau" in line for line in result.log)


@pytest.mark.parametrize("strategy", ["random", "nsga2", "linas"])
def test_constraints_honoured(strategy):
    cons = ["latency_ms <= 8", "params <= 10000"]
    result, ev = run(strategy, budget=20, constraints=cons)
    parsed = [Constraint.parse(c) for c in cons]
    for p in result.feasible_front:
        assert all(c.ok(p.values[c.metric]) for c in parsed)
    # the cheap constraint filters before measuring: no measured network breaks it
    for p in result.points:
        if p.origin == "search":
            assert p.values["params"] <= 10000
    assert result.feasible_front


@pytest.mark.slow
def test_kill_and_restart_loses_nothing(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    full, _ = run("linas", budget=20, store=ResultStore(f"sqlite:///{tmp_path}/full.db"), study_name="s")
    ev = ToyEvaluator(kill_after=11)
    store = ResultStore(url)
    with pytest.raises(Killed):
        run("linas", budget=20, store=store, study_name="s", evaluator=ev)
    assert len(store.trials(store.get_study("s").id)) == 11
    ev2 = ToyEvaluator()
    resumed, _ = run("linas", budget=20, store=ResultStore(url), study_name="s", evaluator=ev2)
    assert resumed.n_evaluations == full.n_evaluations == 20
    assert len(ev2.measured) == 9  # only the rest was paid for
    trials = ResultStore(url).trials(store.get_study("s").id)
    assert len(trials) == 20 and len({t.config_key for t in trials}) == 20
    assert set(ev.measured) <= {t.config_key for t in trials}


def test_warm_start_reuses_stored_measurements(tmp_path):
    store = ResultStore(f"sqlite:///{tmp_path}/s.db")
    first, _ = run("random", budget=15, store=store, study_name="a")
    ev = ToyEvaluator()
    second, _ = run("nsga2", budget=10, store=store, study_name="b", warm_start=True, evaluator=ev)
    assert second.n_warm == 15
    assert second.n_evaluations == len(ev.measured) == 10
    assert not set(ev.measured) & {p.key for p in first.points}
    assert len(second.points) == 25


def test_store_cache_hits_are_free(tmp_path):
    store = ResultStore(f"sqlite:///{tmp_path}/s.db")
    run("random", budget=15, store=store, study_name="a")
    ev = ToyEvaluator()
    again, _ = run("random", budget=15, store=store, study_name="b", evaluator=ev)  # same seed: same proposals
    assert again.n_cache_hits == 15 and again.n_evaluations == 15 and len(ev.measured) == 15


def test_the_study_records_its_constraints_and_given_settings(tmp_path):
    store = ResultStore(f"sqlite:///{tmp_path}/s.db")
    run("random", budget=5, store=store, study_name="s", constraints=["latency_ms <= 5"],
        study_settings={"search_yaml": "/runs/a/search.yaml", "budget": 99})
    settings = store.get_study("s").settings
    assert settings["constraints"] == ["latency_ms <= 5"] and settings["search_yaml"] == "/runs/a/search.yaml"
    assert settings["strategy"] == "random" and settings["budget"] == 5  # the search's own settings win


def test_build_search_records_the_yaml_and_problem_with_the_study(tmp_path, monkeypatch):
    from sliver.bench.nb201 import data_root
    from sliver.config import load
    from sliver.search.config import SearchConfig, build_search

    if not (data_root() / "nb201" / "nb201_acc_latency.csv").is_file():
        pytest.skip("the NB201 table (../shared/data) is not here")
    (tmp_path / "search.yaml").write_text(
        f"problem: {{kind: nb201, device: raspi4}}\nstore: sqlite:///{tmp_path / 's.db'}\nstudy: nb\n"
        "objectives: [accuracy, latency_ms]\nconstraints: ['latency_ms <= 20']\nbudget: 3\nstrategy: {name: random}\n"
    )
    monkeypatch.chdir(tmp_path)  # a relative path is recorded absolute: the dashboard runs elsewhere
    search, store = build_search(load(SearchConfig, "search.yaml"), path="search.yaml")
    search.run()
    settings = store.get_study("nb").settings
    assert settings["search_yaml"] == str(tmp_path.resolve() / "search.yaml")
    assert settings["problem"] == "nb201" and settings["constraints"] == ["latency_ms <= 20"]
    store.close()


class FailsOnW2(ToyEvaluator):
    def measure(self, config, objectives):
        if config["w"] == 2:
            raise RuntimeError("out of memory")
        return super().measure(config, objectives)


def test_a_cache_hit_is_the_same_point_when_its_study_resumes(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    run("random", budget=6, store=ResultStore(url), study_name="a", evaluator=FailsOnW2())
    first, _ = run("random", budget=9, store=ResultStore(url), study_name="b")  # same seed: study a's 6 come free
    hits = [p for p in first.points if p.origin == "cache"]
    assert (first.n_evaluations, first.n_cache_hits, len(hits)) == (9, 6, 6)
    assert 0 < sum(not p.ok for p in hits) == first.n_failed  # study a's failures, served as they were stored
    store = ResultStore(url)
    trials = {t.config_key: t for t in store.trials(store.get_study("b").id)}
    assert all(trials[p.key].origin == "search" and trials[p.key].cached for p in hits)
    ev = ToyEvaluator()
    resumed, _ = run("random", budget=9, store=store, study_name="b", evaluator=ev)
    # replayed from the store, each trial is the point the search reported: a cache hit stays one
    assert ev.measured == [] and (resumed.n_evaluations, resumed.n_cache_hits, resumed.n_failed) == (9, 6, first.n_failed)
    assert [(p.key, p.origin, p.batch) for p in resumed.points] == [(p.key, p.origin, p.batch) for p in first.points]


def test_bad_arguments_are_clear():
    ev = ToyEvaluator()
    with pytest.raises(ValueError, match="budget"):
        Search(ev.space, ev, ["accuracy"], "random", budget=0)
    with pytest.raises(ValueError, match="objective 'flops'"):
        Search(ev.space, ev, ["flops"], "random", budget=5)
    with pytest.raises(ValueError, match="metric 'energy'"):
        Search(ev.space, ev, ["accuracy"], "random", budget=5, constraints=["energy <= 3"])
    with pytest.raises(ValueError, match="metric <= number"):
        Constraint.parse("latency < 5")
    with pytest.raises(ValueError, match="strategy 'sgd'"):
        make_strategy("sgd")


@pytest.mark.parametrize("name, option, choices", [
    ("linas", "n_iinit", "'n_init', 'batch'"),
    ("nsga2", "pop", "['pop_size', 'max_idle_generations']"),
    ("random", "batch", "none"),
])
def test_typoed_strategy_option_is_named_with_the_choices(name, option, choices):
    with pytest.raises(ValueError, match=f"strategy '{name}': unknown option '{option}'.*its options are .*{re.escape(choices)}"):
        make_strategy(name, **{option: 1})
    assert make_strategy("nsga2", pop_size=8).pop_size == 8  # the evolutionary options still reach the strategy


def test_hypervolume_helpers_agree_with_pymoo():
    rng = np.random.default_rng(0)
    F, P, ref = rng.random((40, 2)), rng.random((10, 2)), np.array([1.1, 1.1])
    base = hypervolume(F, ref)
    exact = [hypervolume(np.vstack([F, p]), ref) - base for p in P]
    assert np.allclose(hvi_2d(F, P, ref), exact)
    assert nondominated(np.array([[1, 1], [2, 2], [0, 3]])).tolist() == [True, False, True]


def test_search_stack_never_imports_torch():
    code = "import sys, sliver.space, sliver.search, sliver.predict, sliver.store, sliver.bench, sliver.search.strategies; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_linas_bad_features_option_is_clear():
    with pytest.raises(ValueError, match="features must be callable"):
        make_strategy("linas", features="path")


def test_linas_uses_the_given_features():
    calls = []

    def feats(X):
        calls.append(len(X))
        return np.asarray(X, dtype=float)  # the raw gene values as features

    opts = dict(FAST_OPTIONS["linas"], features=feats)
    ev = ToyEvaluator()
    result = Search(ev.space, ev, ["accuracy", "latency_ms"], "linas", budget=16, seed=0, strategy_options=opts).run()
    assert calls and result.n_evaluations == 16


def test_linas_local_share_is_validated_and_local_picks_neighbour_the_front():
    with pytest.raises(ValueError, match="local_share must be between 0 and 1"):
        make_strategy("linas", local_share=1.5)
    ev = ToyEvaluator()
    opts = dict(FAST_OPTIONS["linas"], local_share=1.0, predictor="gp")
    search = Search(ev.space, ev, ["accuracy", "latency_ms"], "linas", budget=16, seed=0, strategy_options=opts)
    result = search.run()
    assert result.n_evaluations == 16
    strategy = search.strategy
    measured = strategy.measured()
    X = np.stack([ev.space.encode(c) for c in ev.space.sample(np.random.default_rng(0), n=50)])
    near = strategy._near_front(X, measured)
    F = strategy.problem.to_min([o.values for _, _, o in measured])
    from sliver.search.hv import nondominated

    front = np.stack([ev.space.encode(measured[i][1]) for i in np.flatnonzero(nondominated(F))])
    hamming = (X[:, None, :] != front[None]).sum(2)
    assert near.any() and (near == (hamming == 1).any(1)).all()


def test_linas_fits_latency_with_the_additive_gp_and_accuracy_without():
    ev = ToyEvaluator()
    result = Search(ev.space, ev, ["accuracy", "latency_ms"], "linas", budget=16, seed=0,
                    strategy_options=FAST_OPTIONS["linas"]).run()
    chosen = [line for line in result.log if " predictor (" in line]
    assert any("latency_ms predictor (gp_additive," in line for line in chosen)
    assert any("accuracy predictor (gp," in line for line in chosen)


def test_linas_extremes_measures_the_largest_and_smallest_networks_first():
    ev = ToyEvaluator()
    options = {**FAST_OPTIONS["linas"], "extremes": True}
    result = Search(ev.space, ev, ["accuracy", "latency_ms"], "linas", budget=12, seed=0, strategy_options=options).run()
    first = [p for p in result.points if p.origin == "search"][:2]
    assert {ev.space.key(p.config) for p in first} == {ev.space.key(ev.space.max_config()), ev.space.key(ev.space.min_config())}
    assert len({p.key for p in result.points}) == len(result.points)


def test_linas_far_share_is_validated_and_defaults_by_the_size_of_the_space():
    with pytest.raises(ValueError, match="far_share must be between 0 and 1"):
        make_strategy("linas", far_share=-0.1)
    ev = ToyEvaluator()
    searched = Search(ev.space, ev, ["accuracy", "latency_ms"], "linas", budget=8, seed=0,
                      strategy_options=FAST_OPTIONS["linas"])
    scored = Search(ev.space, ev, ["accuracy", "latency_ms"], "linas", budget=8, seed=0,
                    strategy_options=dict(FAST_OPTIONS["linas"], inner="exhaustive"))
    assert searched.strategy._far_share() == 0.1 and scored.strategy._far_share() == 0.0


def test_linas_far_picks_differ_from_every_measured_network_in_three_genes():
    ev = ToyEvaluator()
    opts = dict(FAST_OPTIONS["linas"], far_share=0.25, local_share=0.0)  # one pick of each batch of 4
    search = Search(ev.space, ev, ["accuracy", "latency_ms"], "linas", budget=24, seed=0, strategy_options=opts)
    assert search.run().n_evaluations == 24
    strategy = search.strategy
    measured = strategy.measured()
    rows = np.stack([ev.space.encode(c) for _, c, _ in measured])
    X = np.stack([ev.space.encode(c) for c in ev.space.sample(np.random.default_rng(1), n=200)])
    hamming = (X[:, None, :] != rows[None]).sum(2)
    assert (strategy._far_from_measured(X, measured) == (hamming >= 3).all(1)).all()
    # each batch after the first 8 random draws holds a network 3 genes away from all measured before it
    keys = [ev.space.encode(c) for _, c, _ in measured]
    for start in range(8, 24, 4):
        before = np.stack(keys[:start])
        batch = np.stack(keys[start:start + 4])
        assert ((batch[:, None, :] != before[None]).sum(2).min(1) >= 3).any()
