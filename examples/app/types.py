"""Column types and input constraints shared by the models, the schemas and the migrations.

Migrations import from here (never from models.py): these change rarely and keep their names.
"""

import enum
from datetime import UTC, datetime
from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import StringConstraints
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.ext.mutable import MutableDict
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql.expression import FunctionElement
from typing_extensions import TypeAliasType

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
        if dialect.name in ("mysql", "mariadb"):  # mariadb+aiomysql:// URLs: "mariadb"
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


@compiles(utcnow, "mysql", "mariadb")
def _utcnow_mysql(element: utcnow, compiler: Any, **kw: Any) -> str:
    return "CURRENT_TIMESTAMP(6)"  # session time zone, which db.py sets to UTC


# --8<-- [end:utc_datetime]


# --8<-- [start:value_enum]
def value_enum(enum_class: type[enum.Enum], name: str, native: bool = True) -> sa.Enum:
    return sa.Enum(
        enum_class,
        name=name,  # the PostgreSQL type's name; also names the CHECK constraint elsewhere
        values_callable=lambda members: [member.value for member in members],  # by value
        validate_strings=True,  # unknown strings fail before reaching the database
        create_constraint=True,  # CHECK (status IN (...)) where there is no native type
        native_enum=native,
    )


# --8<-- [end:value_enum]


# --8<-- [start:json_type]
# JSONB on PostgreSQL (indexable, compact), JSON elsewhere. MutableDict tracks in-place changes
# (hero.attributes["x"] = 1); without it only reassigning the whole dict is saved.
json_document = MutableDict.as_mutable(sa.JSON().with_variant(postgresql.JSONB(), "postgresql"))
# --8<-- [end:json_type]
