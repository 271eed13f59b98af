"""The dashboard's web app (Starlette): HTML pages that poll JSON endpoints, over one result store.

Pages: ``/`` (studies and training runs), ``/study/{name}``, ``/training/{name}``.
Endpoints: ``/api/studies``, ``/api/study/{name}``, ``/api/training/{name}``.
Everything is read-only; plotly.js is served from the installed ``plotly``
package, so a page fetches nothing from the internet.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from sliver.dashboard import data
from sliver.dashboard.assets import STATIC, plotly_js
from sliver.errors import SliverError, UserError, one_line
from sliver.store import ResultStore, hide_password

if TYPE_CHECKING:
    import uvicorn

HERE = Path(__file__).resolve().parent
#: how often a page asks for new data while it is open
POLL_SECONDS = 2.0


def run_names(runs: list[Path]) -> dict[str, Path]:
    """Training run folders by the name their page has: the folder's name, numbered when two share one."""
    names: dict[str, Path] = {}
    for run in runs:
        name, n = run.name or "run", 1
        while name in names:
            n += 1
            name = f"{run.name}-{n}"
        names[name] = run
    return names


def create_app(store: ResultStore, runs: list[Path] | None = None, poll_seconds: float = POLL_SECONDS) -> Starlette:
    """The dashboard over ``store``, with a training page for each folder in ``runs``."""
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["quote"] = lambda s: quote(s, safe="")
    training = run_names([Path(r) for r in runs or []])
    hv_cache: dict = {}
    plotly_path = plotly_js()
    common = {"store_url": hide_password(store.url), "poll_ms": int(poll_seconds * 1000)}

    def page(request: Request, name: str, status_code: int = 200, **context) -> Response:
        return templates.TemplateResponse(request, name, {**common, **context}, status_code=status_code)

    def home(request: Request) -> Response:
        return page(request, "studies.html", studies=data.studies_overview(store), runs=sorted(training))

    def study_page(request: Request) -> Response:
        name = request.path_params["name"]
        if data.find_study(store, name) is None:
            raise HTTPException(404, f"no study named '{name}' in this store")
        return page(request, "study.html", study=name)

    def training_page(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in training:
            raise HTTPException(404, f"no training run named '{name}' (pass its folder with --run)")
        return page(request, "training.html", run=name, folder=str(training[name]))

    def api_studies(request: Request) -> Response:
        return JSONResponse({"studies": data.studies_overview(store), "runs": sorted(training)})

    def api_study(request: Request) -> Response:
        name = request.path_params["name"]
        study = data.find_study(store, name)
        if study is None:
            return JSONResponse({"error": f"no study named '{name}' in this store"}, status_code=404)
        return JSONResponse(data.study_view(store, study, hv_cache))

    def api_training(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in training:
            return JSONResponse({"error": f"no training run named '{name}'"}, status_code=404)
        return JSONResponse(data.training_view(training[name]))

    def plotly(request: Request) -> Response:
        return FileResponse(plotly_path, media_type="text/javascript")

    async def not_found(request: Request, exc: HTTPException) -> Response:
        message = exc.detail if exc.status_code == 404 else "this page does not exist"
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message}, status_code=exc.status_code)
        return page(request, "error.html", status_code=exc.status_code, title="not found", message=message)

    async def failed(request: Request, exc: Exception) -> Response:
        # one line for the user, the traceback only in the server's log: a page never shows a stack trace
        # (Starlette re-raises after this, so the server logs the traceback)
        if isinstance(exc, SliverError):  # e.g. the store became unreachable: its message already hides the password
            message = one_line(exc)
        else:
            message = f"internal error ({type(exc).__name__}); the dashboard's terminal shows the details"
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message}, status_code=500)
        return page(request, "error.html", status_code=500, title="error", message=message)

    routes = [
        Route("/", home),
        Route("/study/{name:path}", study_page),
        Route("/training/{name:path}", training_page),
        Route("/api/studies", api_studies),
        Route("/api/study/{name:path}", api_study),
        Route("/api/training/{name:path}", api_training),
        Route("/static/plotly.min.js", plotly),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: not_found, Exception: failed})


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free one), or a one-line UserError when it cannot be had."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot serve the dashboard on {host}:{port} ({exc.strerror or exc}); "
                        "pass another --port (or --host)") from None
    return sock


def server(app: Starlette) -> "uvicorn.Server":
    """A quiet uvicorn server for ``app`` (warnings and errors only, no access log); run it with ``.run(sockets=[...])``."""
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))

