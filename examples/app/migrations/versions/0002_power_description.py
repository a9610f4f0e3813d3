"""Powers get a description, filled in for existing rows (a data migration).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import AutoString

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# --8<-- [start:data_migration]
# The table as this revision sees it. Importing the app's Power model instead would break this
# revision as soon as the model changes again.
power = sa.table(
    "power",
    sa.column("name", sa.String(100)),
    sa.column("description", sa.String(500)),
)


def upgrade() -> None:
    # Expand: add the column nullable, fill it, then make it NOT NULL.
    with op.batch_alter_table("power") as batch:
        batch.add_column(sa.Column("description", AutoString(length=500), nullable=True))
    op.execute(power.update().values(description=power.c.name + " (no description yet)"))
    with op.batch_alter_table("power") as batch:  # SQLite: copies the table; others: ALTER
        batch.alter_column(
            "description",
            existing_type=AutoString(length=500),
            nullable=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("power") as batch:
        batch.drop_column("description")


# --8<-- [end:data_migration]
