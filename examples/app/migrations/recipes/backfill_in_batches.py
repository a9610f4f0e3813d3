"""Backfill team.base from team.headquarters in batches, then swap which column is required.

A recipe, not a revision of the reference app (see rename_expand.py). Deployed after every
instance runs app version 2 (which writes both columns), with app version 3 (base only).

Revision ID: 0101
Revises: 0100
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import AutoString

revision: str = "0101"
down_revision: str | Sequence[str] | None = "0100"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The table as this revision sees it (never the app's model, which keeps changing).
team = sa.table(
    "team",
    sa.column("id", sa.Integer()),
    sa.column("headquarters", sa.String(200)),
    sa.column("base", sa.String(200)),
)


# --8<-- [start:backfill]
BATCH_ROWS = 500  # rows per UPDATE, and per transaction


def backfill() -> None:
    after = 0  # keyset on the primary key (ids start at 1), never OFFSET
    while True:
        # One transaction per batch on every backend: autocommit_block commits the revision's
        # transaction first. A rerun skips the rows done (base IS NULL).
        with op.get_context().autocommit_block():
            # The batch's last id. A derived table: MariaDB refuses LIMIT in IN (subquery).
            ids = (
                sa.select(team.c.id)
                .where(team.c.id > after, team.c.base.is_(None))
                .order_by(team.c.id)
                .limit(BATCH_ROWS)
                .subquery()
            )
            last = op.get_bind().execute(sa.select(sa.func.max(ids.c.id))).scalar()
            if last is None:
                break
            op.execute(
                team.update()
                .where(team.c.id > after, team.c.id <= last, team.c.base.is_(None))
                .values(base=team.c.headquarters)
            )
        after = last


# --8<-- [end:backfill]


# --8<-- [start:swap_required]
def upgrade() -> None:
    backfill()  # first: autocommit_block commits what precedes it, and a rerun would repeat it
    # Version 2 writes both columns, version 3 only base: base NOT NULL, headquarters nullable.
    # PostgreSQL: SET NOT NULL reads the whole table under an exclusive lock (no rewrite).
    with op.batch_alter_table("team") as batch:
        batch.alter_column("base", existing_type=AutoString(length=200), nullable=False)
        batch.alter_column("headquarters", existing_type=AutoString(length=200), nullable=True)


# --8<-- [end:swap_required]


def downgrade() -> None:
    op.execute(  # rows version 3 wrote have no headquarters
        team.update().where(team.c.headquarters.is_(None)).values(headquarters=team.c.base)
    )
    with op.batch_alter_table("team") as batch:
        batch.alter_column("headquarters", existing_type=AutoString(length=200), nullable=False)
        batch.alter_column("base", existing_type=AutoString(length=200), nullable=True)
