"""LINAS's ceiling on the large problems: the same search with the true accuracy in place of its predictor.

On the OFA yardsticks of ``sliver.bench.ofa``, LINAS runs as in
``benchmarks/search_large.py`` (same seeds, budget and scoring), except that every
prediction is the problem's exact value (OFA's published accuracy predictor is the
ground truth there, so it can stand in for LINAS's GP); the inner search, the batch
selection by expected hypervolume improvement and everything else are unchanged.
The gap between this ceiling and LINAS's own median share (``search_large.json``)
is what a better predictor could still win; the ceiling's own gap to the reference
front is what the search machinery leaves.

Between the two, ``--sigmas`` runs LINAS with the exact accuracy plus a fixed error
of ``sigma`` points per network (Gaussian, drawn from a hash of the network, so a
network is always mispredicted the same way, and its draws spread by ``sigma``): a
predictor as good everywhere as one that never learns more. It says how precise an
accuracy predictor must be for LINAS to reach a given share; beside it, the share
of same-size pairs near the reference front that such a predictor orders right
(as ``search_large_predictors.py`` scores LINAS's own predictors).

For scale, the same seeds also run pymoo's NSGA-II on the exact values with a
hundred times LINAS's budget (``--long-evals`` unique networks, population
``--long-pop``): the share it holds after 10,000 and 100,000 networks says how
hard the reference front (built from over a million evaluations, see
``reference_fronts_ofa.py``) is to reach for an optimiser that needs no predictor.

Every finished run is kept in ``--work`` and skipped by a rerun.

    python benchmarks/search_large_ceiling.py [--problems ofa-mbv3,ofa-resnet50] [--seeds 5] [--budget 1000]
        [--long-evals 100000] [--long-pop 1000] [--sigmas 0.2,0.5]
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
#: unique networks at which the long exact NSGA-II run is scored
LONG_BUDGETS = (10_000, 100_000)
RESULTS = Path(__file__).resolve().parent / "results" / "search_large.json"


def fixed_error(problem, X: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian error of ``sigma`` per encoded row, the same for every row of one network (drawn from its hash)."""
    import hashlib

    from scipy.special import ndtri

    keys = problem.space.keys(X)
    u = np.array([int.from_bytes(hashlib.blake2b(k, digest_size=8).digest(), "little") for k in keys], dtype=np.float64)
    return sigma * ndtri((u + 0.5) / 2.0**64)


def exact_linas(problem, sigma: float = 0.0):
    """A LINAS whose predictions are ``problem``'s exact values (no predictor is fitted), the quality metric off by
    :func:`fixed_error` when ``sigma`` > 0 (its draws then spread by ``sigma``)."""
    from sliver.search.linas import LINAS

    quality = problem.objectives[0].name

    class ExactLINAS(LINAS):
        name = "linas-exact" if not sigma else f"linas-sigma-{sigma:g}"

        def _fit(self, measured) -> dict:
            return {}

        def _exact(self, X: np.ndarray) -> np.ndarray:
            values = problem.values_batch(X)
            if sigma:
                values[quality] = values[quality] + fixed_error(problem, X, sigma)
            return np.column_stack([values[o.name] for o in self.problem.objectives]) * self.problem.signs

        def _predict_mean(self, X, models):
            return self._exact(X), np.ones(len(X), dtype=bool)

        def _predict(self, X, models, eps=None):
            exact = self._exact(X)
            if eps is None:
                return exact, None, {}
            draws = np.broadcast_to(exact, (len(eps),) + exact.shape).copy()
            if sigma:  # the quality column (min-oriented) spreads by sigma; eps's first column is its normals
                draws[:, :, 0] += (eps[:, 0] * sigma)[:, None]
            return exact, draws, {}

    return ExactLINAS()


def same_size_share(problem, sigma: float) -> float:
    """Share of same-size pairs near the reference front that a ``sigma``-error predictor orders right."""
    from benchmarks.search_large_predictors import ordered_share, reference_networks

    X = reference_networks(problem, 3000)
    truth = problem.values_batch(X)
    quality, cost = (o.name for o in problem.objectives[:2])
    return ordered_share(truth[quality] + fixed_error(problem, X, sigma), truth[quality], truth[cost])


def long_nsga2(problem, seed: int, evals: int, pop: int) -> dict[str, float]:
    """HV share of the reference front after each of ``LONG_BUDGETS`` (up to ``evals``) unique networks of a pymoo NSGA-II
    run on ``problem``'s exact values (all of them vectorised, so a hundred thousand networks take minutes)."""
    from pymoo.core.evaluator import Evaluator
    from pymoo.core.problem import Problem as PymooProblem

    from sliver.search.evolutionary import make_algorithm
    from sliver.space import row_keys

    space, first_seen = problem.space, {}  # each distinct network's row, in the order the run first scored it
    card = space.gene_cardinalities

    class Exact(PymooProblem):
        def __init__(self):
            super().__init__(n_var=len(card), n_obj=len(problem.objective_names), xl=np.zeros(len(card)), xu=card - 1, vtype=int)

        def _evaluate(self, x, out, *args, **kwargs):
            x = space.canonical_vectors(np.rint(x).astype(np.int64))
            for key, row in zip(row_keys(x), x):
                first_seen.setdefault(key, row)
            out["F"] = problem.minimised(problem.values_batch(x))

    exact = Exact()
    algorithm = make_algorithm("nsga2", pop, len(problem.objective_names))
    algorithm.setup(exact, seed=seed, verbose=False)
    while len(first_seen) < evals:  # generations repeat networks: run until enough distinct ones are scored
        offspring = algorithm.ask()
        Evaluator().eval(exact, offspring)
        algorithm.tell(infills=offspring)
    X = np.stack(list(first_seen.values()))
    return {str(b): problem.hv_ratio_array(problem.normalise_array(problem.minimised(problem.values_batch(X[:b]))))
            for b in LONG_BUDGETS if b <= len(X)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_arguments(ap, work="/tmp/sliver-search-large-ceiling")
    ap.add_argument("--long-evals", type=int, default=100_000, help="networks of the exact NSGA-II run (0: skip it)")
    ap.add_argument("--long-pop", type=int, default=1000, help="population of the exact NSGA-II run")
    ap.add_argument("--sigmas", default="0.2,0.5", help="accuracy errors (points) of the noisy-prediction runs ('' for none)")
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
        for sigma in [float(v) for v in args.sigmas.split(",") if v.strip()]:
            noisy = []
            for seed in range(args.seeds):
                path = work / f"{name}-sigma{sigma:g}-{seed}-{args.budget}.json"
                if not path.exists():
                    t0 = time.perf_counter()
                    strategy = exact_linas(problem, sigma)
                    score = run_problem(problem, strategy, seed, args.budget)
                    path.write_text(json.dumps({**score.to_dict(budgets), "strategy": strategy.name,
                                                "wall_s": round(time.perf_counter() - t0, 1)}))
                noisy.append(json.loads(path.read_text()))
            at = {str(b): float(np.median([r["hv_ratio_at"][str(b)] for r in noisy])) for b in budgets}
            share = same_size_share(problem, sigma)
            table[name][f"sigma_{sigma:g}"] = {"median_hv_ratio_at": at, "runs": noisy, "same_size_ordered": share}
            print(f"{name} LINAS on exact accuracy +- {sigma:g} points: "
                  + ", ".join(f"{b}: {v:.4f}" for b, v in at.items()) + f" (same-size pairs ordered right {share:.2f})",
                  flush=True)
            parts.append(f"{name} with accuracy known to +-{sigma:g} points (same-size pairs ordered right {share:.2f}): "
                         + " / ".join(f"{at[str(b)]:.3f}" for b in budgets))
        if args.long_evals:
            long_runs = [long_nsga2(problem, seed, args.long_evals, args.long_pop) for seed in range(args.seeds)]
            at = sorted(long_runs[0], key=int)
            long = {b: float(np.median([r[b] for r in long_runs])) for b in at}
            table[name]["exact_nsga2"] = {"median_hv_ratio_at": long, "runs": long_runs, "population": args.long_pop}
            print(f"{name} exact NSGA-II: " + ", ".join(f"{b}: {long[b]:.4f}" for b in at), flush=True)
            parts.append(f"{name} exact NSGA-II at {' / '.join(at)}: " + " / ".join(f"{long[b]:.3f}" for b in at))
    figure = f"median HV share of the reference front ({args.seeds} seeds): " + " | ".join(parts)
    write_result("search_large_ceiling", figure, "information: the share a perfect predictor would give LINAS",
                 True, table, seconds=round(time.perf_counter() - started, 1))
    print(figure)


if __name__ == "__main__":
    main()
