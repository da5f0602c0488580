"""Alembic migrations for the engine database; run by :func:`radclip.engine.db.migrate`."""
