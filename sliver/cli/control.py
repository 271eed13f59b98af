"""`sliver control` (priorities + budget -> multi-task sub-network) and `sliver train-multitask`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from sliver.cli._common import USER_ERRORS, console, fail


def control(
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="Multi-task super-network checkpoint (from sliver train-multitask)."),
    priorities: str = typer.Option(..., "--priorities", "-p", help="Task weights, e.g. cls=0.6,denoise=0.3,sr=0.1 (normalised; left-out tasks get 0)."),
    budget_macs: float = typer.Option(..., "--budget-macs", "-b", help="Largest MACs (batch 1) the chosen network may have, e.g. 2e6."),
    db: str = typer.Option("sqlite:///sliver.db", "--db", envvar="SLIVER_DB", help="SQLAlchemy URL of the result store holding the controller's measurements."),
    measured: int = typer.Option(40, "--measured", help="Configs measured once to fit the predictors (stored; not repeated)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the measured sample."),
    as_json: bool = typer.Option(False, "--json", help="Print the choice as JSON."),
) -> None:
    """Pick the sub-network for task priorities and a MACs budget (no retraining)."""
    from sliver.multitask.controller import Controller, check_budget, load_multitask_checkpoint, parse_priorities
    from sliver.multitask.evaluate import MultiTaskEvaluator
    from sliver.store import ResultStore
    from sliver.train.checkpoint import CheckpointError

    try:
        supernet, info, data = load_multitask_checkpoint(checkpoint)
        # cheap checks first: a bad request fails before anything is measured
        parse_priorities(priorities, supernet.tasks)
        check_budget(supernet, budget_macs)
        controller = Controller(MultiTaskEvaluator(supernet, data, info["hash"]), ResultStore(db), n_measured=measured, seed=seed)
        choice = controller.configure(priorities, budget_macs)
    except (*USER_ERRORS, CheckpointError) as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(choice.to_dict()))
        return
    table = Table(title=f"{choice.macs:,} MACs of {budget_macs:,.0f} ({100 * choice.macs / budget_macs:.1f}%), {choice.params:,} params")
    for col in ("task", "priority", "decoder width", "predicted"):
        table.add_column(col)
    for task, name in zip(controller.tasks, controller.names):
        table.add_row(task, f"{choice.priorities[task]:.2f}", f"{choice.decoder_share[task]:.0%}", f"{choice.predicted[name]:.2f} {name}")
    console.print(table)
    console.print(f"config: {json.dumps(choice.config)}", highlight=False)


def train_multitask(
    config: Path = typer.Argument(..., help="Multi-task training YAML (see examples/multitask_mnist.yaml)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (checkpoint.pt, metrics.jsonl); resumes if it holds a checkpoint."),
) -> None:
    """Train a controllable multi-task super-network (sandwich rule + CI-KD)."""
    from sliver.multitask.train import load_run_config, train_supernet
    from sliver.train.checkpoint import CheckpointError

    try:
        run, text = load_run_config(config)
        _, path = train_supernet(run, out, config_text=text, log=lambda line: console.print(line, highlight=False))
    except (*USER_ERRORS, CheckpointError) as exc:
        fail(str(exc))
    console.print(f"checkpoint: {path}")
