"""MySQL/MariaDB: every table utf8mb4 / utf8mb4_bin, whatever the database was created with.

0001 left the charset and collation to the database's defaults; with a default `_ci` collation
names compared case-insensitively ('deadpond' = 'Deadpond'), also in unique constraints. The
models now declare them per table (types.MYSQL_TABLE). CONVERT TO rewrites each table: on a big
table, run it in a maintenance window. Other backends: nothing to do.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("team", "power", "hero", "hero_power")


def upgrade() -> None:
    if op.get_context().dialect.name not in ("mysql", "mariadb"):
        return
    # hero.id and the columns referring to it change together: the foreign keys would refuse
    # the first table converted while the others still have the old collation.
    op.execute("SET SESSION foreign_key_checks = 0")
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    op.execute("SET SESSION foreign_key_checks = 1")


def downgrade() -> None:
    pass  # the collation the tables had before is unknown; utf8mb4_bin stays
