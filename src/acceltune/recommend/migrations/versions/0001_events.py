"""recommend_events: one row per posted event, unique per (user, item, timestamp)."""

import sqlalchemy as sa
from alembic import op

revision = "0001_events"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "recommend_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("item_id", sa.String(256), nullable=False),
        sa.Column("timestamp", sa.Float, nullable=False),
        sa.UniqueConstraint("user_id", "item_id", "timestamp", name="uq_recommend_events_event"),
    )
    op.create_index("ix_recommend_events_user", "recommend_events", ["user_id", "timestamp"])


def downgrade() -> None:
    op.drop_table("recommend_events")
