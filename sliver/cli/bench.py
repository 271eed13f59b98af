"""`sliver bench search`: score search strategies on a tabular benchmark with a known true front."""

from __future__ import annotations

import numpy as np
import typer
from rich.table import Table

from sliver.cli._common import USER_ERRORS, console, fail

app = typer.Typer(help="Benchmarks on published measurements (NAS-Bench-201 with real latency).", no_args_is_help=True)


@app.command("search")
def search(
    problem: str = typer.Option("nb201", help="Tabular problem (only nb201 for now)."),
    device: str = typer.Option("raspi4", help="Latency device column of the table, e.g. raspi4, fpga, pixel3."),
    dataset: str = typer.Option("cifar10", help="Accuracy data set: cifar10, cifar100 or imagenet16_120."),
    strategies: str = typer.Option("random,nsga2,tpe,linas", help="Comma-separated strategies."),
    seeds: int = typer.Option(5, min=1, help="Seeds per strategy (median reported)."),
    budget: int = typer.Option(1000, min=1, help="Unique evaluations per run at most."),
    data: str = typer.Option(None, help="Shared data folder (default $SLIVER_DATA or <repo>/../shared/data)."),
) -> None:
    """Median unique evaluations to 99% and 99.9% of the true hypervolume, and search overhead per evaluation."""
    from sliver.bench.nb201 import NB201
    from sliver.bench.runner import TARGETS, median_reached, run_nb201

    if problem != "nb201":
        fail(f"problem '{problem}' is unknown; choose nb201")
    try:
        prob = NB201(device, dataset, data)
    except USER_ERRORS as exc:
        fail(str(exc))
    table = Table(title=f"NB201 {dataset} x {device}: unique evaluations to a share of the true hypervolume (median of {seeds})")
    for col in ("strategy", "to 99%", "to 99.9%", "final share", "overhead s/eval"):
        table.add_column(col)
    for name in [s.strip() for s in strategies.split(",") if s.strip()]:
        try:
            scores = [run_nb201(prob, name, seed, budget) for seed in range(seeds)]
        except USER_ERRORS as exc:
            fail(str(exc))
        table.add_row(
            name, *(median_reached(scores, t, budget) for t in TARGETS),
            f"{np.median([s.final for s in scores]):.4f}", f"{np.median([s.overhead_s for s in scores]):.3f}",
        )
    console.print(table)
