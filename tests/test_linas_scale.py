"""LINAS on a space far too large to score: an OFA-sized gated space (46 genes, about 10^19 networks)."""

import time

import numpy as np

from sliver.core import Objective
from sliver.search import Search
from sliver.search.hv import normalised_hypervolume
from sliver.search.linas import LINAS
from sliver.space import DepthGate, Dimension, SearchSpace

SPACE = SearchSpace(
    [Dimension("ks", (3, 5, 7), 20), Dimension("e", (3, 4, 6), 20), Dimension("d", (2, 3, 4), 5),
     Dimension("r", (160, 176, 192, 208, 224))],
    [DepthGate("d", (4, 4, 4, 4, 4), ("ks", "e"))],
)
OBJECTIVES = [Objective("accuracy", "max", "%"), Objective("latency_ms", "min", "ms", additive=True)]
_rng = np.random.default_rng(7)
_MIX = _rng.normal(size=(SPACE.n_features, 3)) / np.sqrt(10)


def _cost_per_feature() -> np.ndarray:
    """A block's time grows with its kernel area and expansion; resolution adds a fixed share (per feature)."""
    out = []
    for d in SPACE.dimensions:
        for _ in range(d.n_genes):
            if d.name == "ks":
                out += [k * k / 9 for k in d.choices]
            elif d.name == "e":
                out += [e / 2 for e in d.choices]
            elif d.name == "r":
                out += [(r / 160) ** 2 * 20 - 10 for r in d.choices]
            else:
                out += [0.0] * len(d.choices)
    return np.array(out)


_COST = _cost_per_feature()


def evaluate(config: dict) -> dict:
    """Accuracy saturates with capacity and depends on genes jointly; latency is additive, in whole milliseconds."""
    f = SPACE.features(config)
    cost = float(f @ _COST)
    s = f @ _MIX
    accuracy = 60 + 20 * (1 - np.exp(-cost / 40)) + 1.5 * np.tanh(s[0]) * np.tanh(s[1]) + np.sin(s[2])
    return {"accuracy": float(accuracy), "latency_ms": float(np.round(cost))}


def _run(strategy, budget: int, seed: int):
    return Search(SPACE, OBJECTIVES, evaluate=evaluate, evaluate_name="ofa-sized-v1", strategy=strategy,
                  budget=budget, seed=seed).run()


def test_linas_beats_random_and_nsga2_on_a_huge_space_at_a_small_budget():
    assert SPACE.count() > 10**18
    results = {name: _run(name, 60, seed=0) for name in ("linas", "random", "nsga2")}
    F = {name: np.array([[-p.values["accuracy"], p.values["latency_ms"]] for p in r.points]) for name, r in results.items()}
    everything = np.vstack(list(F.values()))  # one scale for all three
    hv = {name: normalised_hypervolume(f, scale=everything) for name, f in F.items()}
    assert all(r.n_evaluations == 60 for r in results.values())
    assert hv["linas"] > hv["random"] and hv["linas"] > hv["nsga2"], hv


def test_linas_inner_search_finds_a_better_predicted_front_than_its_nsga2_alone():
    """The Pareto local search after the pymoo run moves the predicted front (here: with the true objectives as models)."""

    class Exact:
        def __init__(self, name):
            self.name = name

        def predict(self, feats):
            cost = feats @ _COST
            if self.name == "latency_ms":
                return np.round(cost)
            s = feats @ _MIX
            return 60 + 20 * (1 - np.exp(-cost / 40)) + 1.5 * np.tanh(s[:, 0]) * np.tanh(s[:, 1]) + np.sin(s[:, 2])

    search = Search(SPACE, OBJECTIVES, evaluate=evaluate, evaluate_name="ofa-sized-v1", budget=20, seed=0,
                    strategy=LINAS(n_init=20))
    search.run()
    strategy = search.strategy
    models = {n: Exact(n) for n in ("accuracy", "latency_ms")}
    measured = strategy.measured()
    front = strategy._measured_front(measured)
    start = time.perf_counter()
    X = strategy._inner_search(models, measured)
    took = time.perf_counter() - start
    strategy.local_rounds = 0
    X0 = strategy._inner_search(models, measured)
    truth = lambda X: np.array([[-r["accuracy"], r["latency_ms"]] for r in map(evaluate, map(SPACE.decode, X))])  # noqa: E731
    both = np.vstack([truth(X), truth(X0), truth(front)])
    assert normalised_hypervolume(truth(X), scale=both) > normalised_hypervolume(truth(X0), scale=both)
    assert len(set(SPACE.keys(X))) == len(X)  # de-duplicated by canonical key
    assert not set(SPACE.keys(X)) & set(SPACE.keys(front))  # nothing measured is proposed again
    assert took < 10.0
