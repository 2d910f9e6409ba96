"""The monitor's first schema: items, their entities, index buckets, alerts, input positions."""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade():
    op.create_table(
        "monitor_items",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("timestamp", sa.String(64), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("source", sa.String(200)),
        sa.Column("entities", sa.Text, nullable=False),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("sentiment", sa.Float, nullable=False),
        sa.Column("probabilities", sa.Text, nullable=False),
        sa.Column("model_version", sa.String(100), nullable=False),
        sa.Column("ingested_at", sa.BigInteger, nullable=False),
    )
    op.create_index("monitor_items_ts", "monitor_items", ["ts", "id"])
    op.create_table(
        "monitor_item_entities",
        sa.Column("entity", sa.String(200), primary_key=True),
        sa.Column("ts", sa.BigInteger, primary_key=True),
        sa.Column("item_id", sa.String(200), primary_key=True),
    )
    op.create_table(
        "monitor_index",
        sa.Column("entity", sa.String(200), primary_key=True),
        sa.Column("window", sa.String(16), primary_key=True),
        sa.Column("start", sa.BigInteger, primary_key=True),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("sentiment_sum", sa.Float, nullable=False),
        sa.Column("negative", sa.Integer, nullable=False),
        sa.Column("positive", sa.Integer, nullable=False),
    )
    op.create_table(
        "monitor_alerts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(300), nullable=False, unique=True),
        sa.Column("entity", sa.String(200), nullable=False),
        sa.Column("window", sa.String(16), nullable=False),
        sa.Column("start", sa.BigInteger, nullable=False),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("delivered_at", sa.BigInteger),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("monitor_alerts_entity", "monitor_alerts", ["entity", "id"])
    op.create_table(
        "monitor_positions",
        sa.Column("source", sa.String(1000), primary_key=True),
        sa.Column("identity", sa.String(64), nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("line", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
