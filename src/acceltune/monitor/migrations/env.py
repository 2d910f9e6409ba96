from alembic import context

from acceltune.monitor.models import metadata
from acceltune.storage import run_migrations

run_migrations(context, metadata)
