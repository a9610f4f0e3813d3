"""Engine and session factory for SQLite (aiosqlite), PostgreSQL (asyncpg) and MySQL (aiomysql)."""

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.settings import Settings


# --8<-- [start:engine]
def create_engine(settings: Settings) -> AsyncEngine:
    url = make_url(settings.database_url)
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "mysql":
        # NOW()/CURRENT_TIMESTAMP and DATETIME follow the session time zone: make it UTC.
        connect_args["init_command"] = "SET time_zone = '+00:00'"
    pool: dict[str, Any] = {}
    if url.database not in (None, "", ":memory:"):  # :memory: is one shared connection
        pool = {
            "pool_size": settings.pool_size,
            "max_overflow": settings.max_overflow,
            "pool_timeout": settings.pool_timeout,
        }
    engine = create_async_engine(
        url, echo=settings.echo_sql, pool_pre_ping=True, connect_args=connect_args, **pool
    )
    if url.get_backend_name() == "sqlite":
        configure_sqlite(engine)
    return engine


# --8<-- [end:engine]


# --8<-- [start:sqlite]
def configure_sqlite(engine: AsyncEngine, *, foreign_keys: bool = True) -> None:
    # Async engines take event listeners on .sync_engine, never on the AsyncEngine itself.
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN (below) instead of the driver's legacy
        # transaction control, which breaks SAVEPOINT and rollback of DDL.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # Off by default: ondelete would be ignored. (Migrations turn it off on purpose.)
        cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cursor.execute("PRAGMA journal_mode=WAL")  # readers don't block the writer
        cursor.execute("PRAGMA busy_timeout=5000")  # wait for a lock instead of failing at once
        cursor.execute("PRAGMA case_sensitive_like=ON")  # LIKE is case-sensitive, as elsewhere
        cursor.close()
        # SQLite's lower() folds ASCII only; icontains on "É" needs a Unicode-aware one.
        dbapi_connection.create_function("lower", 1, unicode_lower, deterministic=True)

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock up front: a read-then-write transaction
        # can't fail with "database is locked" when another writer got there first.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def unicode_lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


# --8<-- [end:sqlite]


# --8<-- [start:session_factory]
def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: attributes stay readable after commit; with the
    # default, the next attribute access would lazy-load and raise MissingGreenlet.
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


# --8<-- [end:session_factory]
