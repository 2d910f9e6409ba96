"""Events posted to a running recommender (POST /v1/events), in any SQLAlchemy database
(acceltune.storage: SQLite by default, PostgreSQL through psycopg 3); schema kept by this package's
Alembic migrations under the version table ``recommend_schema_version``.
A user's history at request time is what training knew of them followed by their stored events in
timestamp order. Posting the same (user, item, timestamp) twice stores it once."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "recommend_schema_version"

metadata = sa.MetaData()
events = sa.Table(
    "recommend_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.String(256), nullable=False),
    sa.Column("item_id", sa.String(256), nullable=False),
    sa.Column("timestamp", sa.Float, nullable=False),
    sa.UniqueConstraint("user_id", "item_id", "timestamp", name="uq_recommend_events_event"),
    sa.Index("ix_recommend_events_user", "user_id", "timestamp"),
)


class EventStore:
    def __init__(self, url: str):
        from acceltune.storage import engine_for, upgrade

        self.engine = engine_for(url)
        upgrade(self.engine, MIGRATIONS, VERSION_TABLE)

    def add(self, user_id: str, item_id: str, timestamp: float) -> bool:
        """Store one event; False if it was stored already (idempotent)."""
        try:
            with self.engine.begin() as c:
                c.execute(events.insert().values(user_id=user_id, item_id=item_id, timestamp=timestamp))
            return True
        except sa.exc.IntegrityError:
            return False

    def history(self, user_id: str) -> list[str]:
        """The user's stored items, oldest first (ties in posting order)."""
        q = sa.select(events.c.item_id).where(events.c.user_id == user_id).order_by(events.c.timestamp, events.c.id)
        with self.engine.connect() as c:
            return [r[0] for r in c.execute(q)]

    def close(self) -> None:
        self.engine.dispose()
