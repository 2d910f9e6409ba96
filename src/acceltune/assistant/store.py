"""Conversations and their turns (every message, its answer, and whether it was handed off), in any database
SQLAlchemy reaches (acceltune.storage: SQLite by default), kept for a bounded number of days.

The server writes from its one batching thread: each batch of messages is one transaction (their
conversations' low-confidence streaks read, their turns written), so storing costs one commit per batch,
not one per message, and turns of one conversation are stored in the order they were answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Iterator

import sqlalchemy as sa

from acceltune.errors import UserError
from acceltune.storage import engine_for, upgrade

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "assistant_schema_version"
DEFAULT_DB = "sqlite:///assistant.db"
DEFAULT_RETENTION_DAYS = 30.0
PURGE_EVERY_S = 3600.0
"""How often a running server deletes what is past retention (also once at start)."""

metadata = sa.MetaData()
conversations = sa.Table(
    "assistant_conversations", metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False, index=True),
    sa.Column("turns", sa.Integer, nullable=False),
    sa.Column("low_confidence_streak", sa.Integer, nullable=False),
    sa.Column("handoffs", sa.Integer, nullable=False),
)
turns = sa.Table(
    "assistant_turns", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("conversation_id", sa.String(128), sa.ForeignKey("assistant_conversations.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("at", sa.DateTime, nullable=False, index=True),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("context", sa.JSON, nullable=False),
    sa.Column("predicted", sa.String(200), nullable=False),
    sa.Column("intent", sa.String(200), nullable=False),
    sa.Column("confidence", sa.Float, nullable=False),
    sa.Column("oos", sa.Boolean, nullable=False),
    sa.Column("oos_score", sa.Float, nullable=True),
    sa.Column("low_confidence", sa.Boolean, nullable=False),
    sa.Column("handoff", sa.Boolean, nullable=False),
    sa.Column("reason", sa.String(32), nullable=True),
    sa.Column("reply", sa.Text, nullable=False),
)


# One statement for every conversation of a batch (executemany): built once, compiled once.
_UPDATE_CONVERSATION = (conversations.update().where(conversations.c.id == sa.bindparam("cid")).values(
    updated_at=sa.bindparam("at"), turns=conversations.c.turns + sa.bindparam("n"),
    handoffs=conversations.c.handoffs + sa.bindparam("h"), low_confidence_streak=sa.bindparam("streak")))


def _sqlite_file_must_exist(url: str) -> None:
    parsed = sa.engine.make_url(url) if "://" in url else None
    if parsed is not None and parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        if not Path(parsed.database).expanduser().is_file():
            raise UserError(f"--db {url}: no such database file; pass the --db the assistant ran with")


def utcnow() -> datetime:
    """Naive UTC: stored alike in SQLite (no time zones) and PostgreSQL."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class Turn:
    conversation_id: str
    message: str
    context: dict
    predicted: str
    intent: str
    confidence: float
    oos: bool
    oos_score: float | None
    low_confidence: bool
    handoff: bool
    reason: str | None
    reply: str
    streak: int
    """The conversation's low-confidence streak after this turn."""


class ConversationStore:
    """The assistant's tables in one database, upgraded to this acceltune's schema on open."""

    def __init__(self, url: str = DEFAULT_DB, retention_days: float = DEFAULT_RETENTION_DAYS, *, existing: bool = False):
        """``existing``: refuse a SQLite file that is not there (reading, a typo would give an empty database)."""
        if not retention_days > 0:
            raise UserError(f"--retention-days must be > 0, got {retention_days:g}")
        self.retention = timedelta(days=retention_days)
        if existing:
            _sqlite_file_must_exist(url)
        self.engine = engine_for(url)
        upgrade(self.engine, MIGRATIONS, VERSION_TABLE)

    def streaks(self, conversation_ids: Iterable[str]) -> dict[str, int]:
        """Each known conversation's low-confidence streak (unknown ones are new: 0)."""
        ids = sorted(set(conversation_ids))
        with self.engine.connect() as c:
            rows = c.execute(sa.select(conversations.c.id, conversations.c.low_confidence_streak)
                             .where(conversations.c.id.in_(ids)))
            return {cid: streak for cid, streak in rows}

    def record(self, batch: list[Turn], at: datetime) -> None:
        """Store a batch of turns in one transaction (in order), with their conversations' new state."""
        if not batch:
            return
        last: dict[str, Turn] = {}
        count: dict[str, int] = {}
        handoffs: dict[str, int] = {}
        for t in batch:
            last[t.conversation_id] = t
            count[t.conversation_id] = count.get(t.conversation_id, 0) + 1
            handoffs[t.conversation_id] = handoffs.get(t.conversation_id, 0) + int(t.handoff)
        with self.engine.begin() as c:
            known = set(c.execute(sa.select(conversations.c.id).where(conversations.c.id.in_(sorted(last)))).scalars())
            new = [{"id": cid, "started_at": at, "updated_at": at, "turns": count[cid], "handoffs": handoffs[cid],
                    "low_confidence_streak": t.streak} for cid, t in last.items() if cid not in known]
            if new:
                c.execute(conversations.insert(), new)
            if known:
                c.execute(_UPDATE_CONVERSATION, [{"cid": cid, "at": at, "n": count[cid], "h": handoffs[cid],
                                                  "streak": last[cid].streak} for cid in known])
            c.execute(turns.insert(), [{
                "conversation_id": t.conversation_id, "at": at, "message": t.message, "context": t.context,
                "predicted": t.predicted, "intent": t.intent, "confidence": t.confidence, "oos": t.oos,
                "oos_score": t.oos_score, "low_confidence": t.low_confidence, "handoff": t.handoff,
                "reason": t.reason, "reply": t.reply} for t in batch])

    def purge(self, now: datetime | None = None) -> int:
        """Delete turns and conversations last active before the retention window; the number of turns deleted."""
        cutoff = (now or utcnow()) - self.retention
        with self.engine.begin() as c:
            deleted = c.execute(turns.delete().where(turns.c.at < cutoff)).rowcount
            c.execute(conversations.delete().where(conversations.c.updated_at < cutoff))
        return deleted

    def for_review(self) -> Iterator[sa.Row]:
        """Handed-off and low-confidence turns, oldest first."""
        query = (sa.select(turns).where(sa.or_(turns.c.handoff, turns.c.low_confidence))
                 .order_by(turns.c.at, turns.c.id))
        with self.engine.connect() as c:
            yield from c.execute(query)

    def conversation(self, conversation_id: str) -> list[sa.Row]:
        """One conversation's turns, in order."""
        with self.engine.connect() as c:
            return list(c.execute(sa.select(turns).where(turns.c.conversation_id == conversation_id)
                                  .order_by(turns.c.id)))
