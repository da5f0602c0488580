"""Alembic environment: uses the connection handed over by ``radclip.engine.db.migrate``."""

from __future__ import annotations

from alembic import context

from radclip.engine.db import Base, make_engine

target_metadata = Base.metadata


def _run(connection) -> None:  # noqa: ANN001 - alembic's Connection
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:  # `alembic` CLI with -x url=... or the settings' URL
    url = context.get_x_argument(as_dictionary=True).get("url")
    with make_engine(url).begin() as conn:
        _run(conn)
