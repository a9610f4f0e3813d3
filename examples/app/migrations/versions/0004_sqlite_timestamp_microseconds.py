"""SQLite: server-set timestamps get 6 fractional digits, like the values SQLAlchemy binds.

SQLite compares DATETIME values as text. The old default wrote '...:05.123', SQLAlchemy binds
'...:05.123000', so '...:05.123' sorted before an equal bound value and keyset pages on
created_at skipped or repeated rows. Only SQLite changes; databases created by 0001 after this
fix already have the new default (0001 compiles utcnow() when it runs), and this is a no-op there.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import examples.app.types

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTCDateTime = examples.app.types.UTCDateTime
# Frozen here: what each side of this revision writes on SQLite.
OLD = sa.text("(STRFTIME('%Y-%m-%d %H:%M:%f', 'now'))")
NEW = sa.text("(STRFTIME('%Y-%m-%d %H:%M:%f000', 'now'))")
COLUMNS: dict[str, tuple[str, ...]] = {
    "team": ("created_at", "updated_at"),
    "hero": ("created_at", "updated_at"),
    "hero_power": ("acquired_at",),
}


def set_default(default: sa.TextClause) -> None:
    for table, columns in COLUMNS.items():
        with op.batch_alter_table(table) as batch:  # SQLite: copies the table
            for column in columns:
                batch.alter_column(
                    column,
                    existing_type=UTCDateTime(),
                    existing_nullable=False,
                    server_default=default,
                )


def upgrade() -> None:
    if op.get_context().dialect.name != "sqlite":
        return
    set_default(NEW)
    for table, columns in COLUMNS.items():
        for column in columns:  # '2026-11-27 08:04:05.123' (23 characters) -> '...05.123000'
            op.execute(
                f"UPDATE {table} SET {column} = {column} || '000' WHERE length({column}) = 23"
            )


def downgrade() -> None:
    if op.get_context().dialect.name != "sqlite":
        return
    set_default(OLD)  # stored values keep their 6 digits: SQLAlchemy reads both
