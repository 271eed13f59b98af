"""Score strategies on a benchmark problem: the hypervolume ratio after every unique evaluation.

A benchmark problem (:class:`~sliver.bench.nb201.NB201`, the OFA problems of
:mod:`sliver.bench.ofa`) offers ``space``, ``objectives``, ``evaluator()``,
``ref_point``, ``true_hv``, ``normalise(values)`` (measured value dicts ->
normalised rows to minimise) and ``linas_features`` (LINAS's predictor
features, or None for the space's one-hot). :func:`run_problem` runs one
strategy on one seed and records the share of the true (or reference)
hypervolume after each unique evaluation; a run then reports that share at
fixed budgets and the evaluations it took to reach each target share.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from sliver.search.loop import Search
from sliver.store import Origin

TARGETS = (0.99, 0.999)
#: the budgets a run reports its hypervolume ratio at (plus its final budget)
BUDGETS = (100, 500, 1000)


@dataclass
class RunScore:
    """One seeded run: evaluations to reach each target share (None if not reached), final share, overhead.

    ``ratios[i]`` is the share after ``i + 1`` unique evaluations. ``overhead_s``
    is wall seconds per evaluation spent outside evaluations and scoring,
    ``overhead_cpu_s`` the same in this process's CPU time.
    """

    strategy: str
    seed: int
    reached: dict[float, int | None]
    final: float
    n_evaluations: int
    overhead_s: float
    overhead_cpu_s: float = 0.0
    ratios: list[float] = field(default_factory=list, repr=False)

    def at(self, budget: int) -> float | None:
        """The share after ``budget`` unique evaluations (None if the run stopped before)."""
        return self.ratios[budget - 1] if 0 < budget <= len(self.ratios) else None

    def to_dict(self, budgets=()) -> dict:
        return {
            "strategy": self.strategy, "seed": self.seed, "final_hv_ratio": self.final, "n_evaluations": self.n_evaluations,
            "overhead_s_per_eval": self.overhead_s, "overhead_cpu_s_per_eval": self.overhead_cpu_s,
            **{f"evals_to_{t:g}": v for t, v in self.reached.items()},
            **({"hv_ratio_at": {str(b): self.at(b) for b in budgets}} if budgets else {}),
        }


class _Timed:
    """An evaluator that adds up the CPU seconds its measurements take (so the runner can leave them out)."""

    def __init__(self, inner):
        self.inner = inner
        self.space, self.objectives = inner.space, inner.objectives
        self.supernet_hash, self.fingerprint = inner.supernet_hash, inner.fingerprint
        self.cpu = 0.0
        if hasattr(inner, "measure_vectors"):  # a whole population's cheap metrics in one call, as without the wrapper
            self.measure_vectors = self._measure_vectors

    def fingerprint_for(self, objective: str) -> str:
        return self.inner.fingerprint_for(objective)

    def measure(self, config, objectives):
        return self._timed(self.inner.measure, config, objectives)

    def _measure_vectors(self, X, objectives):
        return self._timed(self.inner.measure_vectors, X, objectives)

    def _timed(self, call, *args):
        t0 = time.process_time()
        try:
            return call(*args)
        finally:
            self.cpu += time.process_time() - t0


def run_problem(problem, strategy: str, seed: int, budget: int, targets=TARGETS, options: dict | None = None,
                stop_at_target: bool = False) -> RunScore:
    """Run ``strategy`` on ``problem`` (in memory, no store) for ``budget`` unique evaluations.

    The share of ``problem.true_hv`` is recorded after every unique evaluation;
    with ``stop_at_target`` the run stops once the last target is reached.
    LINAS gets ``problem.linas_features`` unless ``options`` says otherwise.
    Scoring happens in the search's per-batch callback; its time (and the
    evaluations') is left out of the overhead, since a real search neither
    knows the true front nor chooses how long a measurement takes.
    """
    from sliver.search.hv import hypervolume, nondominated

    ratios: list[float] = []
    front = np.zeros((0, len(problem.objectives)))
    done = [0]
    scoring, scoring_cpu = [0.0], [0.0]

    def on_batch(points) -> bool:
        nonlocal front
        t0, c0 = time.perf_counter(), time.process_time()
        measured = [p for p in points if p.ok and p.origin == Origin.SEARCH]
        for p in measured[done[0]:]:
            front = np.vstack([front, problem.normalise([p.values])])
            front = front[nondominated(front)]
            ratios.append(hypervolume(front, problem.ref_point) / problem.true_hv)
        done[0] = len(measured)
        scoring[0] += time.perf_counter() - t0
        scoring_cpu[0] += time.process_time() - c0
        return stop_at_target and bool(ratios) and ratios[-1] >= max(targets)

    features = getattr(problem, "linas_features", None)
    if strategy == "linas" and features is not None:
        options = {"features": features, **(options or {})}
    evaluator = _Timed(problem.evaluator())
    names = [o.name for o in problem.objectives]
    search = Search(problem.space, evaluator, names, strategy, budget=budget, seed=seed, on_batch=on_batch,
                    strategy_options=options)
    c0 = time.process_time()
    result = search.run()
    cpu = time.process_time() - c0
    reached = {t: next((i + 1 for i, r in enumerate(ratios) if r >= t), None) for t in targets}
    n = max(result.n_evaluations, 1)
    overhead = (result.search_seconds - scoring[0]) / n
    overhead_cpu = max(cpu - evaluator.cpu - scoring_cpu[0], 0.0) / n
    return RunScore(strategy, seed, reached, ratios[-1] if ratios else 0.0, result.n_evaluations, overhead, overhead_cpu,
                    ratios)


def run_nb201(problem, strategy: str, seed: int, budget: int, targets=TARGETS, options: dict | None = None) -> RunScore:
    """:func:`run_problem` stopping once the last target is reached (NB201's evaluations-to-target figures)."""
    return run_problem(problem, strategy, seed, budget, targets, options, stop_at_target=True)


def median_reached(scores: list[RunScore], target: float, budget: int) -> str:
    """Median evaluations to ``target`` over seeds, written ``>budget`` when most seeds did not reach it."""
    vals = sorted(float(v) if (v := s.reached[target]) is not None else np.inf for s in scores)
    med = float(np.median(vals))
    return f">{budget}" if not np.isfinite(med) else f"{med:g}"


def report_budgets(budget: int, budgets=BUDGETS) -> list[int]:
    """The fixed budgets below ``budget``, and ``budget`` itself."""
    return sorted({b for b in budgets if b < budget} | {budget})
