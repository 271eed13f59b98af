"""How good must the accuracy predictor be to reach 99% of NB201's hypervolume in 100 evaluations (99.9% in 300)?

A yardstick for ``search_nb201``: a greedy search that knows every network's
latency exactly and its accuracy only to within ``sigma`` points (the true
accuracy plus a fixed Gaussian error per network: a predictor whose error does
not shrink as points are measured). It measures 10 random networks, then each
step the unmeasured network whose predicted point adds the most hypervolume to
the measured front (or, when none adds any, the one predicted nearest the
front). Printed per device and ``sigma``: the median over seeds of the unique
evaluations to 99% and to 99.9% of the true hypervolume, next to how wide the scoring box
is in accuracy points (1.1 x the true front's error span: on ``fpga`` and
``eyeriss`` the front spans only 86.8-94.4%, so 1% of the hypervolume is about
0.08 accuracy points along the whole front).

The second table is what sliver's GP reaches: the mean absolute error of its
accuracy prediction on the 300 most accurate networks it has not seen, fitted
on n random networks with the cell features LINAS uses (accuracy does not
depend on the device, so it is one figure per n).

A third table asks the same of latency, on every device: the greedy search knows
latency only as well as the cell predicts it (LightGBM on the one-hot cell, fitted on
the other half of the table: two folds, so every prediction is out of sample) and
accuracy exactly or to within ``--latency-sigmas`` points, and stops at 99%. The table
holds one timing per cell; where those timings scatter around what the cell explains
(``nb201_latency_noise``), the true front is partly cells that happened to be timed
fast, which a search that predicts latency from the cell, as any search must, finds
only by measuring them; and an error in accuracy then costs more, since more networks
sit close to the front. Where this search needs more than 150 evaluations, the
issue's target asks more than a predictor of that quality can give.

    python benchmarks/search_nb201_oracle.py [--seeds 7] [--sigmas 0.1,0.3,0.5,0.7] [--latency-sigmas 0,0.3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _common import nb201_data_dir, write_result  # noqa: E402

SIX = ["raspi4", "fpga", "gold_6226", "pixel3", "eyeriss", "titan_rtx_1"]
TARGETS, CAP = (0.99, 0.999), 600


def oracle_run(problem, sigma: float, seed: int, latency: np.ndarray | None = None,
               targets=TARGETS) -> dict[float, int | None]:
    """Evaluations a greedy search needs to reach each of ``targets`` (None: not within CAP).

    It knows accuracy to within ``sigma`` points (a fixed Gaussian error per
    network) and latency exactly, or as ``latency`` (ms per table row) predicts it.
    """
    lo, span = problem._bounds  # span: accuracy points and ms per unit of normalised row
    pred = problem.normalised_rows.copy()
    pred[:, 0] += np.random.default_rng(seed).standard_normal(len(pred)) * sigma / span[0]
    if latency is not None:
        pred[:, 1] = (latency - lo[1]) / span[1]
    return greedy_run(problem, pred, seed, targets)


def cross_fitted_latency(problem, seed: int = 0) -> np.ndarray:
    """Each table row's latency as LightGBM predicts it from the one-hot cell, fitted on the other half of the table."""
    from nb201_latency_noise import cell_latency_model, one_hot_cells

    from sliver.bench.nb201 import parse_arch

    X = problem.space.encode_many([{"ops": parse_arch(a)} for a in problem.table["arch_str"]])
    onehot = one_hot_cells(problem.space, X)
    y = problem.table[problem.lat_column].to_numpy(float)
    order = np.random.default_rng(seed).permutation(len(y))
    halves = order[: len(y) // 2], order[len(y) // 2:]
    out = np.empty(len(y))
    for fit, scored in (halves, halves[::-1]):
        out[scored] = cell_latency_model(seed).fit(onehot[fit], y[fit]).predict(onehot[scored])
    return out


def greedy_run(problem, pred: np.ndarray, seed: int, targets=TARGETS) -> dict[float, int | None]:
    """Evaluations to each of ``targets`` (None: not within CAP) for a greedy search guided by ``pred`` (normalised rows).

    Measuring a network reveals its true row; the unmeasured ones are known only by ``pred``.
    """
    from sliver.search.hv import hvi, hypervolume, nondominated

    true = problem.normalised_rows
    rng = np.random.default_rng(seed)
    ref, reached = problem.ref_point, {t: None for t in targets}
    done = np.zeros(len(true), dtype=bool)
    done[rng.choice(len(true), 10, replace=False)] = True
    while done.sum() <= CAP:
        measured = true[done]
        front = measured[nondominated(measured)]
        share = hypervolume(front, ref) / problem.true_hv
        for t in targets:
            if reached[t] is None and share >= t:
                reached[t] = int(done.sum())
        if share >= max(targets):
            break
        cand = np.flatnonzero(~done)
        gain = hvi(front, pred[cand], ref)
        if gain.max() > 0:
            pick = cand[int(np.argmax(gain))]
        else:  # additive epsilon to non-dominance, as LINAS falls back to
            gap = np.min(np.max(pred[cand][:, None, :] - front[None, :, :], axis=2), axis=1)
            pick = cand[int(np.argmin(gap))]
        done[pick] = True
    return reached


def predictor_error(problem, sizes: tuple[int, ...], seeds: int) -> dict[int, float]:
    """Mean absolute accuracy error (points) of sliver's GP on the 300 most accurate unseen networks."""
    from sliver.bench.nb201 import nb201_features, parse_arch
    from sliver.predict import Predictor

    X = nb201_features(np.stack([problem.space.encode({"ops": parse_arch(a)}) for a in problem.table["arch_str"]]))
    acc = problem.table[problem.acc_column].to_numpy(float)
    out = {}
    for n in sizes:
        errs = []
        for seed in range(seeds):
            seen = np.random.default_rng(seed).permutation(len(acc))[:n]
            unseen = np.setdiff1d(np.arange(len(acc)), seen)
            top = unseen[np.argsort(-acc[unseen])][:300]
            model = Predictor("gp", seed=seed, target="rank").fit(X[seen], acc[seen])
            errs.append(float(np.mean(np.abs(model.predict(X[top]) - acc[top]))))
        out[n] = float(np.mean(errs))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="shared data folder (default $SLIVER_DATA or ../shared/data)")
    parser.add_argument("--seeds", type=int, default=7)
    parser.add_argument("--sigmas", default="0.1,0.3,0.5,0.7", help="accuracy errors (points) of the oracle, comma-separated")
    parser.add_argument("--latency-sigmas", default="0,0.3",
                        help="accuracy errors (points) of the oracle that predicts latency from the cell, comma-separated")
    parser.add_argument("--latency-seeds", type=int, default=3)
    args = parser.parse_args()
    root = nb201_data_dir(args.data)
    from sliver.bench.nb201 import NB201

    sigmas = [float(s) for s in args.sigmas.split(",")]
    started, table, summary = time.perf_counter(), [], {}
    print(f"median evaluations to {' / '.join(f'{t:.1%}' for t in TARGETS)} of the true hypervolume (cap {CAP})")
    print(f"{'device':>12} {'box (acc pts)':>13} " + " ".join(f"{'sigma ' + str(s):>13}" for s in sigmas))
    for device in SIX:
        problem = NB201(device, "cifar10", root)
        span = problem._bounds[1]
        box = float(problem.ref_point[0] * span[0])  # the scoring box's width in accuracy points
        cells = []
        for sigma in sigmas:
            runs = [oracle_run(problem, sigma, seed) for seed in range(args.seeds)]
            med = {t: float(np.median([r[t] if r[t] is not None else np.inf for r in runs])) for t in TARGETS}
            med = {t: (v if np.isfinite(v) else None) for t, v in med.items()}
            table.append({"device": device, "sigma": sigma, "box_accuracy_points": round(box, 2),
                          **{f"runs_to_{t:g}": [r[t] for r in runs] for t in TARGETS},
                          **{f"median_to_{t:g}": med[t] for t in TARGETS}})
            summary.setdefault(device, {})[str(sigma)] = {f"{t:g}": med[t] for t in TARGETS}
            cells.append(f"{' / '.join(f'{v:g}' if v is not None else f'>{CAP}' for v in med.values()):>13}")
        print(f"{device:>12} {box:>13.2f} " + " ".join(cells), flush=True)

    first = NB201("raspi4", "cifar10", root)
    latency_sigmas = [float(s) for s in args.latency_sigmas.split(",")]
    print("latency as LightGBM on the cell predicts it (fitted on the other half of the table): median evaluations "
          "to 99% of the true hypervolume")
    print(f"{'device':>16} " + " ".join(f"{'sigma ' + str(s):>10}" for s in latency_sigmas))
    latency_table, beyond = [], {s: [] for s in latency_sigmas}
    for device in first.devices:
        problem = NB201(device, "cifar10", root)
        latency = cross_fitted_latency(problem)
        row = {"device": device}
        for sigma in latency_sigmas:
            runs = [oracle_run(problem, sigma, seed, latency, (0.99,))[0.99] for seed in range(args.latency_seeds)]
            med = float(np.median([r if r is not None else np.inf for r in runs]))
            row[f"sigma_{sigma:g}"] = {"runs_to_0.99": runs, "median_to_0.99": med if np.isfinite(med) else None}
            if med > 150:
                beyond[sigma].append(f"{device} {med:g}" if np.isfinite(med) else f"{device} >{CAP}")
        latency_table.append(row)
        print(f"{device:>16} " + " ".join(f"{str(row[f'sigma_{s:g}']['median_to_0.99'] or f'>{CAP}'):>10}"
                                          for s in latency_sigmas), flush=True)

    errors = predictor_error(first, (100, 300), args.seeds)
    print("sliver GP (rank targets, cell features), mean abs. error on the 300 most accurate unseen networks: "
          + ", ".join(f"{n} random samples {e:.2f} points" for n, e in errors.items()))
    shown = "0.3" if "0.3" in summary[SIX[0]] else str(sigmas[0])
    figure = (f"an exact-latency search with accuracy known to +-{shown} points needs median "
              + ", ".join(f"{d} " + " / ".join(f"{v:g}" if v is not None else f">{CAP}" for v in summary[d][shown].values()) for d in SIX)
              + f" evaluations to 99% / 99.9%; sliver's GP errs {errors[100]:.2f} points near the top after 100 random samples"
              + "; with latency as the cell predicts it, over 150 to 99% on "
              + "; ".join(f"{len(b)}/{len(latency_table)} devices at sigma {s:g}" + (f" ({', '.join(b)})" if b else "")
                          for s, b in beyond.items()))
    write_result("search_nb201_oracle", figure, "yardstick for search_nb201 (no target of its own)", True, table,
                 summary=summary, predictor_mae_top300=errors, latency_oracle=latency_table, seeds=args.seeds,
                 latency_seeds=args.latency_seeds,
                 seconds=round(time.perf_counter() - started, 1),
                 note="oracle: greedy hypervolume improvement on predictions; table: exact latency, accuracy = truth + "
                      "N(0, sigma^2) fixed per network; latency_oracle: latency from LightGBM on the cell fitted on the other "
                      "half of the table, the same accuracy error; a real predictor's error shrinks near measured networks, "
                      "so this is a yardstick, not a bound")
    print(figure)


if __name__ == "__main__":
    main()
