"""Alembic environment of the assistant's tables (run by acceltune.storage.upgrade)."""

from alembic import context

from acceltune.storage import run_migrations

run_migrations(context)
