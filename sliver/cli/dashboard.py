"""`sliver dashboard`: watch a result store's studies and training runs in a browser while they run."""

from __future__ import annotations

from pathlib import Path

import typer

from sliver.cli._common import USER_ERRORS, console, fail
from sliver.cli.results import DB_HELP


def dashboard(
    db: str = typer.Option("sqlite:///sliver.db", "--db", envvar="SLIVER_DB", help=DB_HELP),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; the default is reachable from this machine only."),
    port: int = typer.Option(8050, "--port", help="Port to listen on."),
    run: list[Path] = typer.Option([], "--run", help="A training run folder (holding metrics.jsonl) to show too; repeatable."),
) -> None:
    """Serve a read-only web dashboard of a result store (studies, Pareto fronts, trials) and training runs."""
    from sliver.cli.results import open_store
    from sliver.dashboard.app import bind, create_app, server
    from sliver.store import hide_password

    try:
        store = open_store(db)
        for folder in run:
            if not folder.is_dir():
                raise FileNotFoundError(f"--run {folder}: no such folder (a training run's --out folder)")
        app = create_app(store, run)
        sock = bind(host, port)
    except USER_ERRORS as exc:
        fail(str(exc))
    shown = f"[{host}]" if ":" in host else host
    console.print(f"sliver dashboard of {hide_password(db)} on http://{shown}:{sock.getsockname()[1]}/ (Ctrl-C stops it)",
                  highlight=False, soft_wrap=True)
    try:
        server(app).run(sockets=[sock])
    finally:
        sock.close()
        store.close()
