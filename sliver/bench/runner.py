"""Score strategies on a tabular problem: unique evaluations to reach a share of the true hypervolume."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from sliver.bench.nb201 import NB201, nb201_features
from sliver.search.loop import Search
from sliver.store import Origin

TARGETS = (0.99, 0.999)


@dataclass
class RunScore:
    """One seeded run: evaluations to reach each target share (None if not reached), final share, overhead."""

    strategy: str
    seed: int
    reached: dict[float, int | None]
    final: float
    n_evaluations: int
    overhead_s: float

    def to_dict(self) -> dict:
        return {
            "strategy": self.strategy, "seed": self.seed, "final_hv_ratio": self.final, "n_evaluations": self.n_evaluations,
            "overhead_s_per_eval": self.overhead_s, **{f"evals_to_{t:g}": v for t, v in self.reached.items()},
        }


def run_nb201(problem: NB201, strategy: str, seed: int, budget: int, targets=TARGETS, options: dict | None = None) -> RunScore:
    """Run ``strategy`` on ``problem`` (in memory, no store) and stop once the last target is reached.

    LINAS gets the cell's live-op features (:func:`~sliver.bench.nb201.nb201_features`)
    unless ``options`` says otherwise. Scoring happens in the search's per-batch callback; its time is subtracted
    from the search overhead (a real search does not know the true front).
    """
    from sliver.search.hv import hypervolume, nondominated

    ratios: list[float] = []
    front = np.zeros((0, 2))
    done = [0]
    scoring = [0.0]

    def on_batch(points) -> bool:
        nonlocal front
        t0 = time.perf_counter()
        measured = [p for p in points if p.ok and p.origin == Origin.SEARCH]
        for p in measured[done[0]:]:
            front = np.vstack([front, problem.normalise([p.values])])
            front = front[nondominated(front)]
            ratios.append(hypervolume(front, problem.ref_point) / problem.true_hv)
        done[0] = len(measured)
        scoring[0] += time.perf_counter() - t0
        return bool(ratios) and ratios[-1] >= max(targets)

    if strategy == "linas":
        options = {"features": nb201_features, **(options or {})}
    search = Search(problem.space, problem.evaluator(), ["accuracy", "latency_ms"], strategy, budget=budget, seed=seed,
                    on_batch=on_batch, strategy_options=options)
    result = search.run()
    reached = {t: next((i + 1 for i, r in enumerate(ratios) if r >= t), None) for t in targets}
    overhead = (result.search_seconds - scoring[0]) / max(result.n_evaluations, 1)
    return RunScore(strategy, seed, reached, ratios[-1] if ratios else 0.0, result.n_evaluations, overhead)


def median_reached(scores: list[RunScore], target: float, budget: int) -> str:
    """Median evaluations to ``target`` over seeds, written ``>budget`` when most seeds did not reach it."""
    vals = sorted(s.reached[target] if s.reached[target] is not None else np.inf for s in scores)
    med = float(np.median(vals))
    return f">{budget}" if not np.isfinite(med) else f"{med:g}"
