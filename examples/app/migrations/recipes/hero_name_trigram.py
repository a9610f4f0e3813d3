"""Heroes get a trigram index that serves ServiceBase's icontains on name (PostgreSQL only).

A recipe, not a revision of the reference app: the tests run it on top of the current head.
SQLite and MariaDB have no trigram index: there icontains keeps reading every row. Because the
index exists on PostgreSQL only, the model doesn't declare it and env.py's include_object keeps
autogenerate from dropping it (examples/postgres_types.py#include_object).

Revision ID: 0097
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0097"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# --8<-- [start:hero_name_trigram]
def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    # Trusted: CREATE on the database is enough, no superuser.
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    # lower(name): what icontains compiles to. Big, busy table: CONCURRENTLY (add_index_online).
    op.create_index(
        "ix_hero_name_trgm",
        "hero",
        [sa.func.lower(sa.column("name")).label("name_lower")],
        postgresql_using="gin",
        postgresql_ops={"name_lower": "gin_trgm_ops"},
    )


# --8<-- [end:hero_name_trigram]


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.drop_index("ix_hero_name_trgm", "hero")
    # The extension stays: other objects may use it (DROP EXTENSION would fail, or CASCADE them).
