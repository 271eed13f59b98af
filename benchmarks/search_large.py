"""Search in spaces of 10^19 and more sub-networks: LINAS against NSGA-II, random and Optuna's GP sampler.

On the OFA yardsticks of ``sliver.bench.ofa`` (OFA-MobileNetV3 w1.2 and OFA-ResNet50:
OFA's published ImageNet accuracy predictors and exact MACs, hypervolume as a share
of the committed reference front's), each strategy runs ``--seeds`` seeded searches
of ``--budget`` unique evaluations (``sliver.bench.runner.run_problem``); the figure
is the median share at 100 / 500 / 1,000 evaluations, and the search overhead per
evaluation (CPU seconds of this process outside the evaluations and the scoring,
beside wall seconds). Optuna's GP sampler costs more per trial as trials accumulate
(its GP refits on all of them), so it runs ``--gp-budget`` evaluations and is compared
at the budgets it reaches.

Every finished run is kept in ``--work`` and skipped by a rerun, so an interrupted
benchmark resumes where it stopped.

    python benchmarks/search_large.py [--problems ofa-mbv3,ofa-resnet50] [--seeds 5] [--budget 1000] [--gp-budget 300]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import ofa_data_dir, write_result  # noqa: E402

TARGETS = {100: 0.85, 500: 0.95, 1000: 0.98}
OVERHEAD_TARGET_S = 0.1


def load_problem(name: str, data: Path):
    from sliver.bench.ofa import PROBLEMS

    if name not in PROBLEMS:
        raise SystemExit(f"--problems: unknown {name!r}; choose {', '.join(PROBLEMS)}")
    return PROBLEMS[name](root=data)


def common_arguments(ap: argparse.ArgumentParser, work: str) -> None:
    """The options every large-problem benchmark takes: problems, seeds, budget, work folder, data folder."""
    ap.add_argument("--problems", default="ofa-mbv3,ofa-resnet50")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget", type=int, default=1000, help="unique evaluations per run")
    ap.add_argument("--work", default=work, help="finished runs, kept so that a rerun resumes")
    ap.add_argument("--data", default=None, help="shared data folder (default $SLIVER_DATA or ../shared/data)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_arguments(ap, work="/tmp/sliver-search-large")
    ap.add_argument("--strategies", default="linas,nsga2,random,optuna-gp")
    ap.add_argument("--gp-budget", type=int, default=300, help="unique evaluations of an optuna-gp run")
    args = ap.parse_args()
    from sliver.bench.runner import run_problem

    data = ofa_data_dir(args.data)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    budgets = sorted(b for b in TARGETS if b <= args.budget) or [args.budget]
    load_before, started = os.getloadavg(), time.perf_counter()

    table: dict = {}
    for name in [p.strip() for p in args.problems.split(",") if p.strip()]:
        problem = load_problem(name, data)
        table[name] = {}
        for strategy in strategies:
            budget = min(args.budget, args.gp_budget) if strategy == "optuna-gp" else args.budget
            runs = []
            for seed in range(args.seeds):
                path = work / f"{name}-{strategy}-{seed}-{budget}.json"
                if not path.exists():
                    t0 = time.perf_counter()
                    score = run_problem(problem, strategy, seed, budget)
                    row = {**score.to_dict(budgets), "ratios": [round(r, 6) for r in score.ratios],
                           "wall_s": round(time.perf_counter() - t0, 1)}
                    path.write_text(json.dumps(row))
                runs.append(json.loads(path.read_text()))
                r = runs[-1]
                print(f"{name} {strategy} seed {seed}: " + ", ".join(
                    f"{b}: {r['hv_ratio_at'][str(b)]:.4f}" for b in budgets if r["hv_ratio_at"].get(str(b)) is not None)
                    + f"; overhead {r['overhead_cpu_s_per_eval']:.3f} CPU s/eval ({r['overhead_s_per_eval']:.3f} wall), "
                    f"{r['wall_s']} s", flush=True)
            at = {}
            for b in budgets:
                values = [r["hv_ratio_at"].get(str(b)) for r in runs]
                at[str(b)] = float(np.median(values)) if all(v is not None for v in values) else None
            table[name][strategy] = {
                "budget": budget, "median_hv_ratio_at": at,
                "median_overhead_cpu_s_per_eval": float(np.median([r["overhead_cpu_s_per_eval"] for r in runs])),
                "median_overhead_wall_s_per_eval": float(np.median([r["overhead_s_per_eval"] for r in runs])),
                "runs": runs,
            }

    met, parts = True, []
    for name, rows in table.items():
        cells = []
        for strategy, row in rows.items():
            shares = " / ".join("—" if row["median_hv_ratio_at"][str(b)] is None else f"{row['median_hv_ratio_at'][str(b)]:.3f}"
                                for b in budgets)
            cells.append(f"{strategy} {shares} ({row['median_overhead_cpu_s_per_eval']:.3f} s/eval)")
        parts.append(f"{name} at {' / '.join(map(str, budgets))}: " + ", ".join(cells))
        linas = rows.get("linas")
        if linas is None:
            met = False
            continue
        for b in budgets:
            mine = linas["median_hv_ratio_at"][str(b)]
            others = [r["median_hv_ratio_at"][str(b)] for s, r in rows.items() if s != "linas"]
            met &= mine is not None and mine >= TARGETS.get(b, 0.0) and all(o is None or mine > o for o in others)
        met &= linas["median_overhead_cpu_s_per_eval"] <= OVERHEAD_TARGET_S
    figure = f"median HV share of the reference front ({args.seeds} seeds): " + " | ".join(parts)
    write_result(
        "search_large", figure,
        "LINAS >= 0.85 / 0.95 / 0.98 at 100 / 500 / 1,000 evaluations, above every baseline at every budget, "
        f"overhead <= {OVERHEAD_TARGET_S} CPU s per evaluation", met, table,
        seconds=round(time.perf_counter() - started, 1),
        load_average_1min={"before": load_before[0], "after": os.getloadavg()[0]},
    )
    print(figure)


if __name__ == "__main__":
    main()
