"""Hero names and secret names unique among live heroes: a soft-deleted hero frees them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# --8<-- [start:upgrade]
def upgrade() -> None:
    # PostgreSQL rewrites the table to fill a stored column (ACCESS EXCLUSIVE meanwhile).
    with op.batch_alter_table("hero") as batch_op:
        live = sa.Computed("CASE WHEN deleted_at IS NULL THEN 1 ELSE NULL END", persisted=True)
        batch_op.add_column(sa.Column("live", sa.Integer(), live))
        batch_op.drop_constraint("uq_hero_name", type_="unique")
        batch_op.drop_constraint("uq_hero_secret_name", type_="unique")
        batch_op.create_unique_constraint("uq_hero_name_team_id_live", ["name", "team_id", "live"])
        batch_op.create_unique_constraint("uq_hero_secret_name_live", ["secret_name", "live"])


# --8<-- [end:upgrade]


def downgrade() -> None:
    # Fails with a unique violation once a deleted hero's name was taken again: decide which
    # row keeps it (or hard-delete the old one) before going back.
    with op.batch_alter_table("hero") as batch_op:
        batch_op.drop_constraint("uq_hero_secret_name_live", type_="unique")
        batch_op.drop_constraint("uq_hero_name_team_id_live", type_="unique")
        batch_op.create_unique_constraint("uq_hero_secret_name", ["secret_name"])
        batch_op.create_unique_constraint("uq_hero_name", ["name", "team_id"])
        batch_op.drop_column("live")
