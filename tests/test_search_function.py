"""Search as a library: a plain function as the evaluator, objectives that declare their role, and the example."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from sliver.core import BUILTIN, Objective
from sliver.errors import UserError
from sliver.search import Constraint, Problem, Search, make_strategy, nondominated
from sliver.space import Dimension, SearchSpace
from sliver.store import ResultStore

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "search_any_problem.py"
SPACE = SearchSpace([Dimension("a", (1, 2, 3, 4), 2), Dimension("b", (1, 2, 3))])
OBJECTIVES = [Objective("loss", "min"), Objective("cost", "min", "mJ", additive=True)]


class Counting:
    """An object whose ``evaluate`` method is the problem; it counts calls and fails on one config."""

    def __init__(self):
        self.calls = 0

    def evaluate(self, config):
        self.calls += 1
        if config["a"] == [4, 4] and config["b"] == 3:
            raise RuntimeError("out of memory")
        size = sum(config["a"]) * config["b"]
        return {"loss": 10.0 / size + 0.1 * config["a"][1], "cost": float(size)}


def test_example_searches_its_problem():
    spec = importlib.util.spec_from_file_location("search_any_problem", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    configs = example.space.enumerate()  # 192 networks: the true front is known
    F = np.array([[example.evaluate(c)["error"], example.evaluate(c)["energy_mj"]] for c in configs])
    true = {example.space.key(c) for c, on in zip(configs, nondominated(F)) if on}
    result = example.main(budget=25)
    assert result.n_evaluations == 25 and not result.n_failed
    found = sum(p.key in true for p in result.front)
    randomly = Search(example.space, example.objectives, evaluate=example.evaluate, strategy="random", budget=25).run()
    assert found >= 6 and found > sum(p.key in true for p in randomly.front)


def test_function_search_is_stored_and_resumed_by_name(store_url):
    problem = Counting()

    def search(budget, **kw):
        return Search(SPACE, OBJECTIVES, evaluate=problem, evaluate_name="counting-v1", strategy="random",
                      budget=budget, seed=0, store=ResultStore(store_url), study_name="fn", **kw).run()

    first = search(12)
    assert problem.calls == first.n_evaluations == 12
    again = search(20)  # the same study resumed: only the 8 missing evaluations are paid for
    assert problem.calls == 20 and again.n_evaluations == 20
    assert {p.key for p in first.points} <= {p.key for p in again.points}
    other = Search(SPACE, OBJECTIVES, evaluate=problem, evaluate_name="counting-v2", strategy="random",
                   budget=5, seed=0, store=ResultStore(store_url), study_name="fn-v2").run()
    assert problem.calls == 25 and other.n_cache_hits == 0  # another name: nothing of v1 is reused


def test_function_failures_are_recorded_and_constraints_measured():
    problem = Counting()
    result = Search(SPACE, OBJECTIVES, evaluate=problem.evaluate, strategy="random", budget=36, seed=0,
                    constraints=["cost <= 12"]).run()
    failed = [p for p in result.points if not p.ok]
    assert [p.config for p in failed] == [{"a": [4, 4], "b": 3}] and "out of memory" in failed[0].errors["loss"]
    assert result.feasible_front and all(p.values["cost"] <= 12 for p in result.feasible_front)


def test_undeclared_objective_and_missing_value_are_user_errors():
    with pytest.raises(UserError, match="objective 'loss' is not built in; declare it"):
        Search(SPACE, ["loss"], evaluate=lambda c: {"loss": 1.0})
    result = Search(SPACE, OBJECTIVES, evaluate=lambda c: {"loss": 1.0}, strategy="random", budget=3).run()
    assert result.n_failed == 3 and "no number for 'cost'" in result.points[0].errors["cost"]
    with pytest.raises(UserError, match="not both"):
        Search(SPACE, object(), OBJECTIVES, evaluate=lambda c: {})


def test_linas_reads_declared_roles_not_names():
    linas = make_strategy("linas")
    linas.setup(Problem(SPACE, [OBJECTIVES[0], Objective("latency_ms", "min")]))  # named latency, declared plain
    assert linas._kind("latency_ms") == "gp" and linas._kind("loss") == "gp"
    linas.setup(Problem(SPACE, OBJECTIVES))
    assert linas._kind("cost") == "gp_additive" and linas._kind("loss") == "gp"
    # a built-in keeps its role, also as a constrained metric that is not an objective
    linas.setup(Problem(SPACE, [OBJECTIVES[0]], [Constraint.parse("latency_ms <= 1")]))
    assert linas._kind("latency_ms") == "gp_additive"


def test_latency_model_stands_in_for_the_declared_additive_metric():
    problem = Counting()
    model_calls = []

    def model(configs):
        model_calls.append(len(configs))
        return [sum(c["a"]) * c["b"] for c in configs]

    result = Search(SPACE, OBJECTIVES, evaluate=problem, budget=14, seed=0,
                    strategy_options={"n_init": 6, "batch": 4, "latency_model": model}).run()
    assert model_calls and result.n_evaluations == 14
    assert any("cost from the given latency model" in line for line in result.log)
    with pytest.raises(UserError, match="no predicted metric is declared additive"):
        Search(SPACE, [OBJECTIVES[0]], evaluate=problem, budget=14, seed=0,
               strategy_options={"n_init": 6, "latency_model": model}).run()


def test_stored_builtin_objective_without_role_takes_the_builtin_role():
    old = {k: v for k, v in BUILTIN["latency_ms"].to_dict().items() if k != "additive"}
    assert Objective.from_dict(old) == BUILTIN["latency_ms"] and BUILTIN["latency_ms"].additive
    assert Objective.from_dict(OBJECTIVES[1].to_dict()) == OBJECTIVES[1]


def test_cheap_metrics_of_candidates_come_in_populations_and_are_never_stored():
    # a 3 x 10^9 space: LINAS searches it (no exhaustive scoring), asking cheap costs of many candidates
    space = SearchSpace([Dimension("w", (1, 2, 3), 20)])
    objectives = [Objective("loss", "min"), Objective("cost", "min", cost="cheap")]
    calls = {"rows": 0, "vector_calls": 0}

    def evaluate(config):
        calls["rows"] += 1
        w = np.asarray(config["w"], dtype=float)
        return {"loss": float(np.sum((w - 2) ** 2) + 1 / w.sum()), "cost": float(w.sum())}

    def vectors(X):
        calls["vector_calls"] += 1
        return {"cost": (np.asarray(X) + 1).sum(axis=1).astype(float)}

    from sliver.measure.function import FunctionEvaluator

    evaluator = FunctionEvaluator(space, evaluate, objectives, name="cheap-vectors-test", vectors=vectors)
    assert evaluator.measure_vectors(space.encode_many(space.sample(0, 5)), ["cost"])["cost"].tolist() == \
        [evaluate(c)["cost"] for c in space.sample(0, 5)]
    calls.update(rows=0, vector_calls=0)
    store = ResultStore("sqlite://")
    result = Search(space, evaluator, ["loss", "cost"], "linas", budget=24, seed=0, store=store,
                    strategy_options={"n_init": 8, "batch": 8}).run()
    assert result.n_evaluations == 24
    assert calls["vector_calls"] > 0  # the inner search scored its candidates' costs in populations
    assert calls["rows"] == 24  # the function ran only for the measured networks
    assert store.count_measurements() == 24 * 2  # and only their metrics were stored

    # the benchmark runner's timing wrapper keeps the population call, and counts its time as evaluation
    from sliver.bench.runner import _Timed

    timed = _Timed(evaluator)
    X = space.encode_many(space.sample(0, 5))
    assert timed.measure_vectors(X, ["cost"])["cost"].tolist() == evaluator.measure_vectors(X, ["cost"])["cost"].tolist()
    assert timed.cpu > 0
    from types import SimpleNamespace

    rows_only = SimpleNamespace(space=space, objectives=objectives, supernet_hash="h", fingerprint=lambda: {},
                                measure=evaluator.measure)
    assert not hasattr(_Timed(rows_only), "measure_vectors")  # then the search asks one config at a time, as before


def test_value_grid_finds_whole_milliseconds_and_nothing_in_continuous_values():
    from sliver.search.linas import value_grid

    rng = np.random.default_rng(0)
    whole = np.round(rng.uniform(4, 40, 60))  # a phone reporting whole milliseconds: many ties
    assert value_grid(whole) == 1.0
    assert value_grid(np.round(rng.uniform(4, 40, 60) * 2) / 2) == 0.5
    assert value_grid(np.round(rng.uniform(4, 40, 60), 3)) is None  # three decimals, no ties: not a grid
    sums = rng.choice([1.133, 0.515, 0.742], (60, 3)).sum(1)  # an exact sum of per-op costs ties, but on no grid
    assert value_grid(sums) is None
    assert value_grid(np.array([5.0, 5.0, 6.0])) is None  # too few distinct values to tell


def test_linas_rounds_latency_predictions_to_the_grid_a_device_reports_on():
    space = SearchSpace([Dimension("a", (1, 2, 3, 4), 3), Dimension("b", (1, 2, 3))])

    def evaluate(config):
        size = sum(config["a"]) * config["b"]
        return {"loss": 10.0 / size + 0.05 * config["a"][0], "latency_ms": float(round(0.37 * size + 0.2 * config["a"][2]))}

    objectives = [Objective("loss", "min"), Objective("latency_ms", "min", "ms", additive=True)]
    search = Search(space, objectives, evaluate=evaluate, strategy="linas", budget=30, seed=0,
                    strategy_options={"n_init": 12, "batch": 6})
    result = search.run()
    linas = search.strategy
    assert linas._grid == {"latency_ms": 1.0}
    assert any("latency_ms is measured on a grid of step 1" in line for line in result.log)
    X = space.encode_many(space.sample(np.random.default_rng(1), 50))
    mean, draws, _ = linas._predict(X, linas._fit(linas.measured()), np.random.default_rng(2).standard_normal((4, 2)))
    j = [o.name for o in objectives].index("latency_ms")
    assert np.array_equal(mean[:, j], np.round(mean[:, j])) and np.array_equal(draws[..., j], np.round(draws[..., j]))
