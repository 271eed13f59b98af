"""Reference fronts of the OFA problems (sliver.bench.ofa) from over a million cheap evaluations each.

The true Pareto front of a 10^13-10^20 network space is unknowable, so a
search on these problems is scored against the best front we can afford:
pymoo NSGA-II with a large population on the vectorised evaluation, run from
``--restarts`` seeds (every non-dominated point any run evaluates is kept in
one archive, not only the last population), then local refinement: every
single-gene move and every setting of one block's genes (with its stage deep
enough to run it) around every front member, repeated until a round adds
nothing to the front. The fronts are
written to ``sliver/bench/data/ofa_<problem>_front.json`` (values, configs as
gene strings, evaluation count, seconds, the command) for
``OFAProblem.hv_ratio``; the run's summary to ``benchmarks/results/reference_fronts_ofa.json``.

    python benchmarks/reference_fronts_ofa.py [--problems ofa-mbv3,ofa-resnet50] [--evals 1000000] [--restarts 2]
        [--evals3 300000] [--pop 1000]

With parameters as a third objective, every evaluated point is nearly
non-dominated somewhere and an archive grows without end, so that front is
NSGA-II's last population (spread by its crowding distance), from fewer
evaluations.

Needs ``../shared/data/ofa`` (or ``$SLIVER_DATA``). One core: set before numpy loads.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from _common import data_dir, skip, write_result  # noqa: E402

#: the objective sets a front is made for (accuracy and MACs; with parameters as a third objective)
OBJECTIVE_SETS = (("accuracy", "macs"), ("accuracy", "macs", "params"))


class Archive:
    """Every non-dominated (canonical) config evaluated so far, with its values; counts evaluations."""

    def __init__(self, problem, keep: bool = True):
        self.problem, self.keep = problem, keep
        self.X = np.zeros((0, problem.space.n_genes), dtype=np.int64)
        self.F = np.zeros((0, len(problem.objective_names)))
        self.values: dict[str, np.ndarray] = {}
        self.n_evals = 0

    def evaluate(self, X: np.ndarray) -> np.ndarray:
        """Normalised minimised objectives of ``X``; the non-dominated ones join the archive."""
        X = self.problem.space.canonical_vectors(X)
        values = self.problem.values_batch(X)
        F = self.problem.normalise_array(self.problem.minimised(values))
        self.n_evals += len(X)
        if self.keep:
            self.merge(X, F, values)
        return F

    def merge(self, X: np.ndarray, F: np.ndarray, values: dict[str, np.ndarray]) -> int:
        """Add rows, keep the non-dominated unique ones; returns how many new rows survived."""
        old = len(self.X)
        allX = np.vstack([self.X, X])
        allF = np.vstack([self.F, F])
        allV = {k: np.concatenate([self.values.get(k, np.zeros(0)), v]) for k, v in values.items()}
        _, first = np.unique(allX, axis=0, return_index=True)
        first = np.sort(first)
        keep = first[nondominated(allF[first])]
        self.X, self.F = allX[keep], allF[keep]
        self.values = {k: v[keep] for k, v in allV.items()}
        return int((keep >= old).sum())


def nondominated(F: np.ndarray) -> np.ndarray:
    """Non-dominated mask of distinct rows (minimisation); 3-D by a sweep, since the pairwise test needs n^2 memory."""
    from sliver.search.hv import nondominated as pairwise

    if F.shape[1] != 3:
        return pairwise(F)
    import bisect

    keep = np.zeros(len(F), dtype=bool)
    # in order of f0 (ties by f1, f2), a row is dominated iff an earlier row is no worse in f1 and f2: a 2-D
    # staircase of the kept rows' (f1, f2), f1 ascending and f2 descending, answers that in log time
    xs: list[float] = []
    ys: list[float] = []
    for i in np.lexsort((F[:, 2], F[:, 1], F[:, 0])):
        f1, f2 = F[i, 1], F[i, 2]
        j = bisect.bisect_right(xs, f1)
        if j > 0 and ys[j - 1] <= f2:
            continue
        keep[i] = True
        k = j
        while k < len(xs) and ys[k] >= f2:  # the kept rows this one now shadows in (f1, f2)
            k += 1
        xs[j:k], ys[j:k] = [f1], [f2]
    return keep


def neighbours(problem, X: np.ndarray) -> np.ndarray:
    """Every config one gene away from a row of ``X`` (every other choice of every gene)."""
    card = problem.space.gene_cardinalities
    out = []
    for g, c in enumerate(card):
        for shift in range(1, c):
            Y = X.copy()
            Y[:, g] = (Y[:, g] + shift) % c
            out.append(Y)
    return np.vstack(out)


def nsga2(problem, archive: Archive, evals: int, pop: int, seed: int) -> np.ndarray:
    """pymoo NSGA-II (integer genes: SBX and polynomial mutation with rounding) for ``evals`` evaluations."""
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.problem import Problem
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.operators.sampling.rnd import IntegerRandomSampling
    from pymoo.optimize import minimize

    card = problem.space.gene_cardinalities

    class Vectorised(Problem):
        def __init__(self):
            super().__init__(n_var=len(card), n_obj=len(problem.objective_names), xl=0, xu=card - 1, vtype=int)

        def _evaluate(self, X, out, *args, **kwargs):
            out["F"] = archive.evaluate(np.rint(X).astype(np.int64))

    algorithm = NSGA2(pop_size=pop, sampling=IntegerRandomSampling(),
                      crossover=SBX(prob=0.9, eta=15, vtype=float, repair=RoundingRepair()),
                      mutation=PM(eta=20, vtype=float, repair=RoundingRepair()), eliminate_duplicates=True)
    result = minimize(Vectorised(), algorithm, ("n_eval", evals), seed=seed, verbose=False)
    return np.rint(np.atleast_2d(result.opt.get("X"))).astype(np.int64)  # the last population's first front


def block_moves(problem, X: np.ndarray) -> np.ndarray:
    """Every setting of one block's own genes at once, with its stage deep enough for the block to run.

    A single-gene move cannot add a block and choose its kernel and expand
    ratio together; the block it adds runs at the first choices, often a
    dominated step that the refinement would never take.
    """
    from itertools import product

    n_blocks = problem.active_blocks(X[:1]).shape[1]
    depth = problem.columns["d"]
    card = problem.space.gene_cardinalities
    # which depth gene gates each block, and its smallest choice that runs the block (found by probing from the
    # shallowest network; a block that always runs gets a no-op entry)
    probe = np.zeros((1, problem.space.n_genes), dtype=np.int64)
    needs = {}
    for g in range(depth.start, depth.stop):
        for choice in range(card[g]):
            Y = probe.copy()
            Y[0, g] = choice
            for b in np.flatnonzero(problem.active_blocks(Y)[0]):
                needs.setdefault(int(b), (g, choice))
    out = []
    for b in range(n_blocks):
        genes = [problem.columns[name].start + b for name in problem.gated]
        for values in product(*(range(card[g]) for g in genes)):
            Y = X.copy()
            if b in needs:
                g, choice = needs[b]
                Y[:, g] = np.maximum(Y[:, g], choice)
            Y[:, genes] = values
            out.append(Y)
    return np.vstack(out)


def refine(problem, archive: Archive, max_rounds: int = 200) -> int:
    """Single-gene and whole-block moves around every front member until a round adds nothing; returns the rounds run."""
    tried: set[bytes] = set()
    for round_ in range(1, max_rounds + 1):
        fresh = np.array([x for x in archive.X if x.tobytes() not in tried])
        if len(fresh) == 0:
            return round_ - 1
        tried.update(x.tobytes() for x in fresh)
        before = {x.tobytes() for x in archive.X}
        for chunk in np.array_split(fresh, max(1, len(fresh) // 500)):
            archive.evaluate(neighbours(problem, chunk))
            archive.evaluate(block_moves(problem, chunk))
        print(f"  refinement round {round_}: {len(fresh)} members moved, front {len(archive.X)}, "
              f"{archive.n_evals:,} evaluations", flush=True)
        if {x.tobytes() for x in archive.X} == before:
            return round_
    return max_rounds


def build(name: str, objectives: tuple[str, ...], evals: int, pop: int, seed: int, root, restarts: int = 1) -> dict:
    from sliver.bench.ofa import PROBLEMS
    from sliver.search.hv import hypervolume

    problem = PROBLEMS[name](objectives, root)
    # with three objectives every evaluated point is nearly non-dominated somewhere: an archive and its
    # refinement grow without end, so that front is NSGA-II's last population (crowding distance keeps it spread)
    two = len(objectives) == 2
    archive = Archive(problem, keep=two)
    t0 = time.process_time()
    # independent NSGA-II runs into one archive: two seeds' fronts differ by ~0.4 % HV on MBv3, their union by less
    for k in range(restarts if two else 1):
        last = nsga2(problem, archive, evals, pop, seed + k)
    if not two:
        n = archive.n_evals
        archive = Archive(problem)
        archive.evaluate(last)
        archive.n_evals = n
    hv_nsga = hypervolume(archive.F, problem.ref_point)
    n_nsga = archive.n_evals
    print(f"  NSGA-II: front {len(archive.X)}, {n_nsga:,} evaluations, {time.process_time() - t0:.0f} CPU s", flush=True)
    rounds = refine(problem, archive) if two else 0
    seconds = time.process_time() - t0
    hv = hypervolume(archive.F, problem.ref_point)
    order = np.argsort(archive.F[:, 0])
    front = {
        "objectives": list(objectives),
        # MACs and parameters are whole numbers; accuracy keeps every digit so the stored front's hypervolume is exact
        "values": {k: [float(x) if k == "accuracy" else int(x) for x in v[order]] for k, v in archive.values.items()},
        "genes": problem.genes_to_text(archive.X[order]),
        "gene_order": [d.name for d in problem.space.dimensions],
        "n_points": int(len(order)),
        "n_evaluations": int(archive.n_evals),
        "n_evaluations_nsga2": int(n_nsga),
        "nsga2_runs": restarts if two else 1,
        "refine_rounds": int(rounds),
        "cpu_seconds": round(seconds, 1),
        "hypervolume": hv,
        "hypervolume_nsga2": hv_nsga,
    }
    print(f"{name} {','.join(objectives)}: {len(order)} front points, {archive.n_evals:,} evaluations "
          f"({n_nsga:,} NSGA-II, {rounds} refinement rounds), {seconds:.0f} CPU s; HV {hv:.6f} "
          f"(NSGA-II alone {hv_nsga:.6f})", flush=True)
    return front


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", default="ofa-mbv3,ofa-resnet50")
    ap.add_argument("--evals", type=int, default=1_000_000, help="NSGA-II evaluations per problem and objective set")
    ap.add_argument("--evals3", type=int, default=300_000,
                    help="NSGA-II evaluations for the three-objective front (its last population, no refinement)")
    ap.add_argument("--pop", type=int, default=1000)
    ap.add_argument("--restarts", type=int, default=2, help="NSGA-II runs (seeds seed, seed+1, ...) for an accuracy x MACs front")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=None)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "sliver" / "bench" / "data"))
    ap.add_argument("--result-name", default="reference_fronts_ofa", help="benchmarks/results/<name>.json (a check run: another name)")
    args = ap.parse_args()
    root = data_dir(args.data)
    if not (root / "ofa" / "acc_predictor.pth").is_file():
        skip(f"OFA predictors not found under {root / 'ofa'} (set SLIVER_DATA)")
    from sliver.bench.ofa import PROBLEMS

    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/reference_fronts_ofa.py", *sys.argv[1:]])
    table, summary, cpus = [], [], []
    for name in args.problems.split(","):
        t0 = time.perf_counter()
        fronts = {",".join(o): build(name, o, args.evals if len(o) == 2 else args.evals3, args.pop, args.seed, root, args.restarts) for o in OBJECTIVE_SETS}
        wall = time.perf_counter() - t0
        path = Path(args.out) / PROBLEMS[name].front_file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"problem": name, "command": command, "seed": args.seed, "fronts": fronts},
                                   separators=(",", ":")) + "\n")
        for key, f in fronts.items():
            table.append({"problem": name, **{k: v for k, v in f.items() if k not in ("values", "genes", "objectives")},
                          "objectives": key, "problem_wall_seconds": round(wall, 1),
                          "file_kb": round(path.stat().st_size / 1024, 1)})
        two = fronts["accuracy,macs"]
        cpu = sum(f["cpu_seconds"] for f in fronts.values())
        summary.append(f"{name} {two['n_points']} points from {two['n_evaluations']:,} evaluations "
                       f"(refinement +{100 * (two['hypervolume'] / two['hypervolume_nsga2'] - 1):.3f} % HV), "
                       f"{cpu:.0f} CPU s ({wall:.0f} s wall) for both objective sets")
        cpus.append(cpu)
    # CPU seconds: the machine is shared, so wall time says more about the neighbours than about the script
    met = all(r["n_evaluations"] >= 1_000_000 for r in table if r["objectives"] == "accuracy,macs") and max(cpus) <= 600
    figure = "reference fronts (accuracy x MACs): " + "; ".join(summary)
    write_result(args.result_name, figure, ">= 10^6 evaluations per accuracy x MACs front, <= 10 CPU min per problem",
                 met, table)
    print(figure)


if __name__ == "__main__":
    main()
