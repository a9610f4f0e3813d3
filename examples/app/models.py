"""Table models: teams of heroes, heroes' powers (a link with extra columns) and mentors.

Every constraint gets its name from the metadata's naming convention; every string has a length;
timestamps are timezone-aware UTC set by the database clock; relationships never lazy-load.
"""

import enum
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Optional

import sqlalchemy as sa
from sqlalchemy.orm import declared_attr
from sqlmodel import Field, Relationship, SQLModel

from examples.app.types import (
    INT32_MAX,
    MYSQL_TABLE,
    JsonValue,
    NulFreeStr,
    UTCDateTime,
    json_document,
    utcnow,
    uuid7,
    value_enum,
)

# --8<-- [start:naming_convention]
# Set before any table model is defined; Alembic needs named constraints to alter or drop them.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",  # every column: (a, b) and (a, c) differ
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
# --8<-- [end:naming_convention]


# --8<-- [start:timestamps]
class Timestamped(SQLModel):
    """created_at/updated_at from the database clock. A base, not a table: columns per table."""

    # Read server-set columns back at flush (RETURNING, or a SELECT on MySQL), so reading
    # updated_at after an UPDATE doesn't lazy-load (MissingGreenlet).
    __mapper_args__: ClassVar[dict[str, Any]] = {"eager_defaults": True}

    created_at: datetime | None = Field(
        default=None,
        nullable=False,
        sa_type=UTCDateTime,
        sa_column_kwargs={"server_default": utcnow()},
    )
    updated_at: datetime | None = Field(
        default=None,
        nullable=False,
        sa_type=UTCDateTime,
        # onupdate puts "SET updated_at = <clock>" into every UPDATE the ORM or Core emits.
        sa_column_kwargs={"server_default": utcnow(), "onupdate": utcnow()},
    )


# --8<-- [end:timestamps]


# --8<-- [start:enum]
class HeroStatus(enum.StrEnum):
    ACTIVE = "active"
    RETIRED = "retired"
    MISSING = "missing"


# A named type on PostgreSQL; VARCHAR + CHECK on SQLite and MySQL. MySQL's native ENUM sorts by
# declaration order but compares as text, which breaks keyset pagination.
hero_status_type = value_enum(HeroStatus, "hero_status").with_variant(
    value_enum(HeroStatus, "hero_status", native=False), "mysql", "mariadb"
)
# --8<-- [end:enum]


# --8<-- [start:team]
class TeamBase(SQLModel):
    name: NulFreeStr = Field(max_length=100, unique=True)
    headquarters: NulFreeStr = Field(max_length=200)


class Team(TeamBase, Timestamped, table=True):
    __table_args__ = MYSQL_TABLE  # utf8mb4_bin on MySQL, whatever the database's default

    id: int | None = Field(default=None, primary_key=True)

    # passive_deletes: the database's ON DELETE SET NULL unlinks heroes; without it the ORM
    # would first SELECT every hero of the team and UPDATE each one.
    heroes: list["Hero"] = Relationship(
        back_populates="team", passive_deletes=True, sa_relationship_kwargs={"lazy": "raise"}
    )


# --8<-- [end:team]


# --8<-- [start:hero]
class HeroBase(SQLModel):
    name: NulFreeStr = Field(max_length=100, index=True)
    age: int | None = Field(default=None, ge=0, le=10_000, index=True)
    status: HeroStatus = Field(default=HeroStatus.ACTIVE, sa_type=hero_status_type)
    attributes: dict[NulFreeStr, JsonValue] = Field(default_factory=dict, sa_type=json_document)
    team_id: int | None = Field(
        default=None, foreign_key="team.id", ondelete="SET NULL", index=True, ge=1, le=INT32_MAX
    )
    mentor_id: uuid.UUID | None = Field(
        default=None, foreign_key="hero.id", ondelete="SET NULL", index=True
    )


class Hero(HeroBase, Timestamped, table=True):
    # Unique among live heroes only: a soft-deleted hero's names can be taken again.
    __table_args__ = (
        sa.UniqueConstraint("name", "team_id", "live"),
        sa.UniqueConstraint("secret_name", "live"),
        MYSQL_TABLE,
    )

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        return {
            # Optimistic locking: each UPDATE checks and bumps version; stale -> StaleDataError.
            "version_id_col": cls.__table__.c.version,  # type: ignore[attr-defined]
            "eager_defaults": True,
        }

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)  # time-ordered: types.py
    secret_name: NulFreeStr = Field(max_length=100)
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    # 1 while live, NULL once deleted: NULLs never collide in a unique key. Stored (PostgreSQL
    # can't index a virtual column), never written by the app. ELSE NULL is spelled out as
    # PostgreSQL reflects it, or autogenerate warns "Computed default ... cannot be modified".
    live: int | None = Field(
        default=None,
        sa_column=sa.Column(
            sa.Integer,
            sa.Computed("CASE WHEN deleted_at IS NULL THEN 1 ELSE NULL END", persisted=True),
        ),
    )
    version: int = Field(default=1, nullable=False)

    team: Team | None = Relationship(
        back_populates="heroes", sa_relationship_kwargs={"lazy": "raise"}
    )
    # Optional["Hero"], not "Hero | None": SQLModel can't resolve a quoted union.
    mentor: Optional["Hero"] = Relationship(
        back_populates="apprentices",
        sa_relationship_kwargs={"lazy": "raise", "remote_side": "Hero.id"},
    )
    apprentices: list["Hero"] = Relationship(
        back_populates="mentor", passive_deletes=True, sa_relationship_kwargs={"lazy": "raise"}
    )
    # cascade_delete: deleting a Hero deletes its links (ORM for loaded ones, ON DELETE CASCADE
    # in the database); passive_deletes: don't SELECT unloaded links first, the database does it.
    power_links: list["HeroPower"] = Relationship(
        back_populates="hero",
        cascade_delete=True,
        passive_deletes=True,
        sa_relationship_kwargs={"lazy": "raise"},
    )


# --8<-- [end:hero]


# --8<-- [start:power]
class PowerBase(SQLModel):
    name: NulFreeStr = Field(max_length=100, unique=True)
    description: NulFreeStr = Field(default="", max_length=500)


class Power(PowerBase, table=True):
    __table_args__ = MYSQL_TABLE

    id: int | None = Field(default=None, primary_key=True)

    hero_links: list["HeroPower"] = Relationship(
        back_populates="power",
        cascade_delete=True,
        passive_deletes=True,
        sa_relationship_kwargs={"lazy": "raise"},
    )


class HeroPower(SQLModel, table=True):
    """Many-to-many link with its own columns (an association object)."""

    __tablename__ = "hero_power"
    __table_args__ = (sa.CheckConstraint("level BETWEEN 1 AND 10", name="level_range"), MYSQL_TABLE)

    hero_id: uuid.UUID = Field(foreign_key="hero.id", ondelete="CASCADE", primary_key=True)
    power_id: int = Field(foreign_key="power.id", ondelete="CASCADE", primary_key=True, index=True)
    level: int = Field(default=1, ge=1, le=10)
    acquired_at: datetime | None = Field(
        default=None,
        nullable=False,
        sa_type=UTCDateTime,
        sa_column_kwargs={"server_default": utcnow()},
    )

    hero: Hero = Relationship(
        back_populates="power_links", sa_relationship_kwargs={"lazy": "raise"}
    )
    power: Power = Relationship(
        back_populates="hero_links", sa_relationship_kwargs={"lazy": "raise"}
    )


# --8<-- [end:power]


# --8<-- [start:job]
class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Job(SQLModel, table=True):
    """Background work, queued in the same transaction as the write that needs it (jobs.py)."""

    # Workers look for due jobs by status and time: one index serves the claim query.
    __table_args__ = (sa.Index("ix_job_claim", "status", "run_after"), MYSQL_TABLE)

    id: int | None = Field(default=None, primary_key=True)
    kind: NulFreeStr = Field(max_length=50)
    payload: dict[NulFreeStr, JsonValue] = Field(default_factory=dict, sa_type=json_document)
    status: JobStatus = Field(
        default=JobStatus.QUEUED, sa_type=value_enum(JobStatus, "job_status", native=False)
    )
    attempts: int = Field(default=0)
    # Due from then on. The workers' clock, like every time a worker compares: claim, backoff
    # and reclaim need no date arithmetic in SQL, which differs on every backend.
    run_after: datetime = Field(default_factory=lambda: datetime.now(UTC), sa_type=UTCDateTime)
    locked_by: str | None = Field(default=None, max_length=100)
    locked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, max_length=1000)


# --8<-- [end:job]
