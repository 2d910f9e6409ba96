"""Databases for the applications: one SQLAlchemy engine per URL, schemas kept by Alembic.

SQLite is the embedded default (a file, nothing to start; WAL so that a server reads while an ingester
writes); any other SQLAlchemy URL works, PostgreSQL through psycopg 3 (`pip install acceltune[postgres]`).
Every way a database can be wrong at start (bad URL, missing driver, unreachable server, a schema newer
than this acceltune) is one UserError naming the fix. Each application keeps its own Alembic version table,
so several can share one database.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from acceltune.errors import UserError
from acceltune.extras import require

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

SQLITE_BUSY_TIMEOUT_MS = 30_000  # a writer waits this long for another's transaction instead of failing


def _normalise(url: str) -> str:
    # "postgresql://" means psycopg 2 to SQLAlchemy; we ship psycopg 3.
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def safe_url(url: str) -> str:
    """The URL with any password hidden, for messages and logs."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(_normalise(url)).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"


def engine_for(url: str) -> "Engine":
    """An engine that has connected once (so a wrong URL fails here, in one line)."""
    require("sqlalchemy", "store")
    from sqlalchemy import create_engine, event, exc
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(_normalise(url))
    except exc.ArgumentError:
        raise UserError(f"--db {url!r} is not a database URL; use e.g. sqlite:///monitor.db or "
                        "postgresql://user@host/dbname") from None
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(parsed, pool_pre_ping=not sqlite,
                               connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000} if sqlite else {})
    except (ModuleNotFoundError, exc.NoSuchModuleError) as e:
        driver = "pip install 'acceltune[postgres]'" if parsed.get_backend_name() == "postgresql" else "install its driver"
        raise UserError(f"--db {safe_url(url)}: no driver for it ({e}); {driver}") from None
    if sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        with engine.connect():
            pass
    except exc.OperationalError as e:
        reason = str(e.orig).strip().splitlines()[0] if e.orig is not None else str(e).splitlines()[0]
        raise UserError(f"cannot open database {safe_url(url)}: {reason}; check the URL, that the server "
                        "is running and that this user may connect") from None
    return engine


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers never block the writer; NORMAL is durable at every commit in WAL mode except on power loss.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def upgrade(engine: "Engine", migrations: Path, version_table: str) -> None:
    """Bring the schema to this acceltune's head; refuse a database written by a newer one.

    `migrations` is an Alembic script directory (env.py calls `run_migrations`); `version_table` is the
    application's own (e.g. "monitor_schema_version").
    """
    require("alembic", "store")
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations))
    script = ScriptDirectory.from_config(cfg)
    with engine.begin() as connection:
        current = MigrationContext.configure(connection, opts={"version_table": version_table}).get_current_revision()
        if current is not None and current not in {rev.revision for rev in script.walk_revisions()}:
            raise UserError(f"database {safe_url(str(engine.url))} has schema {current!r} from a newer acceltune "
                            "(unknown here); upgrade acceltune or use another --db")
        cfg.attributes["connection"] = connection
        cfg.attributes["version_table"] = version_table
        command.upgrade(cfg, "head")


def run_migrations(context, target_metadata=None) -> None:
    """The body of every application's Alembic env.py: online, on the connection `upgrade` passes."""
    attrs = context.config.attributes
    context.configure(connection=attrs["connection"], target_metadata=target_metadata,
                      version_table=attrs["version_table"], render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
