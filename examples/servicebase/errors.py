"""Classify database errors by SQLSTATE / MySQL errno / SQLite extended code: message text
differs between servers, versions and locales; the codes don't."""

import enum

from sqlalchemy.exc import DBAPIError


# --8<-- [start:exceptions]
class ServiceError(Exception):
    """Base for errors whose message is safe to show a client: no SQL, no other rows' values."""


class NotFound(ServiceError):
    pass


class Conflict(ServiceError):
    """A unique constraint (or a concurrent insert of the same key)."""


class ForeignKeyViolation(ServiceError):
    pass


class ConstraintViolation(ServiceError):
    """NOT NULL or CHECK: data the database refuses."""


class StaleVersion(ServiceError):
    """The row changed since the client read it (optimistic locking)."""


class InvalidFilter(ServiceError):
    """A filter, sort, page size, cursor or load option outside what the service allows."""


class InvalidPrecondition(ServiceError):
    """If-Match is neither * nor a list of entity tags (versioning.if_match_versions)."""


class PreconditionRequired(ServiceError):
    """An update without If-Match where the API requires one (RFC 6585: 428)."""


# --8<-- [end:exceptions]


class DatabaseError(enum.Enum):
    UNIQUE_VIOLATION = "unique_violation"
    FOREIGN_KEY_VIOLATION = "foreign_key_violation"
    NOT_NULL_VIOLATION = "not_null_violation"
    CHECK_VIOLATION = "check_violation"
    DEADLOCK = "deadlock"
    SERIALIZATION_FAILURE = "serialization_failure"
    STATEMENT_TIMEOUT = "statement_timeout"
    LOCK_TIMEOUT = "lock_timeout"
    OTHER = "other"


# --8<-- [start:classify]
POSTGRES_SQLSTATE = {
    "23505": DatabaseError.UNIQUE_VIOLATION,
    "23503": DatabaseError.FOREIGN_KEY_VIOLATION,
    "23502": DatabaseError.NOT_NULL_VIOLATION,
    "23514": DatabaseError.CHECK_VIOLATION,
    "40P01": DatabaseError.DEADLOCK,
    "40001": DatabaseError.SERIALIZATION_FAILURE,
    "57014": DatabaseError.STATEMENT_TIMEOUT,  # query_canceled (statement_timeout)
    "55P03": DatabaseError.LOCK_TIMEOUT,  # lock_not_available (lock_timeout, NOWAIT)
}
MYSQL_ERRNO = {
    1062: DatabaseError.UNIQUE_VIOLATION,  # ER_DUP_ENTRY
    1451: DatabaseError.FOREIGN_KEY_VIOLATION,  # ER_ROW_IS_REFERENCED_2 (parent in use)
    1452: DatabaseError.FOREIGN_KEY_VIOLATION,  # ER_NO_REFERENCED_ROW_2 (no such parent)
    1048: DatabaseError.NOT_NULL_VIOLATION,  # ER_BAD_NULL_ERROR
    4025: DatabaseError.CHECK_VIOLATION,  # MariaDB ER_CONSTRAINT_FAILED
    3819: DatabaseError.CHECK_VIOLATION,  # MySQL ER_CHECK_CONSTRAINT_VIOLATED
    1213: DatabaseError.DEADLOCK,  # ER_LOCK_DEADLOCK
    1969: DatabaseError.STATEMENT_TIMEOUT,  # MariaDB ER_STATEMENT_TIMEOUT (max_statement_time)
    3024: DatabaseError.STATEMENT_TIMEOUT,  # MySQL ER_QUERY_TIMEOUT (max_execution_time)
    1205: DatabaseError.LOCK_TIMEOUT,  # lock wait timeout; MariaDB's NOWAIT
    3572: DatabaseError.LOCK_TIMEOUT,  # MySQL 8's NOWAIT
}
SQLITE_EXTENDED_CODE = {
    2067: DatabaseError.UNIQUE_VIOLATION,  # SQLITE_CONSTRAINT_UNIQUE
    1555: DatabaseError.UNIQUE_VIOLATION,  # SQLITE_CONSTRAINT_PRIMARYKEY
    2579: DatabaseError.UNIQUE_VIOLATION,  # SQLITE_CONSTRAINT_ROWID
    787: DatabaseError.FOREIGN_KEY_VIOLATION,  # SQLITE_CONSTRAINT_FOREIGNKEY
    # SQLITE_CONSTRAINT_TRIGGER: ondelete/onupdate="RESTRICT" (also a trigger's RAISE(ABORT))
    1811: DatabaseError.FOREIGN_KEY_VIOLATION,
    1299: DatabaseError.NOT_NULL_VIOLATION,  # SQLITE_CONSTRAINT_NOTNULL
    275: DatabaseError.CHECK_VIOLATION,  # SQLITE_CONSTRAINT_CHECK
    3091: DatabaseError.CHECK_VIOLATION,  # SQLITE_CONSTRAINT_DATATYPE (STRICT tables)
}


def classify(error: DBAPIError) -> DatabaseError:
    """What went wrong, from the driver's error code (SQLAlchemy wraps it as error.orig)."""
    orig = error.orig
    sqlite_code = getattr(orig, "sqlite_errorcode", None)  # sqlite3 / aiosqlite
    if isinstance(sqlite_code, int):
        return SQLITE_EXTENDED_CODE.get(sqlite_code, DatabaseError.OTHER)
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):  # pymysql / aiomysql: (errno, message)
        # Before sqlstate: pymysql has one too, too coarse (23000 for all of these).
        return MYSQL_ERRNO.get(args[0], DatabaseError.OTHER)
    sqlstate = getattr(orig, "sqlstate", None)  # asyncpg (through SQLAlchemy's adapter)
    if isinstance(sqlstate, str):
        return POSTGRES_SQLSTATE.get(sqlstate, DatabaseError.OTHER)
    return DatabaseError.OTHER


# --8<-- [end:classify]


def translate(error: DBAPIError, what: str) -> ServiceError | None:
    """The ServiceError for a constraint failure, or None when it is something else."""
    kind = classify(error)
    if kind is DatabaseError.UNIQUE_VIOLATION:
        return Conflict(f"{what} conflicts with an existing one (a unique value is taken)")
    if kind is DatabaseError.FOREIGN_KEY_VIOLATION:
        return ForeignKeyViolation(f"{what} refers to a row that does not exist, or is referenced")
    if kind in (DatabaseError.NOT_NULL_VIOLATION, DatabaseError.CHECK_VIOLATION):
        return ConstraintViolation(f"{what} has a value the database refuses ({kind.value})")
    return None
