"""acceltune.storage: engines for SQLite and PostgreSQL, one-line errors, Alembic upgrades per application."""

from __future__ import annotations

import textwrap

import pytest
from sqlalchemy import inspect, text

from acceltune.errors import UserError
from acceltune.storage import engine_for, safe_url, upgrade


def _migrations(tmp_path, revisions=("0001",)):
    root = tmp_path / "migrations"
    (root / "versions").mkdir(parents=True)
    (root / "env.py").write_text("from alembic import context\nfrom acceltune.storage import run_migrations\n"
                                 "run_migrations(context)\n")
    (root / "script.py.mako").write_text("")
    down = None
    for rev in revisions:
        (root / "versions" / f"{rev}.py").write_text(textwrap.dedent(f"""
            import sqlalchemy as sa
            from alembic import op
            revision = {rev!r}
            down_revision = {down!r}
            def upgrade():
                op.create_table("t{rev}", sa.Column("id", sa.Integer, primary_key=True))
            """))
        down = rev
    return root


def test_upgrade_creates_the_schema_once_and_refuses_a_newer_one(database_url, tmp_path):
    engine = engine_for(database_url)
    migrations = _migrations(tmp_path)
    upgrade(engine, migrations, "app_schema_version")
    upgrade(engine, migrations, "app_schema_version")  # idempotent
    tables = set(inspect(engine).get_table_names())
    assert {"t0001", "app_schema_version"} <= tables
    with engine.begin() as c:
        c.execute(text("UPDATE app_schema_version SET version_num = 'ffff'"))
    with pytest.raises(UserError, match="newer acceltune"):
        upgrade(engine, migrations, "app_schema_version")


def test_sqlite_runs_in_wal_mode(tmp_path):
    engine = engine_for(f"sqlite:///{tmp_path / 'sub' / 'a.db'}")
    with engine.connect() as c:
        assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"


@pytest.mark.parametrize("url, message", [
    ("not a url", "is not a database URL"),
    ("postgresql://nobody:secret@127.0.0.1:1/none", "cannot open database"),
    ("nosuchdb://x/y", "no driver"),
])
def test_bad_databases_are_one_line_errors(url, message):
    with pytest.raises(UserError, match=message) as e:
        engine_for(url)
    assert "\n" not in str(e.value) and "secret" not in str(e.value)


def test_safe_url_hides_the_password():
    assert "secret" not in safe_url("postgresql://u:secret@h/db")
