"""Shared helpers of the CLI: one-line errors instead of tracebacks, and a console."""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console

from sliver.errors import UserError

console = Console()
err_console = Console(stderr=True)

#: errors that are the user's to fix: shown as one line, exit code 2. Anything else is a bug and keeps
#: its traceback, so a bare ValueError from deep inside is not hidden behind a misleading one-liner.
USER_ERRORS: tuple[type[BaseException], ...] = (UserError, FileNotFoundError)


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` on one line to stderr and exit."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def run_app(app: typer.Typer) -> None:
    """Run a Typer app, turning user errors into one-line messages."""
    try:
        app(standalone_mode=True)
    except USER_ERRORS as exc:  # raised outside a command's own handling
        if os.environ.get("SLIVER_DEBUG"):
            raise
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
