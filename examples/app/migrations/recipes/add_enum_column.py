"""Teams get a size: a new enum column on an existing table.

A recipe, not a revision of the reference app (Alembic only reads versions/): the tests copy it
into a scratch scripts folder on top of the current head.

Revision ID: 0099
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0099"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# --8<-- [start:add_enum_column]
team_size = sa.Enum("small", "big", name="team_size", create_constraint=True)


def upgrade() -> None:
    # add_column doesn't create a PostgreSQL enum type (create_table does): create it first.
    # Elsewhere there is no type to create (SQLite: VARCHAR + CHECK; MariaDB: ENUM): a no-op.
    team_size.create(op.get_bind(), checkfirst=True)
    with op.batch_alter_table("team") as batch:
        batch.add_column(sa.Column("size", team_size, nullable=False, server_default="small"))


def downgrade() -> None:
    with op.batch_alter_table("team") as batch:
        if op.get_context().dialect.name == "sqlite":  # else the copy keeps the enum's CHECK:
            batch.drop_constraint(op.f("ck_team_team_size"), type_="check")  # no such column
        batch.drop_column("size")
    team_size.drop(op.get_bind(), checkfirst=True)  # drop_column leaves the type behind


# --8<-- [end:add_enum_column]
