"""Alembic migrations of the result store's tables (see :mod:`sliver.store`).

``ResultStore`` runs them itself when it opens a store (``env.py`` takes its
connection), so users need no ``alembic.ini``. A change to the tables is a new
file in ``versions/`` (``script.py.mako`` is Alembic's template for one) whose
``revision`` is the next number, and :data:`sliver.store.SCHEMA_VERSION` bumped
to it; the upgrade also writes that number to the ``meta`` row, which is what
older sliver reads to refuse a store newer than itself.
"""
