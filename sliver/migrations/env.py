"""Alembic's entry point, run by ``alembic.command.upgrade``: migrate the connection sliver hands over.

:meth:`sliver.store.ResultStore._init_schema` opens the transaction and passes
its connection in ``config.attributes["connection"]``, so the version check,
the migrations and the version stamp commit (or roll back) together.
"""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
