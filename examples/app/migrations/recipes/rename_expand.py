"""Expand: team.headquarters is becoming team.base; add base, keep headquarters.

A recipe, not a revision of the reference app (Alembic only reads versions/): the tests copy it,
backfill_in_batches.py and rename_contract.py into a scratch scripts folder on top of the head.
Deploy 1: runs before app version 2 starts (rename_app.py: writes both, reads headquarters).

Revision ID: 0100
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import AutoString

revision: str = "0100"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# --8<-- [start:expand]
def upgrade() -> None:
    # Nullable, no default: a catalog change on PostgreSQL and MariaDB (no table rewrite), and
    # app version 1, which doesn't know the column, keeps inserting.
    with op.batch_alter_table("team") as batch:
        batch.add_column(sa.Column("base", AutoString(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("team") as batch:
        batch.drop_column("base")


# --8<-- [end:expand]
