"""Conversations and their turns.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade():
    op.create_table(
        "assistant_conversations",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("turns", sa.Integer, nullable=False),
        sa.Column("low_confidence_streak", sa.Integer, nullable=False),
        sa.Column("handoffs", sa.Integer, nullable=False),
    )
    op.create_index("ix_assistant_conversations_updated_at", "assistant_conversations", ["updated_at"])
    op.create_table(
        "assistant_turns",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("conversation_id", sa.String(128),
                  sa.ForeignKey("assistant_conversations.id", ondelete="CASCADE"), nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
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
    op.create_index("ix_assistant_turns_conversation_id", "assistant_turns", ["conversation_id"])
    op.create_index("ix_assistant_turns_at", "assistant_turns", ["at"])


def downgrade():
    op.drop_table("assistant_turns")
    op.drop_table("assistant_conversations")
