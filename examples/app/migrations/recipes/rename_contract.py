"""Contract: drop team.headquarters, once no instance runs app version 3 (deploy 4).

A recipe, not a revision of the reference app (see rename_expand.py).

Revision ID: 0102
Revises: 0101
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import AutoString

revision: str = "0102"
down_revision: str | Sequence[str] | None = "0101"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

team = sa.table(
    "team", sa.column("headquarters", sa.String(200)), sa.column("base", sa.String(200))
)


# --8<-- [start:contract]
def upgrade() -> None:
    with op.batch_alter_table("team") as batch:  # SQLite: copies the table
        batch.drop_column("headquarters")


def downgrade() -> None:
    with op.batch_alter_table("team") as batch:
        batch.add_column(sa.Column("headquarters", AutoString(length=200), nullable=True))
    op.execute(team.update().values(headquarters=team.c.base))


# --8<-- [end:contract]
