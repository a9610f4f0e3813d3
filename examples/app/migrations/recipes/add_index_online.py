"""Heroes get an index on created_at, built while the table keeps taking writes.

A recipe, not a revision of the reference app: the tests copy it on top of the current head.
Plain CREATE INDEX blocks every write to the table until it is built (minutes on a big table).

Revision ID: 0098
Revises: 0007
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0098"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# --8<-- [start:add_index_online]
def upgrade() -> None:
    dialect = op.get_context().dialect.name
    if dialect == "postgresql":
        # CONCURRENTLY can't run in a transaction ("CREATE INDEX CONCURRENTLY cannot run inside a
        # transaction block"): autocommit_block ends the revision's transaction around it.
        # lock_timeout: it still waits for transactions on the table to end; give up, don't
        # queue every new writer behind it. A failed build leaves an INVALID index: drop it.
        with op.get_context().autocommit_block():
            op.execute("SET lock_timeout = '5s'")
            op.create_index(
                "ix_hero_created_at", "hero", ["created_at"], postgresql_concurrently=True
            )
            op.execute("RESET lock_timeout")  # the session's: later revisions share it
    elif dialect in ("mysql", "mariadb"):
        # InnoDB builds a secondary index online; LOCK=NONE asks for that explicitly.
        op.execute("ALTER TABLE hero ADD INDEX ix_hero_created_at (created_at), LOCK=NONE")
    else:  # SQLite: one writer at a time anyway
        op.create_index("ix_hero_created_at", "hero", ["created_at"])


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.drop_index("ix_hero_created_at", "hero", postgresql_concurrently=True)
    else:
        op.drop_index("ix_hero_created_at", "hero")


# --8<-- [end:add_index_online]
