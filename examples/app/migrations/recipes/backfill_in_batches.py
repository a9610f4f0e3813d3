"""Backfill team.base from team.headquarters in batches, then swap which column is required.

A recipe, not a revision of the reference app (see rename_expand.py). Deploy 2: runs once every
instance runs app version 2 (writes both columns), before version 3 (writes both, reads base).

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
        # transaction first. Rows version 1 added have no base; rows it edited, a stale one.
        # A rerun skips the rows done.
        with op.get_context().autocommit_block():
            # The batch's last id. A derived table: MariaDB refuses LIMIT in IN (subquery).
            ids = (
                sa.select(team.c.id)
                .where(team.c.id > after, team.c.base.is_distinct_from(team.c.headquarters))
                .order_by(team.c.id)
                .limit(BATCH_ROWS)
                .subquery()
            )
            last = op.get_bind().execute(sa.select(sa.func.max(ids.c.id))).scalar()
            if last is None:
                break
            op.execute(
                team.update()
                .where(team.c.id > after, team.c.id <= last)
                .where(team.c.base.is_distinct_from(team.c.headquarters))
                .values(base=team.c.headquarters)
            )
        after = last


# --8<-- [end:backfill]


# --8<-- [start:swap_required]
def upgrade() -> None:
    backfill()  # first: autocommit_block commits what precedes it, and a rerun would repeat it
    # base NOT NULL (versions 2 and 3 write it), headquarters nullable (version 4 won't).
    dialect = op.get_context().dialect.name
    if dialect == "postgresql":
        # SET NOT NULL alone reads every row under an exclusive lock. A valid CHECK spares it
        # that (PostgreSQL 12+); VALIDATE reads without blocking writes. Autocommit: else ADD's
        # exclusive lock would last until the end.
        with op.get_context().autocommit_block():
            op.execute("ALTER TABLE team DROP CONSTRAINT IF EXISTS base_not_null")  # a rerun's
            op.execute(
                "ALTER TABLE team ADD CONSTRAINT base_not_null CHECK (base IS NOT NULL) NOT VALID"
            )
            op.execute("ALTER TABLE team VALIDATE CONSTRAINT base_not_null")
        op.execute("ALTER TABLE team ALTER base SET NOT NULL, ALTER headquarters DROP NOT NULL")
        op.execute("ALTER TABLE team DROP CONSTRAINT base_not_null")  # in the ALTER above: a scan
    elif dialect in ("mysql", "mariadb"):
        # With no ALGORITHM MariaDB copies the table, blocking writes, when it can't alter it in
        # place. In place and online, or fail (ERROR 1845):
        op.execute(
            "ALTER TABLE team MODIFY base VARCHAR(200) NOT NULL,"
            " MODIFY headquarters VARCHAR(200) NULL, ALGORITHM=INPLACE, LOCK=NONE"
        )
    else:  # SQLite: batch mode copies the table
        with op.batch_alter_table("team") as batch:
            batch.alter_column("base", existing_type=AutoString(length=200), nullable=False)
            batch.alter_column("headquarters", existing_type=AutoString(length=200), nullable=True)


# --8<-- [end:swap_required]


def downgrade() -> None:
    op.execute(  # rows version 4 wrote or edited: no headquarters, or a stale one
        team.update()
        .where(team.c.headquarters.is_distinct_from(team.c.base))
        .values(headquarters=team.c.base)
    )
    with op.batch_alter_table("team") as batch:
        batch.alter_column("headquarters", existing_type=AutoString(length=200), nullable=False)
        batch.alter_column("base", existing_type=AutoString(length=200), nullable=True)
