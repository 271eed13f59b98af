"""Search efficiency on NAS-Bench-201: unique evaluations to 99% / 99.9% of the true hypervolume.

Per device (and accuracy data set), per strategy, median over seeds; LINAS
against pymoo NSGA-II (population 50), random search and Optuna TPE in the same
run. The headline: on how many of the six target devices LINAS meets both
targets (<= 100 evaluations to 99%, <= 300 to 99.9%), and its worst search
overhead per evaluation. Extra devices and CIFAR-100 / ImageNet16-120 show it
is not tuned to the six. Runs after 99.9% is reached stop early (nothing more
to score); budgets are capped so the run stays sane on a shared 2-core machine,
and a median above the cap is written ">cap".

    python benchmarks/search_nb201.py [--seeds 5] [--extra-seeds 2] [--baseline-seeds 2] [--jobs 2] [--tpe] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from _common import data_dir, fingerprint, skip, write_result  # noqa: E402

SIX = ["raspi4", "fpga", "gold_6226", "pixel3", "eyeriss", "titan_rtx_1"]
EXTRA = [("samsung_a50", "cifar10"), ("silver_4114", "cifar10"), ("titanxp_32", "cifar10"),
         ("raspi4", "cifar100"), ("raspi4", "imagenet16_120")]
BUDGETS = {"linas": 300, "nsga2": 1000, "random": 1000, "tpe": 300}
BASELINES = ["nsga2", "random"]


def one(job):
    device, dataset, strategy, seed, budget, root = job
    from sliver.bench.nb201 import NB201
    from sliver.bench.runner import run_nb201

    s = run_nb201(NB201(device, dataset, root), strategy, seed, budget)
    return {"device": device, "dataset": dataset, **s.to_dict(), "budget": budget}


def median(values, cap):
    vals = sorted(v if v is not None else np.inf for v in values)
    m = float(np.median(vals))
    return f">{cap}" if not np.isfinite(m) else m


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--extra-seeds", type=int, default=2)
    ap.add_argument("--baseline-seeds", type=int, default=2, help="seeds for NSGA-II / random (they only give the scale)")
    ap.add_argument("--tpe", action="store_true", help="also Optuna TPE on raspi4 and fpga (slow at hundreds of trials)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="two devices, two seeds, no TPE/extras (a smoke run)")
    ap.add_argument("--data", default=None)
    args = ap.parse_args()
    root = data_dir(args.data)
    if not (root / "nb201" / "nb201_acc_latency.csv").is_file():
        skip(f"NB201 table not found under {root}")
    devices = SIX[:2] if args.quick else SIX
    seeds = 2 if args.quick else args.seeds
    jobs = []
    for d in devices:  # LINAS first: the slowest runs start first, the short baselines fill the gaps at the end
        jobs += [(d, "cifar10", "linas", s, BUDGETS["linas"], str(root)) for s in range(seeds)]
    if not args.quick:
        for d, ds in EXTRA:
            jobs += [(d, ds, "linas", s, BUDGETS["linas"], str(root)) for s in range(args.extra_seeds)]
    for d in devices:
        for strat in BASELINES + (["tpe"] if args.tpe and d in ("raspi4", "fpga") else []):
            jobs += [(d, "cifar10", strat, s, BUDGETS[strat], str(root)) for s in range(min(seeds, args.baseline_seeds))]
    t0 = time.time()
    runs = []
    with ProcessPoolExecutor(args.jobs) as pool:
        for r in pool.map(one, jobs):  # one line per finished run: progress on a slow, shared machine
            runs.append(r)
            print(f"[{len(runs)}/{len(jobs)}] {r['device']} {r['dataset']} {r['strategy']} seed {r['seed']}: "
                  f"99% {r['evals_to_0.99']} 99.9% {r['evals_to_0.999']} final {r['final_hv_ratio']:.4f}", flush=True)
    table = []
    for key in dict.fromkeys((r["device"], r["dataset"], r["strategy"]) for r in runs):
        rs = [r for r in runs if (r["device"], r["dataset"], r["strategy"]) == key]
        cap = rs[0]["budget"]
        table.append({
            "device": key[0], "dataset": key[1], "strategy": key[2], "seeds": len(rs), "budget": cap,
            "median_evals_to_99": median([r["evals_to_0.99"] for r in rs], cap),
            "median_evals_to_99.9": median([r["evals_to_0.999"] for r in rs], cap),
            "median_final_hv_ratio": float(np.median([r["final_hv_ratio"] for r in rs])),
            "median_overhead_s_per_eval": float(np.median([r["overhead_s_per_eval"] for r in rs])),
        })
    for row in table:
        print(f"{row['device']:>12} {row['dataset']:>14} {row['strategy']:>6}: 99% {row['median_evals_to_99']!s:>6}  "
              f"99.9% {row['median_evals_to_99.9']!s:>6}  final {row['median_final_hv_ratio']:.4f}  "
              f"overhead {row['median_overhead_s_per_eval']:.3f} s/eval")

    def ok(row):
        a, b = row["median_evals_to_99"], row["median_evals_to_99.9"]
        return isinstance(a, float) and a <= 100 and isinstance(b, float) and b <= 300

    six = [r for r in table if r["strategy"] == "linas" and r["dataset"] == "cifar10" and r["device"] in devices]
    met_devices = sum(ok(r) for r in six)
    worst_overhead = max(r["median_overhead_s_per_eval"] for r in table if r["strategy"] == "linas")
    met = met_devices == len(six) and worst_overhead <= 0.5
    figure = f"LINAS meets 99%<=100 and 99.9%<=300 on {met_devices}/{len(six)} devices; worst overhead {worst_overhead:.3f} s/eval"
    write_result(
        "search_nb201", figure, "LINAS median over 5 seeds: 99% of true HV in <= 100 unique evaluations and 99.9% in <= 300 "
        "on raspi4, fpga, gold_6226, pixel3, eyeriss, titan_rtx_1; overhead <= 0.5 s/eval", met, table,
        runs=runs, wall_s=round(time.time() - t0, 1), jobs=args.jobs,
        seeds={"linas_six": seeds, "linas_extra": args.extra_seeds, "baselines": min(seeds, args.baseline_seeds)},
        note="shared 2-core machine (other engineers' tests running); overhead = time outside evaluations, scoring excluded; "
             "NSGA-II / random run with fewer seeds than LINAS (they only give the scale) and stop at 99.9% or 1000 evaluations; "
             "LINAS defaults (GP predictors, local_share 0.8, batch 10) with the cell's live-op and path-count features "
             "(sliver.bench.nb201.nb201_features)",
    )
    print(figure)


if __name__ == "__main__":
    main()
