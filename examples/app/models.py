"""Table models: teams of heroes, heroes' powers (a link with extra columns) and mentors.

Every constraint gets its name from the metadata's naming convention; every string has a length;
timestamps are timezone-aware UTC set by the database clock; relationships never lazy-load.
"""

import enum
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Optional

import sqlalchemy as sa
from pydantic import StringConstraints
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.ext.mutable import MutableDict
from sqlalchemy.orm import QueryableAttribute, declared_attr
from sqlalchemy.sql.expression import FunctionElement
from sqlmodel import Field, Relationship, SQLModel
from typing_extensions import TypeAliasType

# --8<-- [start:naming_convention]
# Set before any table model is defined; Alembic needs named constraints to alter or drop them.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
# --8<-- [end:naming_convention]


# --8<-- [start:storable_input]
# What every backend can store. Data models declare it per field, so it is enforced at the API
# boundary (422) and documented in OpenAPI, instead of failing in the database (500).
INT32_MAX = 2**31 - 1  # INTEGER columns
NO_NUL = r"^[^\x00]*$"  # PostgreSQL refuses NUL characters in text and in JSON strings
NulFreeStr = Annotated[str, StringConstraints(pattern=NO_NUL)]
JsonValue = TypeAliasType(
    "JsonValue",
    "dict[NulFreeStr, JsonValue] | list[JsonValue] | NulFreeStr | int | float | bool | None",
)
# --8<-- [end:storable_input]


# --8<-- [start:rel]
def rel(attribute: object) -> QueryableAttribute[Any]:
    """Type a relationship for loader options and joins: selectinload(rel(Team.heroes)).

    SQLModel annotates Team.heroes as list[Hero], so mypy rejects it where SQLAlchemy expects
    the class attribute; at runtime it is the attribute, which this checks.
    """
    if not isinstance(attribute, QueryableAttribute):
        raise TypeError(f"expected a mapped class attribute, got {attribute!r}")
    return attribute


# --8<-- [end:rel]


# --8<-- [start:utc_datetime]
class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend.

    PostgreSQL's timestamptz already returns aware values; SQLite and MySQL store naive ones,
    so values are normalised to UTC on the way in and get tzinfo=UTC on the way out.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "mysql":
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))  # microseconds, not seconds
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware one (tz=UTC)")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None or value.tzinfo is not None:
            return value
        return value.replace(tzinfo=UTC)


class utcnow(FunctionElement[datetime]):
    """The database clock in UTC, at microsecond precision where the backend has it."""

    type = UTCDateTime()
    inherit_cache = True


@compiles(utcnow, "postgresql")
def _utcnow_postgresql(element: utcnow, compiler: Any, **kw: Any) -> str:
    # timestamptz is an absolute instant. Not now(): that is the transaction's start, so two
    # updates in one transaction would get the same updated_at.
    return "statement_timestamp()"


@compiles(utcnow, "sqlite")
def _utcnow_sqlite(element: utcnow, compiler: Any, **kw: Any) -> str:
    return "(STRFTIME('%Y-%m-%d %H:%M:%f', 'now'))"  # CURRENT_TIMESTAMP drops the milliseconds


@compiles(utcnow, "mysql")
def _utcnow_mysql(element: utcnow, compiler: Any, **kw: Any) -> str:
    return "CURRENT_TIMESTAMP(6)"  # session time zone, which db.py sets to UTC


# --8<-- [end:utc_datetime]


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


def value_enum(enum_class: type[enum.Enum], name: str, native: bool = True) -> sa.Enum:
    return sa.Enum(
        enum_class,
        name=name,  # the PostgreSQL type's name; also names the CHECK constraint elsewhere
        values_callable=lambda members: [member.value for member in members],  # by value
        validate_strings=True,  # unknown strings fail before reaching the database
        create_constraint=True,  # CHECK (status IN (...)) where there is no native type
        native_enum=native,
    )


# A named type on PostgreSQL; VARCHAR + CHECK on SQLite and MySQL. MySQL's native ENUM sorts by
# declaration order but compares as text, which breaks keyset pagination.
hero_status_type = value_enum(HeroStatus, "hero_status").with_variant(
    value_enum(HeroStatus, "hero_status", native=False), "mysql"
)
# --8<-- [end:enum]

# --8<-- [start:json_type]
# JSONB on PostgreSQL (indexable, compact), JSON elsewhere. MutableDict tracks in-place changes
# (hero.attributes["x"] = 1); without it only reassigning the whole dict is saved.
json_document = MutableDict.as_mutable(sa.JSON().with_variant(postgresql.JSONB(), "postgresql"))
# --8<-- [end:json_type]


# --8<-- [start:team]
class TeamBase(SQLModel):
    name: NulFreeStr = Field(max_length=100, unique=True)
    headquarters: NulFreeStr = Field(max_length=200)


class Team(TeamBase, Timestamped, table=True):
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
    __table_args__ = (sa.UniqueConstraint("name", "team_id"),)  # uq_hero_name

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        return {
            # Optimistic locking: each UPDATE checks and bumps version; stale -> StaleDataError.
            "version_id_col": cls.__table__.c.version,  # type: ignore[attr-defined]
            "eager_defaults": True,
        }

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)  # a new one per row
    secret_name: NulFreeStr = Field(max_length=100, unique=True)
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
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
    __table_args__ = (sa.CheckConstraint("level BETWEEN 1 AND 10", name="level_range"),)

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
