"""`sliver measure`: measure sub-networks of a checkpoint on a hardware target, through the result store."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from sliver.cli._common import USER_ERRORS, console, fail
from sliver.errors import UserError

DB_HELP = "SQLAlchemy URL of the result store (measurements already there are not repeated)."


def measure(
    checkpoint: Path = typer.Option(None, "--checkpoint", "-c", help="Super-network training checkpoint (.pt)."),
    target: str = typer.Option("cpu-ort-b1", "--target", "-t", help="Hardware target: a preset like cpu-ort-b1, cpu-torch-b8-t2, cpu-ov-b1, cuda-torch-b8 (see --list-targets), or a YAML file."),
    config: str = typer.Option(None, "--config", help="Sub-network config as JSON, e.g. '{\"ks\": [...], ...}'."),
    config_file: Path = typer.Option(None, "--config-file", help="JSON file with one config or a list of configs."),
    objectives: str = typer.Option(None, "--objectives", "-o", help="Comma-separated objectives (default: all)."),
    db: str = typer.Option("sqlite:///sliver.db", "--db", envvar="SLIVER_DB", help=DB_HELP),
    accuracy_subset: float = typer.Option(None, "--accuracy-subset", help="Measure accuracy (a language model's perplexity) on this seeded fraction of the validation split."),
    study: str = typer.Option(None, "--study", help="Also record the configs as trials of this study (created if new)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON lines instead of tables."),
    list_targets: bool = typer.Option(False, "--list-targets", help="List the target presets, which of them this machine can run and why not the others, then exit."),
) -> None:
    """Measure accuracy, latency, MACs, params, size and memory of sub-networks; print a table per config."""
    if list_targets:
        _print_targets()
        return
    if checkpoint is None:
        fail("--checkpoint: required; give the super-network's training checkpoint (.pt)")
    # heavy imports here so that `sliver --help` stays fast
    from sliver.measure.evaluator import evaluate
    from sliver.measure.model import ModelEvaluator
    from sliver.store import Origin, ResultStore

    try:
        configs = _read_configs(config, config_file)
        names = [n.strip() for n in objectives.split(",") if n.strip()] if objectives else None
        evaluator = ModelEvaluator.from_checkpoint(checkpoint, target, names, accuracy_subset=accuracy_subset)
        store = ResultStore(db)
        study_id = None
        if study:
            study_id = store.get_or_create_study(study, evaluator.space, evaluator.objectives, evaluator.supernet_hash,
                                                 evaluator.fingerprint, {"target": evaluator.target.model_dump()}).id
        results = [evaluate(evaluator, c, store, study_id, objectives=names, origin=Origin.CLI) for c in configs]
    except USER_ERRORS as exc:
        fail(str(exc))
    units = {o.name: o.unit for o in evaluator.objectives}
    for res in results:
        if as_json:
            typer.echo(json.dumps({"key": res.key, "config": res.config, "values": res.values,
                                   "errors": res.errors, "cached": res.cached, "seconds": round(res.wall, 3)}))
            continue
        table = Table(title=f"config {res.key} on {evaluator.target.name} ({'from the store' if res.cached else f'{res.wall:.2f} s'})")
        for col in ("objective", "value", "unit", "source", "detail"):
            table.add_column(col)
        for name in list(res.values) + list(res.errors):
            stats = res.stats.get(name, {})
            detail = (f"IQR {stats['iqr_ms']:.3f} ms, {stats['n_runs']} runs" if "iqr_ms" in stats
                      else res.errors.get(name, ""))
            value = f"{res.values[name]:,.4g}" if name in res.values else "[red]failed[/]"
            table.add_row(name, value, units.get(name, ""), "measured" if name in res.measured else "store", detail)
        console.print(table)
    if any(r.errors for r in results):
        raise typer.Exit(1)


def _print_targets() -> None:
    from sliver.measure.hardware import PRESET_EXAMPLES, HardwareTarget

    table = Table(title="hardware targets (any -b<batch> and -t<threads> works the same way)")
    for col in ("target", "device", "runtime", "provider", "on this machine"):
        table.add_column(col)
    for name in PRESET_EXAMPLES:
        target = HardwareTarget.preset(name)
        reason = target.unavailable_reason()
        provider = target.ort_provider() if target.backend == "onnxruntime" else ""
        table.add_row(name, target.device, target.backend, provider, f"[red]no:[/] {reason}" if reason else "[green]yes[/]")
    console.print(table)


def _read_configs(config: str | None, config_file: Path | None) -> list[dict]:
    if (config is None) == (config_file is None):
        raise UserError("give exactly one of --config '{...}' or --config-file FILE")
    if config_file is not None:
        if not config_file.is_file():
            raise FileNotFoundError(f"--config-file not found: {config_file}")
        text, where = config_file.read_text(), str(config_file)
    else:
        text, where = config, "--config"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    configs = data if isinstance(data, list) else [data]
    if not configs or not all(isinstance(c, dict) for c in configs):
        raise UserError(f"{where}: expected a config object {{dimension: value}} or a list of them")
    return configs
