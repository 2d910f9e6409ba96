from alembic import context

from acceltune.recommend.store import metadata
from acceltune.storage import run_migrations

run_migrations(context, metadata)
