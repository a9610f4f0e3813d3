"""Heroes can be 'missing': a value added to the hero_status enum.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = ("active", "retired")
NEW = ("active", "retired", "missing")


# --8<-- [start:enum_value]
def check(values: tuple[str, ...]) -> str:
    return "status IN (" + ", ".join(f"'{value}'" for value in values) + ")"


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        # Transactional, but the new value is unusable until this transaction commits: use it
        # in a later revision (env.py commits after each one on PostgreSQL), never in this one.
        op.execute("ALTER TYPE hero_status ADD VALUE IF NOT EXISTS 'missing'")
    else:  # VARCHAR + CHECK: replace the constraint
        with op.batch_alter_table("hero") as batch:
            batch.drop_constraint(op.f("ck_hero_hero_status"), type_="check")  # f: final name
            batch.create_check_constraint("hero_status", check(NEW))


def downgrade() -> None:
    # Rows with the removed value must go somewhere first.
    op.execute("UPDATE hero SET status = 'retired' WHERE status = 'missing'")
    if op.get_context().dialect.name == "postgresql":
        # PostgreSQL can't drop an enum value: build the old type and switch the column to it.
        op.execute("ALTER TYPE hero_status RENAME TO hero_status_old")
        op.execute("CREATE TYPE hero_status AS ENUM ('active', 'retired')")
        op.execute(
            "ALTER TABLE hero ALTER COLUMN status TYPE hero_status USING status::text::hero_status"
        )
        op.execute("DROP TYPE hero_status_old")
    else:
        with op.batch_alter_table("hero") as batch:
            batch.drop_constraint(op.f("ck_hero_hero_status"), type_="check")  # f: final name
            batch.create_check_constraint("hero_status", check(OLD))


# --8<-- [end:enum_value]
