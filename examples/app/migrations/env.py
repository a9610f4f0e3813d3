"""Alembic environment: async engine, the URL from the app's settings, one migrator at a time.

Used by the `alembic` command (alembic.ini at the project root) and by examples/app/migrate.py,
which passes its own connection in config.attributes["connection"]. In another project, change
only the app block below.
"""

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

# --8<-- [start:app_imports]
# The app: every table on the metadata (or autogenerate drops it), its engine, its URL.
# In another project these are the only lines to change.
import examples.app.models  # noqa: F401
from examples.app.migrate import migration_engine  # the app's create_engine with NullPool
from examples.app.settings import Settings


def app_database_url() -> str:
    return Settings().database_url.get_secret_value()  # or os.environ["DATABASE_URL"]


# --8<-- [end:app_imports]

config = context.config
# --8<-- [start:logging]
# The `alembic` command only: the app (or a test) that runs migrations keeps its own logging.
# fileConfig's default disable_existing_loggers=True would silence every logger made so far.
if config.cmd_opts is not None and config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)
# --8<-- [end:logging]
# Tests may pass another MetaData (to autogenerate against a changed model). Its naming
# convention also names the constraints that op.create_table() makes in every revision.
target_metadata = config.attributes.get("target_metadata") or SQLModel.metadata
LOCK_NAME = "async_sqlmodel_migrations"
PG_LOCK_KEY = 0x5A11_7E5D  # any constant shared by every process migrating this database
LOCK_TIMEOUT_SECONDS = 600  # config.attributes["lock_timeout"] overrides it


# --8<-- [start:url]
def database_url() -> str:
    # From the caller or the app's settings (DATABASE_URL), never from alembic.ini: ConfigParser
    # interpolation breaks on a "%" in a password.
    url: str | None = config.attributes.get("database_url")
    return url or app_database_url()


# --8<-- [end:url]


# --8<-- [start:configure]
def configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite can't ALTER most things: batch mode copies the table; elsewhere it is plain ALTER.
        # Always on, so one revision runs on every backend.
        render_as_batch=True,
        # A changed server default is drift too (no false positives on this schema, all three).
        compare_server_default=True,
        # PostgreSQL: one transaction per revision, so a later revision can use an enum value an
        # earlier one added (unusable until committed: 'unsafe use of new value').
        # SQLite: one transaction for the whole run, so a concurrent run waits for all of it;
        # Alembic assumes SQLite DDL is not transactional, but with db.py's BEGIN it is.
        transaction_per_migration=connection.dialect.name == "postgresql",
        transactional_ddl=connection.dialect.name not in ("mysql", "mariadb"),
    )


# --8<-- [end:configure]


# --8<-- [start:lock]
def run_with_lock(connection: Connection) -> None:
    """Only one process migrates at a time; the others wait, then find nothing left to do.

    PostgreSQL: a session advisory lock. MySQL/MariaDB: GET_LOCK. SQLite: the write lock that
    BEGIN IMMEDIATE takes for the whole run. Waiting longer than the timeout is an error.
    """
    dialect = connection.dialect.name
    timeout = float(config.attributes.get("lock_timeout", LOCK_TIMEOUT_SECONDS))
    refused = TimeoutError(
        f"migration lock {LOCK_NAME!r} not obtained within {timeout:g} s:"
        " another process is migrating this database"
    )
    if dialect == "postgresql":
        # pg_advisory_lock waits forever unless lock_timeout is set (true: this transaction only).
        connection.execute(
            text("SELECT set_config('lock_timeout', :ms, true)"), {"ms": f"{timeout * 1000:.0f}"}
        )
        try:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": PG_LOCK_KEY})
        except DBAPIError as error:
            if getattr(error.orig, "sqlstate", None) != "55P03":  # lock_not_available
                raise
            connection.rollback()
            raise refused from None
    elif dialect in ("mysql", "mariadb"):
        # GET_LOCK names are server-wide: add the database, or two databases wait on each other.
        got = connection.execute(
            text("SELECT GET_LOCK(LEFT(CONCAT(:name, '.', DATABASE()), 64), :timeout)"),
            {"name": LOCK_NAME, "timeout": timeout},
        ).scalar()
        if got != 1:  # 0: timed out; NULL: an error (e.g. the thread was killed)
            connection.rollback()
            raise refused
    connection.commit()  # the locks are per session; end the transaction they started in
    try:
        configure(connection)
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if dialect == "postgresql":
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": PG_LOCK_KEY})
        elif dialect in ("mysql", "mariadb"):
            connection.execute(
                text("SELECT RELEASE_LOCK(LEFT(CONCAT(:name, '.', DATABASE()), 64))"),
                {"name": LOCK_NAME},
            )
        connection.commit()


# --8<-- [end:lock]


# --8<-- [start:engine]
async def run_online(engine: AsyncEngine | None = None) -> None:
    own_engine = engine is None
    engine = engine or migration_engine(database_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_with_lock)
    finally:
        if own_engine:
            await engine.dispose()


# --8<-- [end:engine]


def run_offline() -> None:
    """`alembic upgrade head --sql`: print the DDL, no database needed."""
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


# --8<-- [start:dispatch]
shared = config.attributes.get("connection")
if context.is_offline_mode():
    run_offline()
elif isinstance(shared, AsyncEngine):  # e.g. pytest-alembic with an async engine
    asyncio.run(run_online(shared))
elif shared is not None:  # a sync connection from async code: migrate.py, the tests
    run_with_lock(shared)
else:  # the alembic command line
    asyncio.run(run_online())
# --8<-- [end:dispatch]
