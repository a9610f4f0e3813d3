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


# --8<-- [start:rename_constraints]
# Frozen here: the names this revision gives, whatever the models say later.
CONVENTION = {
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
UNIQUES = [("author", ["email"], "uq_author_email")]
FOREIGN_KEYS = [("note", ["author_id"], "author", ["id"], "fk_note_author_id_author")]
PRIMARY_KEYS = [("author", "pk_author"), ("note", "pk_note")]


def upgrade() -> None:
    # Databases made by 0001 before the convention have the server's names; ones made after it
    # already have the convention's (op.create_table applies it). Rename only what differs.
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":  # no RENAME CONSTRAINT: recreate; the convention names them
        for table in ("author", "note"):
            with op.batch_alter_table(table, recreate="always", naming_convention=CONVENTION):
                pass
        return
    inspector = sa.inspect(op.get_bind())
    renames: list[tuple[str, str | None, str]] = []
    for table, columns, new in UNIQUES:
        found = inspector.get_unique_constraints(table)
        old = next(u["name"] for u in found if u["column_names"] == columns)
        if old != new and dialect == "postgresql":
            renames.append((table, old, new))
        elif old != new:  # MySQL/MariaDB: a unique constraint is a unique index
            op.execute(f"ALTER TABLE {table} RENAME INDEX `{old}` TO `{new}`")
    for table, columns, referred, referred_columns, new in FOREIGN_KEYS:
        found_fks = inspector.get_foreign_keys(table)
        old = next(f["name"] for f in found_fks if f["constrained_columns"] == columns)
        if old != new and dialect == "postgresql":
            renames.append((table, old, new))
        elif old != new:  # MySQL/MariaDB can't rename a foreign key: drop it, add it back
            op.drop_constraint(str(old), table, type_="foreignkey")
            op.create_foreign_key(op.f(new), table, referred, columns, referred_columns)
    if dialect == "postgresql":  # MySQL/MariaDB: every primary key is named PRIMARY
        for table, new in PRIMARY_KEYS:
            renames.append((table, inspector.get_pk_constraint(table)["name"], new))
    for table, old, new in renames:
        if old != new:
            op.execute(f'ALTER TABLE "{table}" RENAME CONSTRAINT "{old}" TO "{new}"')


def downgrade() -> None:
    pass  # the new names serve 0001's downgrade as well as the old ones did


# --8<-- [end:rename_constraints]
