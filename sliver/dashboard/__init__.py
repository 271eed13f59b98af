"""`sliver dashboard`: a read-only web page over a result store and training run folders, live while they grow.

:func:`create_app` builds the Starlette app; :func:`bind` and :func:`server` serve it with uvicorn.
"""

from __future__ import annotations

from sliver.dashboard.app import bind, create_app, server

__all__ = ["bind", "create_app", "server"]
