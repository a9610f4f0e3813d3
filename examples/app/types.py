"""Column types and input constraints shared by the models, the schemas and the migrations.

Migrations import from here (never from models.py): these change rarely and keep their names.
"""

import enum
import json
import secrets
import threading
import time
import uuid
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import BeforeValidator, FiniteFloat, StringConstraints
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.ext.mutable import MutableDict
from sqlalchemy.sql.expression import FunctionElement
from sqlmodel.sql import sqltypes as sqlmodel_types
from typing_extensions import TypeAliasType

# --8<-- [start:storable_input]
# What every backend can store. Data models declare it per field, so it is enforced at the API
# boundary (422) and documented in OpenAPI, instead of failing in the database (500).
INT32_MAX = 2**31 - 1  # INTEGER columns
NO_NUL = r"^[^\x00]*$"  # PostgreSQL refuses NUL characters in text and in JSON strings
NulFreeStr = Annotated[str, StringConstraints(pattern=NO_NUL)]
# FiniteFloat: JSON has no NaN or Infinity (Python's json reads them, and 1e400 as inf);
# PostgreSQL and MariaDB refuse them, SQLite stores null.
JsonValue = TypeAliasType(
    "JsonValue",
    "dict[NulFreeStr, JsonValue] | list[JsonValue] | NulFreeStr | int | FiniteFloat | bool | None",
)
JSON_MAX_DEPTH = 31  # MariaDB's JSON_VALID (its JSON column's CHECK) refuses 32 nested levels
JSON_MAX_BYTES = 65_536  # MariaDB drops the connection on a statement over max_allowed_packet


def storable_json(document: Any) -> Any:
    """Depth and size limits, checked before the (recursive) type validation."""
    stack = [(document, 1)]
    while stack:  # a loop, not recursion: 10,000 levels must not raise RecursionError
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > JSON_MAX_DEPTH:
                raise ValueError(f"JSON nested deeper than {JSON_MAX_DEPTH} levels")
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
    size = len(json.dumps(document, default=str).encode())  # ASCII: escapes count, as stored
    if size > JSON_MAX_BYTES:
        raise ValueError(f"JSON document over {JSON_MAX_BYTES} bytes")
    return document


JsonDocument = Annotated[dict[NulFreeStr, JsonValue], BeforeValidator(storable_json)]
# --8<-- [end:storable_input]


# --8<-- [start:mysql_table]
# Each table's charset and collation on MySQL/MariaDB, whatever the database was created with:
# utf8mb4 stores emoji; utf8mb4_bin compares case- and accent-sensitively, like the others,
# but is PAD SPACE: `=` and UNIQUE keys ignore trailing spaces ('x ' collides with 'x').
# Both prefixes: a mariadb+aiomysql:// URL's dialect ignores the mysql_ options, silently.
MYSQL_TABLE: dict[str, Any] = {  # Any: op.create_table(**MYSQL_TABLE) type-checks
    f"{dialect}_{option}": value
    for dialect in ("mysql", "mariadb")
    for option, value in (("charset", "utf8mb4"), ("collate", "utf8mb4_bin"))
}
# --8<-- [end:mysql_table]


# --8<-- [start:utc_datetime]
class UTCDateTime(sqlmodel_types.UTCDateTime):
    """SQLModel's type for `datetime` fields, with microseconds on MySQL/MariaDB.

    SQLModel's: aware UTC out on every backend, naive in raises ValueError. On MySQL it is a
    plain DATETIME, which keeps whole seconds only; this one is DATETIME(6).
    """

    cache_ok = True

    def __init__(self, timezone: bool = True) -> None:  # revision 0001 passes timezone=True
        super().__init__()

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):  # mariadb+aiomysql:// URLs: "mariadb"
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return super().load_dialect_impl(dialect)


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
    # SQLite compares these as text: the same layout as SQLAlchemy's bound values, 6 digits
    # (the clock has milliseconds). CURRENT_TIMESTAMP would drop the milliseconds.
    return "(STRFTIME('%Y-%m-%d %H:%M:%f000', 'now'))"


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


# --8<-- [start:uuid7]
_uuid7_lock = threading.Lock()
_uuid7_last = (0, 0)  # the last key's millisecond and counter


def uuid7() -> uuid.UUID:
    """A time-ordered UUID (RFC 9562, version 7): 48 bits of Unix time in ms, then a 12-bit
    counter (so keys made within one ms still increase), then 62 random bits.

    New keys land at the end of the primary-key index, as a sequence's do, instead of on a
    random page (uuid4). Python 3.14 has uuid.uuid7.
    """
    global _uuid7_last
    with _uuid7_lock:
        ms, counter = time.time_ns() // 1_000_000, secrets.randbelow(2048)  # room to count up
        last_ms, last_counter = _uuid7_last
        if ms <= last_ms:  # the same millisecond (or the clock went back): count on from the last
            ms, counter = (last_ms, last_counter + 1) if last_counter < 4095 else (last_ms + 1, 0)
        _uuid7_last = (ms, counter)
    value = ms << 80 | 0x7 << 76 | counter << 64 | 0x2 << 62 | secrets.randbits(62)
    return uuid.UUID(int=value)


# --8<-- [end:uuid7]
