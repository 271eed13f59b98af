"""The `sliver` command line: one sub-command group per part of the flow.

Each group lives in its own module here and is added below; the commands stay
thin and call the library.
"""

from __future__ import annotations

import typer

from sliver import __version__
from sliver.cli._common import run_app

app = typer.Typer(
    name="sliver",
    help="Train one elastic super-network, find the sub-networks that are Pareto-optimal for a device, cut them out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sliver {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """sliver: hardware-aware sub-network search on elastic super-networks."""


# sub-command groups (each module defines `app`), registered in the order `sliver --help` lists them
from sliver.cli import bench as _bench  # noqa: E402
from sliver.cli import control as _control  # noqa: E402
from sliver.cli import dashboard as _dashboard  # noqa: E402
from sliver.cli import deploy as _deploy  # noqa: E402
from sliver.cli import device as _device  # noqa: E402
from sliver.cli import latency as _latency  # noqa: E402
from sliver.cli import measure as _measure  # noqa: E402
from sliver.cli import results as _results  # noqa: E402
from sliver.cli import search as _search  # noqa: E402
from sliver.cli import space as _space  # noqa: E402
from sliver.cli import train as _train  # noqa: E402

app.add_typer(_bench.app, name="bench")
app.command("search")(_search.search)
app.add_typer(_space.app, name="space")
app.command("measure")(_measure.measure)
app.add_typer(_results.app, name="results")
app.command("train")(_train.train)
app.command("control")(_control.control)
app.command("train-multitask")(_control.train_multitask)
app.add_typer(_latency.app, name="latency")
app.command("demo")(_deploy.demo)
app.command("export")(_deploy.export)
app.command("report")(_deploy.report)
app.command("dashboard")(_dashboard.dashboard)
app.add_typer(_device.app, name="device")

def main() -> None:
    """Console entry point."""
    run_app(app)
