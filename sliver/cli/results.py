"""`sliver results ...`: what the result store holds: studies and their trials, as tables, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from enum import Enum

import typer
from rich.table import Table

from sliver.cli._common import USER_ERRORS, console, fail

#: read-only here: the measure/search wording ("not repeated") does not apply
DB_HELP = "SQLAlchemy URL of the result store to read (e.g. sqlite:///runs/demo/sliver.db)."

app = typer.Typer(help="List and export the studies and measurements of a result store.", no_args_is_help=True)


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


def open_store(db: str):
    """The result store at ``db``; a missing SQLite file is an error here rather than a new empty store."""
    from sliver.store import ResultStore

    # opening a missing SQLite file would silently create an empty store
    if db.startswith("sqlite:///") and db != "sqlite:///:memory:":
        from pathlib import Path

        from sqlalchemy.engine import make_url

        path = Path(make_url(db).database or "")  # the file alone: the URL may carry query parameters (secrets too)
        if not path.is_file():
            raise FileNotFoundError(f"no result store at {path}; pass --db URL (or set SLIVER_DB)")
    return ResultStore(db)


@app.command("list")
def list_(db: str = typer.Option("sqlite:///sliver.db", "--db", envvar="SLIVER_DB", help=DB_HELP)) -> None:
    """One row per study: objectives, number of trials, super-network and hardware."""
    try:
        store = open_store(db)
        studies = [(s, len(store.trials(s.id))) for s in store.list_studies()]
        n_meas = store.count_measurements()
    except USER_ERRORS as exc:
        fail(str(exc))
    from sliver.store import hide_password

    table = Table(title=f"{hide_password(db)}: {len(studies)} studies, {n_meas} measurements")
    for col in ("study", "objectives", "trials", "supernet", "fingerprint", "created"):
        table.add_column(col)
    for s, n in studies:
        created = s.created.strftime("%Y-%m-%d %H:%M") if s.created else ""
        table.add_row(s.name, ", ".join(o.name for o in s.objectives), str(n), s.supernet_hash, s.fingerprint, created)
    console.print(table)


@app.command("show")
def show(
    study: str = typer.Argument(..., help="Study name (see `sliver results list`)."),
    fmt: Format = typer.Option(Format.table, "--format", "-f", help="table, csv or json."),
    db: str = typer.Option("sqlite:///sliver.db", "--db", envvar="SLIVER_DB", help=DB_HELP),
) -> None:
    """Every trial of a study in order, with its objective values and errors."""
    try:
        store = open_store(db)
        st = store.get_study(study)
        trials = store.trials(st.id)
    except USER_ERRORS as exc:
        fail(str(exc))
    from sliver.report import study_hypervolume, study_points

    hv = study_hypervolume(study_points(store, st))
    names = [o.name for o in st.objectives]
    rows = [
        {"seq": t.seq, "key": t.config_key, **{n: t.values.get(n) for n in names},
         "errors": t.errors, "cached": t.cached, "origin": t.origin, "batch": t.batch, "config": t.config}
        for t in trials
    ]
    if fmt is Format.json:
        typer.echo(json.dumps({"study": st.name, "objectives": [o.to_dict() for o in st.objectives],
                               "supernet_hash": st.supernet_hash, "fingerprint": st.fingerprint,
                               "settings": st.settings, "normalised_hypervolume": hv, "trials": rows}, indent=2))
    elif fmt is Format.csv:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["seq", "key", *names])
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "errors": json.dumps(r["errors"]) if r["errors"] else "", "config": json.dumps(r["config"])})
        typer.echo(buf.getvalue(), nl=False)
    else:
        table = Table(title=f"study {st.name}: {len(rows)} trials, normalised hypervolume {hv:.4f}")
        for col in ("seq", "key", *[o.label for o in st.objectives], "origin", "cached", "errors"):
            table.add_column(col)
        for r in rows:
            values = ["" if r[n] is None else f"{r[n]:,.4g}" for n in names]
            errors = "; ".join(f"{k}: {v}" for k, v in r["errors"].items())
            table.add_row(str(r["seq"]), r["key"], *values, r["origin"], "yes" if r["cached"] else "", errors)
        console.print(table)
