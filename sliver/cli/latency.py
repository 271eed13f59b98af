"""`sliver latency ...`: latency models for a device (few-shot transfer, operator lookup tables)."""

from __future__ import annotations

from pathlib import Path

import typer

from sliver.cli._common import USER_ERRORS, console, err_console, fail
from sliver.errors import UserError

app = typer.Typer(help="Latency models for any device: few-shot transfer and operator lookup tables.", no_args_is_help=True)


def read_source_table(path: Path, arch_column: str | None, prefix: str | None):
    """The source table as a DataFrame indexed by architecture, one column per device."""
    from sliver.config import numeric_columns, read_csv
    from sliver.predict.transfer import latency_columns

    frame = read_csv(path, "source table")
    arch_column = arch_column or _first_text_column(frame, path)
    if arch_column not in frame.columns:
        raise UserError(f"{path}: no column '{arch_column}'; columns are {list(frame.columns)}")
    columns = latency_columns(frame, prefix)
    return numeric_columns(frame, columns, path).set_index(arch_column)[columns]


def read_samples(path: Path, arch_column: str | None, latency_column: str):
    """The new device's measurements as a Series (latency in ms) indexed by architecture."""
    from sliver.config import numeric_columns, read_csv

    frame = read_csv(path, "samples table")
    arch_column = arch_column or _first_text_column(frame, path)
    for col in (arch_column, latency_column):
        if col not in frame.columns:
            raise UserError(f"{path}: no column '{col}'; columns are {list(frame.columns)} (see --arch-column / --latency-column)")
    return numeric_columns(frame, [latency_column], path).set_index(arch_column)[latency_column]



def _first_text_column(frame, path: Path) -> str:
    from pandas.api.types import is_numeric_dtype

    text = [c for c in frame.columns if not is_numeric_dtype(frame[c])]
    if not text:
        raise UserError(f"{path}: no architecture column (text); name it with --arch-column")
    return text[0]


@app.command("transfer")
def transfer(
    source: Path = typer.Option(..., "--source", exists=True, dir_okay=False, help="CSV: one row per architecture, one latency column (ms) per source device."),
    samples: Path = typer.Option(..., "--samples", exists=True, dir_okay=False, help="CSV: architectures measured on the new device and their latency (ms)."),
    output: Path = typer.Option(None, "--output", "-o", help="Write every architecture's predicted latency to this CSV."),
    arch_column: str = typer.Option(None, "--arch-column", help="Column naming the architecture (default: the first text column)."),
    latency_column: str = typer.Option("latency_ms", "--latency-column", help="Latency column of the samples CSV."),
    columns: str = typer.Option(None, "--columns", help="Prefix of the source device columns (default lat_ms_ if present, else all numeric)."),
    top: int = typer.Option(10, "--top", min=0, help="Show this many fastest predicted architectures."),
) -> None:
    """Predict a new device's latency of every architecture in the source table from k measurements on it."""
    from sliver.predict.transfer import transfer as run_transfer

    try:
        table = read_source_table(source, arch_column, columns)
        measured = read_samples(samples, arch_column, latency_column)
        result = run_transfer(table, measured)
    except USER_ERRORS as exc:
        fail(str(exc))
    (err_console if result.fallback else console).print(("[yellow]warning:[/] " if result.fallback else "") + result.message, highlight=False, soft_wrap=True)
    if output is not None:
        result.latency_ms.rename_axis(table.index.name or "arch").to_frame().to_csv(output)
        console.print(f"wrote {len(result.latency_ms)} predictions to {output}")
    if top:
        for arch, ms in result.latency_ms.nsmallest(top).items():
            console.print(f"{ms:10.3f} ms  {arch}", highlight=False)


@app.command("suggest")
def suggest(
    source: Path = typer.Option(..., "--source", exists=True, dir_okay=False, help="CSV: one row per architecture, one latency column (ms) per source device."),
    k: int = typer.Option(10, "-k", "--samples-to-measure", min=1, help="How many architectures to measure on the new device."),
    samples: Path = typer.Option(None, "--samples", exists=True, dir_okay=False, help="CSV of architectures already measured on the new device (the suggestions complement them)."),
    output: Path = typer.Option(None, "--output", "-o", help="Write the suggested architectures to this CSV (an empty latency column to fill in)."),
    arch_column: str = typer.Option(None, "--arch-column", help="Column naming the architecture (default: the first text column)."),
    latency_column: str = typer.Option("latency_ms", "--latency-column", help="Latency column of the samples CSV (and of the output)."),
    columns: str = typer.Option(None, "--columns", help="Prefix of the source device columns (default lat_ms_ if present, else all numeric)."),
) -> None:
    """Which architectures to measure on a new device so that `sliver latency transfer` learns most from them.

    Worth it for the first ten or so measurements; beyond that, random ones serve as well.
    """
    from sliver.predict.transfer import suggest_samples

    try:
        table = read_source_table(source, arch_column, columns)
        measured = read_samples(samples, arch_column, latency_column).index if samples is not None else None
        picks = suggest_samples(table, k, measured)
    except USER_ERRORS as exc:
        fail(str(exc))
    name = table.index.name or "arch"
    if output is not None:
        import pandas as pd

        pd.DataFrame({name: picks, latency_column: float("nan")}).to_csv(output, index=False)
        console.print(f"wrote {len(picks)} architectures to measure to {output}: fill in '{latency_column}', then run "
                      f"sliver latency transfer --samples {output}", highlight=False, soft_wrap=True)
    for arch in picks:
        console.print(str(arch), highlight=False, soft_wrap=True)


@app.command("build-lut")
def build_lut_command(
    config: Path = typer.Argument(..., exists=True, dir_okay=False, help="YAML file with a 'supernet:' section (an ElasticMobileNet)."),
    target: str = typer.Option("cpu-torch-b1", "--target", "-t", help="Hardware target: a preset (cpu-ort-b1, cpu-torch-b8-t2) or a YAML file."),
    output: Path = typer.Option(Path("lut.yaml"), "--output", "-o", help="YAML table; an existing one for the same target is resumed."),
    db: str = typer.Option(None, "--db", envvar="SLIVER_DB", help="Also keep the table in this result store (SQLAlchemy URL), keyed by the target's fingerprint; resumes from it."),
) -> None:
    """Time every operator the super-network can produce on the target, once, into a lookup table."""
    from rich.progress import Progress

    from sliver.cli.space import supernet_from_yaml
    from sliver.measure.hardware import HardwareTarget
    from sliver.predict.lut import build_lut

    store = None
    try:
        hardware = HardwareTarget.parse(target)
        supernet = supernet_from_yaml(config)
        if supernet.supernet_config().get("family") != "mobilenet":
            raise UserError(f"{config}: operator lookup tables support the mobilenet family, got '{supernet.supernet_config().get('family')}'")
        if db is not None:
            from sliver.store import ResultStore

            store = ResultStore(db)
        with Progress(console=console) as progress:
            task = progress.add_task("timing operators", total=None)
            lut = build_lut(supernet, hardware, output, store=store,
                            on_progress=lambda done, total: progress.update(task, completed=done, total=total))
    except USER_ERRORS as exc:
        fail(str(exc))
    finally:
        if store is not None:
            store.close()
    from sliver.store import hide_password

    where = f"{output}" + (f" and the store {hide_password(db)}" if db is not None else "")
    console.print(f"{len(lut.entries)} operators on target {hardware.name} (fingerprint {lut.fingerprint_hash}) in {where}")
