"""How well LINAS's predictors rank networks of one size, near the reference front and near LINAS's own.

``search_large_ceiling.py`` shows that the predictor is what holds LINAS back on
OFA-MobileNetV3. This benchmark measures where: each seed runs LINAS as
``search_large.py`` does (same features, budget and seeds) and keeps the networks it
measured, in order. Every predictor family is then fitted on the first 100 and the
first 1,000 of them and scored on two sets of networks a search must rank:

* ``reference``: the reference front and ``--neighbours`` networks one gene away from
  it (seeded): the region the search has to reach;
* ``local``: ``--neighbours`` networks one gene away from the front of the networks the
  predictor was fitted on, none of them measured (seeded): the region the search is in.

Figures per family and set, medians over seeds:

* ``tau``: Kendall's tau between predicted and true accuracy over the set;
* ``same_size``: among pairs whose cost (the problem's second objective, MACs) is within
  3 % and whose accuracy differs by more than 0.05 points, the share the predictor
  orders correctly (0.5 is a coin toss, 1.0 the exact accuracy). A front is made of
  the most accurate network at each size, so this is the ranking that decides it, and
  overall tau hides it: most of the spread in accuracy follows the size;
* ``front_bias`` (reference set only): the mean of predicted minus true accuracy over
  the reference front, in accuracy points. Below zero the predictor takes the best
  networks for worse than they are, so the search has no reason to measure them.

A control separates *where* the training networks lie from *how many* there are: every
family is also fitted on as many networks placed within two genes of the reference
front (seeded per seed, none in the reference set) and scored on the reference set
(``placed_same_size``, ``placed_front_bias``): what a search that had already found the
region would know after that many measurements.

Every LINAS run is kept in ``--work`` and reused by a rerun.

    python benchmarks/search_large_predictors.py [--problems ofa-mbv3,ofa-resnet50] [--seeds 3] [--budget 1000]
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import ofa_data_dir, write_result  # noqa: E402
from benchmarks.search_large import common_arguments, load_problem  # noqa: E402

FAMILIES = ("gp", "gp_additive", "ridge", "lgbm", "mlp", "ensemble")
PREFIXES = (100, 1000)
SAME_SIZE = 0.03  # |difference of log cost| below which two networks count as one size
MIN_GAP = 0.05  # accuracy points: closer pairs are ties for any front that matters


def measured_by_linas(problem, seed: int, budget: int, work: Path) -> np.ndarray:
    """Encoded rows of the networks a seeded LINAS run measured, in measurement order (kept in ``work``)."""
    from sliver.search import Search

    path = work / f"{problem.name}-linas-{seed}-{budget}.npy"
    if path.exists():
        return np.load(path)
    features = getattr(problem, "linas_features", None)
    options = {"features": features} if features is not None else None
    result = Search(problem.space, problem.evaluator(), [o.name for o in problem.objectives], "linas", budget=budget,
                    seed=seed, strategy_options=options).run()
    X = problem.space.encode_many([p.config for p in result.points if p.ok])
    np.save(path, X)
    return X


def one_gene_away(problem, front: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` canonical networks, each one gene away from a random member of ``front`` (seeded)."""
    rng = np.random.default_rng(seed)
    cardinality = problem.space.gene_cardinalities
    rows = front[rng.integers(len(front), size=n)].copy()
    genes = rng.integers(problem.space.n_genes, size=n)
    rows[np.arange(n), genes] = (rows[np.arange(n), genes] + 1 + rng.integers(0, 1 << 30, n) % (cardinality[genes] - 1)) \
        % cardinality[genes]
    return problem.space.canonical_vectors(rows)


def reference_networks(problem, n: int) -> np.ndarray:
    """The reference front, then ``n`` networks one gene away from its members (seeded)."""
    front = problem.text_to_genes(problem.reference["genes"])
    return np.vstack([front, one_gene_away(problem, front, n)])


def placed_networks(problem, n: int, seed: int, scored: set[bytes]) -> np.ndarray:
    """``n`` networks within two genes of the reference front (two random single-gene moves), none of whose keys is in
    ``scored`` (seeded)."""
    front = problem.text_to_genes(problem.reference["genes"])
    rows = one_gene_away(problem, one_gene_away(problem, front, 2 * n, seed=2 * seed + 1), 2 * n, seed=2 * seed + 2)
    keys = problem.space.keys(rows)
    keep = list({k: i for i, k in enumerate(keys) if k not in scored}.values())[:n]
    return rows[keep]


def local_networks(problem, X: np.ndarray, n: int) -> np.ndarray:
    """Unmeasured networks one gene away from the front of the measured rows ``X`` (up to ``n``, seeded)."""
    from sliver.search.hv import nondominated

    front = X[nondominated(problem.minimised(problem.values_batch(X)))]
    measured = set(problem.space.keys(X))
    rows = one_gene_away(problem, front, n)
    keep = [k not in measured for k in problem.space.keys(rows)]
    return np.unique(rows[keep], axis=0)


def same_size_pairs(accuracy: np.ndarray, cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(i, j)`` of one size (within ``SAME_SIZE`` in log cost) whose accuracy differs by over ``MIN_GAP``."""
    i, j = np.triu_indices(len(cost), 1)
    keep = (np.abs(np.log(cost[i]) - np.log(cost[j])) < SAME_SIZE) & (np.abs(accuracy[i] - accuracy[j]) > MIN_GAP)
    return i[keep], j[keep]


def ordered_share(pred: np.ndarray, accuracy: np.ndarray, cost: np.ndarray) -> float:
    """The share of same-size pairs (see :func:`same_size_pairs`) that ``pred`` orders as ``accuracy`` does."""
    i, j = same_size_pairs(accuracy, cost)
    return float(np.mean(np.sign(pred[i] - pred[j]) == np.sign(accuracy[i] - accuracy[j])))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_arguments(ap, work="/tmp/sliver-search-large-predictors")
    ap.set_defaults(seeds=3)
    ap.add_argument("--neighbours", type=int, default=3000, help="networks one gene away from the reference front")
    args = ap.parse_args()
    from sliver.predict import Predictor, kendall_tau
    from sliver.predict.features import features_from_vectors

    data = ofa_data_dir(args.data)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    prefixes = [n for n in PREFIXES if n <= args.budget] or [args.budget]
    table, parts, started = {}, [], time.perf_counter()
    for name in [p.strip() for p in args.problems.split(",") if p.strip()]:
        problem = load_problem(name, data)
        quality, cost = (o.name for o in problem.objectives[:2])
        features = getattr(problem, "linas_features", None) or partial(features_from_vectors, problem.space)
        reference = reference_networks(problem, args.neighbours)
        scored = set(problem.space.keys(reference))
        n_front = len(problem.reference["genes"])
        scores: dict[str, dict[str, list]] = {
            f"{f}@{n}": {"tau": [], "same_size": [], "front_bias": [], "local_tau": [], "local_same_size": [],
                         "placed_same_size": [], "placed_front_bias": []}
            for f in FAMILIES for n in prefixes}
        for seed in range(args.seeds):
            X = measured_by_linas(problem, seed, args.budget, work)
            y = problem.values_batch(X)[quality]
            ref_truth = problem.values_batch(reference)
            for n in prefixes:
                local = local_networks(problem, X[:n], args.neighbours)
                placed = placed_networks(problem, n, seed, scored)
                y_placed = problem.values_batch(placed)[quality]
                for family in FAMILIES:
                    model = Predictor(family, seed=seed).fit(features(X[:n]), y[:n])
                    s = scores[f"{family}@{n}"]
                    for prefix, T in (("", reference), ("local_", local)):
                        truth = problem.values_batch(T)
                        pred = model.predict(features(T))
                        s[f"{prefix}tau"].append(kendall_tau(pred, truth[quality]))
                        s[f"{prefix}same_size"].append(ordered_share(pred, truth[quality], truth[cost]))
                        if not prefix:
                            s["front_bias"].append(float(np.mean(pred[:n_front] - truth[quality][:n_front])))
                    pred = Predictor(family, seed=seed).fit(features(placed), y_placed).predict(features(reference))
                    s["placed_same_size"].append(ordered_share(pred, ref_truth[quality], ref_truth[cost]))
                    s["placed_front_bias"].append(float(np.mean(pred[:n_front] - ref_truth[quality][:n_front])))
            print(f"{name} seed {seed}: " + ", ".join(f"{k} {v['same_size'][-1]:.3f}/{v['local_same_size'][-1]:.3f}"
                                                       for k, v in scores.items()), flush=True)
        medians = {k: {m: float(np.median(v)) for m, v in s.items()} for k, s in scores.items()}
        table[name] = {"reference_networks": len(reference), "median": medians, "runs": scores}
        parts.append(f"{name} same-size pairs ordered right at {' / '.join(map(str, prefixes))} measurements, "
                     "near the reference front | near LINAS's own | near the reference front, fitted on as many "
                     "networks placed within two genes of it: "
                     + ", ".join(f"{f} " + " | ".join(" / ".join(f"{medians[f'{f}@{n}'][m]:.2f}" for n in prefixes)
                                                      for m in ("same_size", "local_same_size", "placed_same_size"))
                                 for f in FAMILIES))
    figure = f"median of {args.seeds} seeds | " + " | ".join(parts)
    write_result("search_large_predictors", figure, "information: how well each predictor ranks networks of one size",
                 True, table, seconds=round(time.perf_counter() - started, 1))
    print(figure)


if __name__ == "__main__":
    main()
