"""LINAS's ceiling on the large problems: the same search with the true accuracy in place of its predictor.

On the OFA yardsticks of ``sliver.bench.ofa``, LINAS runs as in
``benchmarks/search_large.py`` (same seeds, budget and scoring), except that every
prediction is the problem's exact value (OFA's published accuracy predictor is the
ground truth there, so it can stand in for LINAS's GP); the inner search, the batch
selection by expected hypervolume improvement and everything else are unchanged.
The gap between this ceiling and LINAS's own median share (``search_large.json``)
is what a better predictor could still win; the ceiling's own gap to the reference
front is what the search machinery leaves.

Every finished run is kept in ``--work`` and skipped by a rerun.

    python benchmarks/search_large_ceiling.py [--problems ofa-mbv3,ofa-resnet50] [--seeds 5] [--budget 1000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import ofa_data_dir, write_result  # noqa: E402
from benchmarks.search_large import common_arguments, load_problem  # noqa: E402

BUDGETS = (100, 500, 1000)
RESULTS = Path(__file__).resolve().parent / "results" / "search_large.json"


def exact_linas(problem):
    """A LINAS whose predictions are ``problem``'s exact values (no predictor is fitted)."""
    from sliver.search.linas import LINAS

    class ExactLINAS(LINAS):
        name = "linas-exact"

        def _fit(self, measured) -> dict:
            return {}

        def _exact(self, X: np.ndarray) -> np.ndarray:
            values = problem.values_batch(X)
            return np.column_stack([values[o.name] for o in self.problem.objectives]) * self.problem.signs

        def _predict_mean(self, X, models):
            return self._exact(X), np.ones(len(X), dtype=bool)

        def _predict(self, X, models, eps=None):
            exact = self._exact(X)
            return exact, None if eps is None else np.broadcast_to(exact, (len(eps),) + exact.shape), {}

    return ExactLINAS()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_arguments(ap, work="/tmp/sliver-search-large-ceiling")
    args = ap.parse_args()
    from sliver.bench.runner import run_problem

    data = ofa_data_dir(args.data)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    budgets = [b for b in BUDGETS if b <= args.budget] or [args.budget]
    linas = json.loads(RESULTS.read_text())["table"] if RESULTS.exists() else {}
    table, parts, started = {}, [], time.perf_counter()
    for name in [p.strip() for p in args.problems.split(",") if p.strip()]:
        problem = load_problem(name, data)
        runs = []
        for seed in range(args.seeds):
            path = work / f"{name}-exact-{seed}-{args.budget}.json"
            if not path.exists():
                t0 = time.perf_counter()
                score = run_problem(problem, exact_linas(problem), seed, args.budget)
                path.write_text(json.dumps({**score.to_dict(budgets), "strategy": "linas-exact", "wall_s": round(time.perf_counter() - t0, 1)}))
            runs.append(json.loads(path.read_text()))
            print(f"{name} exact-prediction LINAS seed {seed}: "
                  + ", ".join(f"{b}: {runs[-1]['hv_ratio_at'][str(b)]:.4f}" for b in budgets), flush=True)
        ceiling = {str(b): float(np.median([r["hv_ratio_at"][str(b)] for r in runs])) for b in budgets}
        own = linas.get(name, {}).get("linas", {}).get("median_hv_ratio_at", {})
        table[name] = {"exact_prediction": {"median_hv_ratio_at": ceiling, "runs": runs},
                       "linas_median_hv_ratio_at": own}
        parts.append(f"{name} at {' / '.join(map(str, budgets))}: exact-prediction LINAS "
                     + " / ".join(f"{ceiling[str(b)]:.3f}" for b in budgets)
                     + (" vs LINAS " + " / ".join(f"{own[str(b)]:.3f}" for b in budgets) if own else ""))
    figure = f"median HV share of the reference front ({args.seeds} seeds): " + " | ".join(parts)
    write_result("search_large_ceiling", figure, "information: the share a perfect predictor would give LINAS",
                 True, table, seconds=round(time.perf_counter() - started, 1))
    print(figure)


if __name__ == "__main__":
    main()
