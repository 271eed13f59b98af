"""`sliver device serve`: the latency worker on the device a search measures for (see :mod:`sliver.device`)."""

from __future__ import annotations

import typer

from sliver.cli._common import fail

app = typer.Typer(help="Serve latency measurements from this device to searches on another machine.", no_args_is_help=True)


@app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface; trusted networks only)."),
    port: int = typer.Option(8780, "--port", help="Port to listen on (0: a free one, printed on start)."),
) -> None:
    """Time the ONNX sub-networks a search sends (target cpu-ort-b1@HOST:PORT) on this device; no torch needed."""
    # imported here so that the rest of the command line does not load the server
    from sliver.device import serve as serve_worker

    try:
        serve_worker(host, port)
    except OSError as exc:  # the port is taken, or the address is not this machine's
        fail(f"--host/--port: cannot listen on {host}:{port} ({exc.strerror or exc}); choose another port")
