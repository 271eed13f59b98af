"""`sliver bench search`: score search strategies on a benchmark problem with a known (or reference) front."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer
from rich.table import Table

from sliver.cli._common import USER_ERRORS, console, fail

app = typer.Typer(help="Benchmarks on published measurements (NAS-Bench-201 with real latency, OFA predictors).",
                  no_args_is_help=True)

PROBLEMS = ("nb201", "ofa-mbv3", "ofa-resnet50")


def make_problem(problem: str, device: str, dataset: str, data: str | None, params: bool):
    """The named benchmark problem; a one-line error for an unknown name or missing data."""
    if problem not in PROBLEMS:
        fail(f"problem '{problem}' is unknown; choose one of {', '.join(PROBLEMS)}")
    try:
        if problem == "nb201":
            from sliver.bench.nb201 import NB201

            return NB201(device, dataset, data)
        from sliver.bench.ofa import PROBLEMS as OFA

        prob = OFA[problem](("accuracy", "macs", "params") if params else ("accuracy", "macs"), data)
        prob.true_hv  # noqa: B018 - a missing reference front is reported now, not after the first run
        return prob
    except USER_ERRORS as exc:
        fail(str(exc))


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


@app.command("search")
def search(
    problem: str = typer.Option("nb201", help=f"Benchmark problem: {', '.join(PROBLEMS)}."),
    device: str = typer.Option("raspi4", help="nb201: latency device column of the table, e.g. raspi4, fpga, pixel3."),
    dataset: str = typer.Option("cifar10", help="nb201: accuracy data set: cifar10, cifar100 or imagenet16_120."),
    params: bool = typer.Option(False, "--params", help="OFA problems: parameters as a third objective."),
    strategies: str = typer.Option("random,nsga2,tpe,linas", help="Comma-separated strategies."),
    seeds: int = typer.Option(5, min=1, help="Seeds per strategy (median reported)."),
    budget: int = typer.Option(1000, min=1, help="Unique evaluations per run."),
    stop_at_target: bool = typer.Option(False, help="Stop a run once it reaches 99.9 % of the hypervolume."),
    json_out: Path = typer.Option(None, "--json", help="Write every run's figures to this JSON file."),
    data: str = typer.Option(None, help="Shared data folder (default $SLIVER_DATA or <repo>/../shared/data)."),
) -> None:
    """Median share of the true (nb201) or reference (OFA) hypervolume at fixed budgets, evaluations to 99 % and
    99.9 % of it, and search overhead per evaluation (wall and CPU seconds outside evaluations)."""
    from sliver.bench.runner import TARGETS, median_reached, report_budgets, run_problem

    prob = make_problem(problem, device, dataset, data, params)
    budgets = report_budgets(budget)
    title = f"{problem} {dataset} x {device}" if problem == "nb201" else f"{problem} ({', '.join(o.name for o in prob.objectives)})"
    table = Table(title=f"{title}: share of the {'true' if problem == 'nb201' else 'reference'} hypervolume "
                        f"(median of {seeds} seeds)")
    for col in ("strategy", *(f"HV @{b}" for b in budgets), "to 99%", "to 99.9%", "overhead s/eval", "CPU s/eval"):
        table.add_column(col)
    runs: dict[str, list[dict]] = {}
    for name in [s.strip() for s in strategies.split(",") if s.strip()]:
        try:
            scores = [run_problem(prob, name, seed, budget, stop_at_target=stop_at_target) for seed in range(seeds)]
        except USER_ERRORS as exc:
            fail(str(exc))
        runs[name] = [s.to_dict(budgets) for s in scores]
        at = [[s.at(b) for s in scores] for b in budgets]
        table.add_row(
            name, *(_fmt(float(np.median(v)) if all(x is not None for x in v) else None) for v in at),
            *(median_reached(scores, t, budget) for t in TARGETS),
            f"{np.median([s.overhead_s for s in scores]):.3f}", f"{np.median([s.overhead_cpu_s for s in scores]):.3f}",
        )
    console.print(table)
    if json_out is not None:
        record = {
            "problem": problem, "objectives": [o.name for o in prob.objectives], "budget": budget, "seeds": seeds,
            "budgets": budgets, "targets": list(TARGETS), "reference_hv": prob.true_hv, "runs": runs,
            **({"device": device, "dataset": dataset} if problem == "nb201" else {}),
        }
        json_out.write_text(json.dumps(record, indent=2) + "\n")
        console.print(f"wrote {json_out}")
