"""The dashboard's browser files: its own JS and CSS, and the plotly.js that the ``plotly`` package bundles.

Both the dashboard (which serves them) and ``sliver report`` (which inlines
them into one HTML file) take them from here, so the two draw the same charts.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from sliver.errors import UserError

#: the dashboard's own JS and CSS
STATIC = Path(__file__).resolve().parent / "static"


def plotly_js() -> Path:
    """The minified plotly.js that the ``plotly`` package bundles (found without importing plotly)."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the dashboard needs the 'plotly' package for its charts; reinstall sliver (./setup.sh)")
    path = Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise UserError(f"plotly.js is missing from the installed plotly package ({path}); reinstall it")
    return path
