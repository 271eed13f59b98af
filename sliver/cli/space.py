"""`sliver space ...`: inspect the search space of a super-network described in a YAML file."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from sliver.cli._common import USER_ERRORS, console, fail
from sliver.config import ConfigError, read_yaml

app = typer.Typer(help="Inspect the search space of a super-network.", no_args_is_help=True)


def supernet_from_yaml(path: Path):
    """The super-network a ``supernet:`` YAML describes (a one-line error for a bad file)."""
    # imported here so `sliver --help` stays fast (no torch import)
    from sliver.elastic import from_spec

    data = read_yaml(path)
    if "supernet" not in data:
        raise ConfigError(f"{path}: field 'supernet': required section is missing (e.g. supernet: {{family: mobilenet, preset: tiny}})")
    if isinstance(data["supernet"], dict) and data["supernet"].get("family") == "multitask" and "heads" not in data["supernet"]:
        # a `sliver train-multitask` YAML: the heads come from its tasks and the input size from its data
        from sliver.multitask.tasks import load_multitask_data
        from sliver.multitask.train import build_supernet, load_run_config

        run, _ = load_run_config(path)
        return build_supernet(run, load_multitask_data(**run.data.model_dump()))
    return from_spec(data["supernet"], f"{path}: supernet")


def space_summary(supernet) -> dict:
    """Dimensions, distinct sub-network count and min/max costs of a super-network, as a JSON-able dict."""
    space = supernet.space
    return {
        "family": supernet.supernet_config()["family"],
        "dimensions": [{"name": n, "shape": s, "choices": c} for n, s, c in space.describe()],
        "distinct_subnetworks": space.count(),
        "min": supernet.costs(supernet.min_config()),
        "max": supernet.costs(supernet.max_config()),
        # an automatically elastified model says what became elastic and what stayed fixed, and why
        **({"elastified": supernet.describe()} if hasattr(supernet, "describe") else {}),
    }


@app.command("show")
def show(
    config: Path = typer.Argument(..., help="YAML file with a 'supernet:' section."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON instead of tables."),
) -> None:
    """Print the dimensions, the number of distinct sub-networks and params/MACs of the smallest and largest."""
    try:
        summary = space_summary(supernet_from_yaml(config))
    except USER_ERRORS as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(summary))
        return
    dims = Table(title=f"{config} ({summary['family']})")
    for col in ("dimension", "shape", "choices"):
        dims.add_column(col)
    for d in summary["dimensions"]:
        dims.add_row(d["name"], d["shape"], ", ".join(map(str, d["choices"])))
    console.print(dims)
    count = summary["distinct_subnetworks"]
    console.print(f"distinct sub-networks: {count:,} ({count:.2e})")
    costs = Table()
    for col in ("sub-network", "params", "MACs"):
        costs.add_column(col, justify="right")
    for name in ("min", "max"):
        c = summary[name]
        costs.add_row(name, f"{c['params']:,}", f"{c['macs']:,}")
    console.print(costs)
    if "elastified" in summary:
        _print_elastified(summary["elastified"])


def _print_elastified(found: dict) -> None:
    """Tables of the channel groups, skippable blocks and kernels that elastify found."""
    titles = {"elastic": "elastic channel groups (width genes; choices in channels)", "blocks": "skippable residual blocks (depth genes)",
              "kernels": "elastic kernels", "fixed": "fixed channel groups"}
    for key in ("elastic", "blocks", "kernels", "fixed"):
        rows = found.get(key) or []
        if not rows:
            continue
        table = Table(title=f"{titles[key]}: {len(rows)}")
        for col in rows[0]:
            table.add_column(col)
        for row in rows:
            table.add_row(*[", ".join(map(str, v)) if isinstance(v, list) else str(v) for v in row.values()])
        console.print(table)
