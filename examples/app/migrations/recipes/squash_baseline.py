"""Baseline: the schema of revisions 0001-0007 in one revision, which replaces them.

A recipe, not a revision of the reference app: the tests put it alone in a scratch versions/
folder. Written as 0001 was: `alembic revision --autogenerate --rev-id 0007` against an empty
database with versions/ emptied, then reviewed (server defaults, enum variants, table options,
column order as the old history left it).

Revision ID: 0007
Revises:
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlmodel.sql.sqltypes import AutoString

import examples.app.types

# --8<-- [start:baseline]
# The old head's id: a database at 0007 is already at this head (`upgrade head` does nothing,
# later revisions build on it); an empty one gets the whole schema from this file alone.
revision: str = "0007"
down_revision: str | Sequence[str] | None = None  # 0001-0006 are gone from versions/
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTCDateTime = examples.app.types.UTCDateTime
utcnow = examples.app.types.utcnow  # what 0001 rendered after 0004: compiled per dialect
# What 0005 converted every table to; a new table (0006) already said so. Frozen here.
MYSQL_TABLE: dict[str, Any] = {  # Any: create_table(**MYSQL_TABLE) type-checks
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
    "mariadb_charset": "utf8mb4",
    "mariadb_collate": "utf8mb4_bin",
}
HERO_STATUS = ("active", "retired", "missing")  # 0001's values and 0003's, in that order
LIVE = "CASE WHEN deleted_at IS NULL THEN 1 ELSE NULL END"  # 0007's generated column
# --8<-- [end:baseline]


def hero_status() -> sa.Enum:
    named = sa.Enum(*HERO_STATUS, name="hero_status", create_constraint=True)
    return named.with_variant(
        sa.Enum(*HERO_STATUS, name="hero_status", create_constraint=True, native_enum=False),
        "mysql",
        "mariadb",
    )


def json_type() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def timestamp(name: str) -> sa.Column[object]:
    return sa.Column(name, UTCDateTime(timezone=True), server_default=utcnow(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "power",
        sa.Column("name", AutoString(length=100), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("description", AutoString(length=500), nullable=False),  # 0002: added last
        sa.PrimaryKeyConstraint("id", name=op.f("pk_power")),
        sa.UniqueConstraint("name", name=op.f("uq_power_name")),
        **MYSQL_TABLE,
    )
    op.create_table(
        "team",
        timestamp("created_at"),
        timestamp("updated_at"),
        sa.Column("name", AutoString(length=100), nullable=False),
        sa.Column("headquarters", AutoString(length=200), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_team")),
        sa.UniqueConstraint("name", name=op.f("uq_team_name")),
        **MYSQL_TABLE,
    )
    op.create_table(
        "hero",
        timestamp("created_at"),
        timestamp("updated_at"),
        sa.Column("name", AutoString(length=100), nullable=False),
        sa.Column("age", sa.Integer(), nullable=True),
        sa.Column("status", hero_status(), nullable=False),
        sa.Column("attributes", json_type(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=True),
        sa.Column("mentor_id", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("secret_name", AutoString(length=100), nullable=False),
        sa.Column("deleted_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("live", sa.Integer(), sa.Computed(LIVE, persisted=True), nullable=True),  # 0007
        sa.ForeignKeyConstraint(
            ["mentor_id"], ["hero.id"], name=op.f("fk_hero_mentor_id_hero"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["team_id"], ["team.id"], name=op.f("fk_hero_team_id_team"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hero")),
        sa.UniqueConstraint("name", "team_id", "live", name=op.f("uq_hero_name_team_id_live")),
        sa.UniqueConstraint("secret_name", "live", name=op.f("uq_hero_secret_name_live")),
        **MYSQL_TABLE,
    )
    for column in ("age", "deleted_at", "mentor_id", "name", "team_id"):
        op.create_index(op.f(f"ix_hero_{column}"), "hero", [column])
    op.create_table(
        "hero_power",
        sa.Column("hero_id", sa.Uuid(), nullable=False),
        sa.Column("power_id", sa.Integer(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        timestamp("acquired_at"),
        sa.CheckConstraint("level BETWEEN 1 AND 10", name=op.f("ck_hero_power_level_range")),
        sa.ForeignKeyConstraint(
            ["hero_id"], ["hero.id"], name=op.f("fk_hero_power_hero_id_hero"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["power_id"],
            ["power.id"],
            name=op.f("fk_hero_power_power_id_power"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("hero_id", "power_id", name=op.f("pk_hero_power")),
        **MYSQL_TABLE,
    )
    op.create_index(op.f("ix_hero_power_power_id"), "hero_power", ["power_id"])
    op.create_table(
        "job",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", AutoString(length=50), nullable=False),
        sa.Column("payload", json_type(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                *("queued", "running", "done", "failed"),
                name="job_status",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("run_after", UTCDateTime(), nullable=False),
        sa.Column("locked_by", AutoString(length=100), nullable=True),
        sa.Column("locked_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", AutoString(length=1000), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job")),
        **MYSQL_TABLE,
    )
    op.create_index("ix_job_claim", "job", ["status", "run_after"])


def downgrade() -> None:
    op.drop_table("job")
    op.drop_table("hero_power")
    op.drop_table("hero")
    if op.get_context().dialect.name == "postgresql":  # drop_table leaves the enum type
        op.execute("DROP TYPE IF EXISTS hero_status")
    op.drop_table("team")
    op.drop_table("power")
