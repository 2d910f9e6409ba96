"""The monitor's database: open (upgrade or refuse), write one batch in one transaction, and the reads
behind the API and the dashboard.

A batch's transaction holds its new items (inserted once by id: ``ON CONFLICT DO NOTHING RETURNING``
says which were new, also with a concurrent writer), their entities, the index deltas of exactly those
items, the alerts they raise and the input position. After a crash either all of it is there or none.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import orjson
from sqlalchemy import and_, exc, func, literal_column, or_, select, union_all, update

from acceltune.errors import UserError
from acceltune.monitor import index as index_math
from acceltune.monitor.alerts import Alert, Bucket, evaluate
from acceltune.monitor.models import VERSION_TABLE, alerts, buckets, item_entities, items, metadata, positions
from acceltune.monitor.settings import AlertRules, Window
from acceltune.storage import engine_for, safe_url, upgrade

MIGRATIONS = Path(__file__).parent / "migrations"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Position:
    """Where a file's input has been read up to (committed with the batch that got there)."""

    source: str
    identity: str
    offset: int
    line: int


@dataclass(frozen=True)
class Row:
    """One scored item, ready to store."""

    id: str
    ts: int
    timestamp: str
    text: str
    source: str | None
    entities: tuple[str, ...]
    label: str
    score: float
    sentiment: float
    probabilities: dict[str, float]
    negative: bool
    positive: bool


class Store:
    def __init__(self, engine):
        self.engine = engine
        self.dialect = engine.dialect.name
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        elif self.dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            raise UserError(f"--db {safe_url(str(engine.url))}: the monitor supports SQLite and PostgreSQL")
        self._insert = insert

    @classmethod
    def open(cls, url: str) -> "Store":
        """Connect, bring the schema to this version (own version table) and check it; one-line errors."""
        engine = engine_for(url)
        try:
            upgrade(engine, MIGRATIONS, VERSION_TABLE)
            with engine.connect() as c:  # every table and column this code uses is there
                for table in metadata.sorted_tables:
                    c.execute(select(*table.c).limit(0))
        except exc.SQLAlchemyError as e:
            reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
            raise UserError(f"database {safe_url(url)} does not hold the monitor's schema ({reason}); "
                            "use a new --db or one written by 'acceltune monitor'") from None
        return cls(engine)

    # ------------------------------------------------------------------------------------ writes

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        with self.engine.connect() as c:
            return set(c.execute(select(items.c.id).where(items.c.id.in_(ids))).scalars())

    def position(self, source: str) -> Position | None:
        with self.engine.connect() as c:
            row = c.execute(select(positions).where(positions.c.source == source)).first()
        return None if row is None else Position(row.source, row.identity, row.offset, row.line)

    def write_batch(self, rows: Sequence[Row], *, model_version: str, windows: Sequence[Window], rules: AlertRules,
                    position: Position | None = None) -> tuple[list[str], list[Alert]]:
        """Store ``rows`` (those whose id is new), update the index, store new alerts and the position,
        in one transaction. Returns the ids inserted and the alerts raised."""
        ins = self._insert
        now = now_ms()
        with self.engine.begin() as c:
            inserted: list[str] = []
            if rows:
                stmt = ins(items).on_conflict_do_nothing(index_elements=["id"]).returning(items.c.id)
                inserted = list(c.execute(stmt, [{
                    "id": r.id, "ts": r.ts, "timestamp": r.timestamp, "text": r.text, "source": r.source,
                    "entities": orjson.dumps(r.entities).decode(), "label": r.label, "score": r.score,
                    "sentiment": r.sentiment, "probabilities": orjson.dumps(r.probabilities).decode(),
                    "model_version": model_version, "ingested_at": now} for r in rows]).scalars())
            new = set(inserted)
            stored = [r for r in rows if r.id in new]
            tags = [{"entity": e, "ts": r.ts, "item_id": r.id} for r in stored for e in r.entities]
            if tags:
                c.execute(ins(item_entities).on_conflict_do_nothing(), tags)
            raised = self._update_index(c, stored, windows, rules, now) if stored else []
            if position is not None:
                values = {"source": position.source, "identity": position.identity, "offset": position.offset,
                          "line": position.line, "updated_at": now}
                c.execute(ins(positions).values(values).on_conflict_do_update(index_elements=["source"], set_=values))
        return inserted, raised

    def _update_index(self, c, stored: Sequence[Row], windows: Sequence[Window], rules: AlertRules,
                      now: int) -> list[Alert]:
        changes = index_math.deltas((index_math.Scored(r.entities, r.ts, r.sentiment, r.negative, r.positive)
                                     for r in stored), windows)
        keys = sorted(changes)  # one order for every writer: concurrent PostgreSQL upserts cannot deadlock
        stmt = self._insert(buckets)
        stmt = stmt.on_conflict_do_update(index_elements=["entity", "window", "start"], set_={
            "n": buckets.c.n + stmt.excluded.n, "sentiment_sum": buckets.c.sentiment_sum + stmt.excluded.sentiment_sum,
            "negative": buckets.c.negative + stmt.excluded.negative, "positive": buckets.c.positive + stmt.excluded.positive})
        c.execute(stmt, [{"entity": e, "window": w, "start": s, "n": changes[e, w, s].n,
                          "sentiment_sum": changes[e, w, s].sentiment_sum, "negative": changes[e, w, s].negative,
                          "positive": changes[e, w, s].positive} for e, w, s in keys])
        raised = []
        for (entity, window, start), (current, history) in zip(keys, self._buckets_and_histories(c, keys, rules)):
            for alert in evaluate(entity, window, current, history, rules):
                if self._store_alert(c, alert, now):
                    raised.append(alert)
        return raised

    @staticmethod
    def _buckets_and_histories(c, keys, rules: AlertRules) -> list[tuple[Bucket, list[Bucket]]]:
        """For each (entity, window, start): that bucket and its trailing history (the previous buckets with
        at least min_items, newest first, at most `history`). One statement for all keys: a UNION ALL of one
        index-ordered, LIMITed scan per key, so a database's round trips do not grow with the keys."""
        cols = (buckets.c.start, buckets.c.n, buckets.c.sentiment_sum, buckets.c.negative)
        parts = []
        for k, (entity, window, start) in enumerate(keys):
            scan = (select(literal_column(str(k)).label("k"), *cols)
                    .where(buckets.c.entity == entity, buckets.c.window == window, buckets.c.start <= start,
                           or_(buckets.c.start == start, buckets.c.n >= rules.min_items))
                    .order_by(buckets.c.start.desc()).limit(rules.history + 1).subquery())
            parts.append(select(scan))
        found: list[list[Bucket]] = [[] for _ in keys]
        for row in c.execute(union_all(*parts) if len(parts) > 1 else parts[0]):
            found[row.k].append(Bucket(row.start, row.n, row.sentiment_sum, row.negative))
        out = []
        for rows in found:
            rows.sort(key=lambda b: b.start, reverse=True)
            out.append((rows[0], rows[1:]))
        return out

    def _store_alert(self, c, alert: Alert, now: int) -> bool:
        stmt = self._insert(alerts).values(
            key=alert.key, entity=alert.entity, window=alert.window, start=alert.start, rule=alert.rule,
            value=alert.value, threshold=alert.threshold, n=alert.n, message=alert.message, created_at=now,
            attempts=0).on_conflict_do_nothing(index_elements=["key"]).returning(alerts.c.id)
        return c.execute(stmt).first() is not None

    # ------------------------------------------------------------------------------------ webhook state

    def undelivered_alerts(self, limit: int = 100) -> list[dict]:
        with self.engine.connect() as c:
            rows = c.execute(select(alerts).where(alerts.c.delivered_at.is_(None)).order_by(alerts.c.id).limit(limit))
            return [alert_json(r) for r in rows]

    def record_attempt(self, alert_id: int, delivered: bool) -> None:
        values = {"attempts": alerts.c.attempts + 1}
        if delivered:
            values["delivered_at"] = now_ms()
        with self.engine.begin() as c:
            c.execute(update(alerts).where(alerts.c.id == alert_id).values(**values))

    # ------------------------------------------------------------------------------------ reads

    def index_points(self, entity: str, window: str, *, since: int | None, until: int | None, after: int | None,
                     limit: int) -> list[dict]:
        """Buckets in time order from ``since`` (inclusive) to ``until`` (exclusive), after the cursor."""
        q = select(buckets).where(buckets.c.entity == entity, buckets.c.window == window)
        if since is not None:
            q = q.where(buckets.c.start >= since)
        if until is not None:
            q = q.where(buckets.c.start < until)
        if after is not None:
            q = q.where(buckets.c.start > after)
        with self.engine.connect() as c:
            rows = c.execute(q.order_by(buckets.c.start).limit(limit)).all()
        return [{"start_ms": r.start, "index": r.sentiment_sum / r.n, "n": r.n, "negative_share": r.negative / r.n,
                 "positive_share": r.positive / r.n} for r in rows]

    def latest_items(self, entity: str | None, *, before: tuple[int, str] | None, limit: int) -> list[dict]:
        """Newest first; ``before``: the (ts, id) cursor of the last item of the previous page."""
        if entity is None:
            q = select(items)
            ts, ident = items.c.ts, items.c.id
        else:
            q = select(items).join(item_entities, item_entities.c.item_id == items.c.id).where(item_entities.c.entity == entity)
            ts, ident = item_entities.c.ts, item_entities.c.item_id
        if before is not None:
            q = q.where(or_(ts < before[0], and_(ts == before[0], ident < before[1])))
        with self.engine.connect() as c:
            rows = c.execute(q.order_by(ts.desc(), ident.desc()).limit(limit)).all()
        return [{"id": r.id, "ts": r.ts, "timestamp": r.timestamp, "text": r.text, "source": r.source,
                 "entities": orjson.loads(r.entities), "label": r.label, "score": r.score, "sentiment": r.sentiment,
                 "probabilities": orjson.loads(r.probabilities), "model_version": r.model_version} for r in rows]

    def alerts(self, entity: str | None, *, before: int | None, limit: int) -> list[dict]:
        q = select(alerts)
        if entity is not None:
            q = q.where(alerts.c.entity == entity)
        if before is not None:
            q = q.where(alerts.c.id < before)
        with self.engine.connect() as c:
            return [alert_json(r) for r in c.execute(q.order_by(alerts.c.id.desc()).limit(limit))]

    def entities(self, window: str, limit: int) -> list[dict]:
        """Entities by item count (from the index of ``window``), most first."""
        total = func.sum(buckets.c.n)
        q = (select(buckets.c.entity, total.label("items"), func.max(buckets.c.start).label("last"))
             .where(buckets.c.window == window).group_by(buckets.c.entity)
             .order_by(total.desc(), buckets.c.entity).limit(limit))
        with self.engine.connect() as c:
            return [{"entity": r.entity, "items": int(r.items), "last_ms": r.last} for r in c.execute(q)]

    def count_items(self) -> int:
        with self.engine.connect() as c:
            return c.execute(select(func.count()).select_from(items)).scalar_one()


def alert_json(r) -> dict:
    return {"id": r.id, "key": r.key, "entity": r.entity, "window": r.window, "start_ms": r.start, "rule": r.rule,
            "value": r.value, "threshold": r.threshold, "n": r.n, "message": r.message, "created_at_ms": r.created_at,
            "delivered": r.delivered_at is not None}
