"""`sliver search <config.yaml>`: run a multi-objective search and print the measured front."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from sliver.cli._common import USER_ERRORS, console, fail
from sliver.config import load
from sliver.search.config import SearchConfig, build_search
from sliver.search.hv import result_hypervolume


def search(config: Path = typer.Argument(..., help="Search config (YAML): problem, objectives, constraints, strategy, budget, store.")) -> None:
    """Search the Pareto front of a super-network or a benchmark table; prints the measured front."""
    try:
        cfg = load(SearchConfig, config)
        runner, store = build_search(cfg, progress=True, log=lambda line: console.print(line, highlight=False),
                                     path=config)
        result = runner.run()
    except USER_ERRORS as exc:
        fail(str(exc))
    print_front(result, cfg, console)
    if store is not None:
        store.close()


def print_front(result, cfg: SearchConfig, console=console) -> None:
    """Print the search log, the measured (feasible) front as a table, and the accounting."""
    for line in result.log:
        console.print(f"[dim]{line}[/]", highlight=False)
    front = result.feasible_front if cfg.constraints else result.front
    table = Table(title=f"{'feasible ' if cfg.constraints else ''}Pareto front: {len(front)} of {len(result.points)} points")
    for o in result.objectives:
        table.add_column(o.label + (" ↑" if o.direction == "max" else " ↓"))
    table.add_column("config")
    first = result.objectives[0]
    for p in sorted(front, key=lambda p: p.values[first.name] * first.sign):
        table.add_row(*(f"{p.values[o.name]:.4g}" for o in result.objectives), _short(p.config))
    console.print(table)
    console.print(
        f"{result.n_evaluations} unique evaluations, {result.n_cache_hits} cache hits, {result.n_warm} warm-start points, "
        f"{result.n_filtered} filtered by cheap constraints, {result.n_failed} failed; "
        f"normalised hypervolume {result_hypervolume(result):.4f}; "
        f"{result.eval_seconds:.1f} s measuring, {result.search_seconds:.1f} s searching ({result.stopped})"
    )


def _short(config: dict) -> str:
    text = ", ".join(f"{k}={v}" for k, v in config.items())
    return text if len(text) <= 80 else text[:77] + "..."
