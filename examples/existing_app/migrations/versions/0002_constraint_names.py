"""Give the constraints 0001 left unnamed the names the naming convention gives them.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


CONVENTION = {  # frozen here: the names this revision gives, whatever the models say later
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def rename(table: str, old: str | None, new: str) -> None:  # PostgreSQL
    op.execute(f'ALTER TABLE "{table}" RENAME CONSTRAINT "{old}" TO "{new}"')


# --8<-- [start:rename_constraints]
def upgrade() -> None:
    # Old databases have the server's names; new ones got the convention's from 0001
    # (op.create_table applies it). Rename only what differs.
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":  # no RENAME CONSTRAINT: recreate the tables; the convention names them
        for table in ("author", "note"):
            with op.batch_alter_table(table, recreate="always", naming_convention=CONVENTION):
                pass
        return
    inspector = sa.inspect(op.get_bind())
    uniques = inspector.get_unique_constraints("author")
    old = next(u["name"] for u in uniques if u["column_names"] == ["email"])
    if old != "uq_author_email" and dialect == "postgresql":
        rename("author", old, "uq_author_email")
    elif old != "uq_author_email":  # MySQL/MariaDB: a unique constraint is a unique index
        op.execute(f"ALTER TABLE author RENAME INDEX `{old}` TO uq_author_email")
    old = inspector.get_foreign_keys("note")[0]["name"]  # note's only foreign key
    if old != "fk_note_author_id_author" and dialect == "postgresql":
        rename("note", old, "fk_note_author_id_author")
    elif old != "fk_note_author_id_author":  # MySQL/MariaDB can't rename one: drop, add back
        op.drop_constraint(str(old), "note", type_="foreignkey")
        op.create_foreign_key("fk_note_author_id_author", "note", "author", ["author_id"], ["id"])
    for table in ("author", "note"):  # MySQL/MariaDB: every primary key is named PRIMARY
        old = inspector.get_pk_constraint(table)["name"]
        if dialect == "postgresql" and old != f"pk_{table}":
            rename(table, old, f"pk_{table}")


# --8<-- [end:rename_constraints]


def downgrade() -> None:
    pass  # the new names serve 0001's downgrade as well as the old ones did
