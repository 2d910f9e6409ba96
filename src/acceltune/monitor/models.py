"""The monitor's tables (SQLAlchemy 2 Core; the Alembic migrations in migrations/ create them).

Times are integer epoch milliseconds (UTC): portable, compact, fast to index on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

VERSION_TABLE = "monitor_schema_version"

items = Table(
    "monitor_items", metadata,
    Column("id", String(200), primary_key=True),
    Column("ts", BigInteger, nullable=False),
    Column("timestamp", String(64), nullable=False),  # as given
    Column("text", Text, nullable=False),
    Column("source", String(200)),
    Column("entities", Text, nullable=False),  # JSON list, for display; monitor_item_entities is what is queried
    Column("label", String(100), nullable=False),
    Column("score", Float, nullable=False),  # the label's probability
    Column("sentiment", Float, nullable=False),  # P(positive) - P(negative)
    Column("probabilities", Text, nullable=False),  # JSON {label: probability}
    Column("model_version", String(100), nullable=False),
    Column("ingested_at", BigInteger, nullable=False),
    Index("monitor_items_ts", "ts", "id"),
)

item_entities = Table(
    "monitor_item_entities", metadata,
    Column("entity", String(200), primary_key=True),
    Column("ts", BigInteger, primary_key=True),
    Column("item_id", String(200), primary_key=True),
)

buckets = Table(
    "monitor_index", metadata,
    Column("entity", String(200), primary_key=True),
    Column("window", String(16), primary_key=True),
    Column("start", BigInteger, primary_key=True),
    Column("n", Integer, nullable=False),
    Column("sentiment_sum", Float, nullable=False),
    Column("negative", Integer, nullable=False),
    Column("positive", Integer, nullable=False),
)

alerts = Table(
    "monitor_alerts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(300), nullable=False, unique=True),  # entity/window/start/rule: stored once
    Column("entity", String(200), nullable=False),
    Column("window", String(16), nullable=False),
    Column("start", BigInteger, nullable=False),
    Column("rule", String(32), nullable=False),
    Column("value", Float, nullable=False),
    Column("threshold", Float, nullable=False),
    Column("n", Integer, nullable=False),
    Column("message", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("delivered_at", BigInteger),
    Column("attempts", Integer, nullable=False, default=0),
    Index("monitor_alerts_entity", "entity", "id"),
)

positions = Table(
    "monitor_positions", metadata,
    Column("source", String(1000), primary_key=True),  # the input file's absolute path
    Column("identity", String(64), nullable=False),  # hash of its first bytes: a replaced file starts over
    Column("offset", BigInteger, nullable=False),
    Column("line", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)
