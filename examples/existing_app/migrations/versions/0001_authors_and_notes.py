"""Authors and notes, as `alembic revision --autogenerate` wrote it before the models had a
naming convention: the constraints have no names, so each database named them itself.

Revision ID: 0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import AutoString

from examples.app.types import UTCDateTime, utcnow

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "author",
        sa.Column("name", AutoString(length=100), nullable=False),
        sa.Column("email", AutoString(length=255), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
    )
    op.create_index(op.f("ix_author_name"), "author", ["name"], unique=False)
    op.create_table(
        "note",
        sa.Column("title", AutoString(length=200), nullable=False),
        sa.Column("body", AutoString(length=10000), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "created_at", UTCDateTime(timezone=True), server_default=utcnow(), nullable=False
        ),
        sa.ForeignKeyConstraint(["author_id"], ["author.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_note_author_id"), "note", ["author_id"], unique=False)


def downgrade() -> None:
    op.drop_table("note")  # with its indexes (MariaDB refuses to drop a foreign key's index first)
    op.drop_table("author")
