"""Alembic's entry point: always called by ``store.migrate`` with an open connection.

There is no alembic.ini: ``publisher migrate`` passes the connection in
``config.attributes["connection"]``, so the same code migrates SQLite and
PostgreSQL and nothing reads a URL from a file.
"""

from __future__ import annotations

from alembic import context

from publisher.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things in place: batch mode copies the table.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
