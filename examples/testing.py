"""Test helpers for an async SQLModel + FastAPI project: copy into your tests' support module.
It imports nothing from the app (all parameters): the copy works unchanged in any package.

database_per_run: a scratch database named after yours (<name>_test_<pid>_<hex>), dropped after.
rolled_back_session: every test's writes vanish, even when the code under test commits.
counting_statements: assert how many queries a block sends (N+1 detection).
app_client: an HTTP client for the app with its lifespan running, its sessions on the test's.
"""

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import URL, event, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.types import Receive, Scope, Send


# --8<-- [start:database_per_run]
def run_database_url(url: str | URL) -> URL:
    """This run's database on the server of `url`, named after its database.

    app -> app_test_<pid>_<hex>; SQLite: app.db -> app_test_<pid>_<hex>.db, next to it.
    """
    url = make_url(url)
    base = (url.database or "app").rsplit("/", 1)
    stem, dot, suffix = base[-1].partition(".")
    name = f"{stem[:40]}_test_{os.getpid()}_{secrets.token_hex(4)}{dot}{suffix}"
    return url.set(database="/".join([*base[:-1], name]))


@asynccontextmanager
async def database_per_run(url: str | URL) -> AsyncIterator[URL]:
    """Create run_database_url(url), yield its URL, drop it at exit (SQLite: the file)."""
    test_url = run_database_url(url)
    backend = test_url.get_backend_name()
    if backend == "sqlite":
        yield test_url
        for suffix in ("", "-wal", "-shm"):
            await asyncio.to_thread(Path(f"{test_url.database}{suffix}").unlink, missing_ok=True)
        return
    # PostgreSQL: connect to the always-present "postgres" database; MySQL: to none.
    # (URL.set(database=None) would keep the name: _replace is NamedTuple's own method.)
    admin_url = test_url._replace(database="postgres" if backend == "postgresql" else None)
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = admin.dialect.identifier_preparer.quote(test_url.database or "")
    charset = " CHARACTER SET utf8mb4" if backend in ("mysql", "mariadb") else ""
    force = " WITH (FORCE)" if backend == "postgresql" else ""
    try:
        async with admin.connect() as conn:
            await conn.exec_driver_sql(f"CREATE DATABASE {name}{charset}")
        try:
            yield test_url
        finally:
            async with admin.connect() as conn:
                await conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}{force}")
    finally:
        await admin.dispose()


# --8<-- [end:database_per_run]


# --8<-- [start:rolled_back_session]
@asynccontextmanager
async def rolled_back_session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session whose commits only release savepoints; everything is rolled back at exit.

    SQLAlchemy's "joining a session into an external transaction" recipe, on one connection.
    On SQLite this needs the BEGIN handling in db.py.
    """
    async with engine.connect() as conn:
        outer = await conn.begin()
        if conn.dialect.name == "sqlite" and not await sqlite_began(conn):
            raise RuntimeError(
                "this SQLite engine lets the driver begin transactions itself: savepoints"
                " would not roll back and test data would be committed. Add the BEGIN"
                " handling (configure_sqlite in the reference db.py) to the engine"
            )
        session = AsyncSession(
            bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        try:
            yield session
        finally:
            await session.close()
            await outer.rollback()


async def sqlite_began(conn: AsyncConnection) -> bool:
    """SQLAlchemy's BEGIN reached SQLite (the driver's own handling defers it to a write)."""
    raw = await conn.get_raw_connection()
    return bool(raw.driver_connection.in_transaction)  # type: ignore[union-attr]


# --8<-- [end:rolled_back_session]


# --8<-- [start:counting_statements]
COUNTED_VERBS = ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")


@dataclass
class StatementLog:
    statements: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.statements)


@contextmanager
def counting_statements(engine: AsyncEngine) -> Iterator[StatementLog]:
    """Records SELECT/INSERT/UPDATE/DELETE sent on any of the engine's connections.

    BEGIN, SAVEPOINT, RELEASE and ROLLBACK TO are not counted: they are transaction plumbing
    (the test session issues savepoints that the app under test never asked for).
    """
    log = StatementLog()

    def record(
        _conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, _many: bool
    ) -> None:
        if statement.lstrip().upper().startswith(COUNTED_VERBS):
            log.statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield log
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


# --8<-- [end:counting_statements]


# --8<-- [start:app_client]
@asynccontextmanager
async def app_client(
    app: FastAPI,
    session: AsyncSession,
    session_factory_dependency: Callable[..., Any],
    **factory_options: Any,
) -> AsyncIterator[AsyncClient]:
    """The app over HTTP, in-process, lifespan running (ASGITransport alone doesn't run it).
    `session_factory_dependency` returns the app's async_sessionmaker; `factory_options`: the
    app's own (sync_session_class=...). Every session the app opens joins the test session's
    transaction on its one connection: commits release savepoints, nothing stays. Requests run
    one at a time: test real concurrency with real commits."""
    app.dependency_overrides[session_factory_dependency] = lambda: async_sessionmaker(
        bind=session.bind,
        class_=AsyncSession,
        expire_on_commit=False,
        join_transaction_mode="create_savepoint",
        **factory_options,
    )
    one_at_a_time = asyncio.Lock()
    try:
        async with LifespanManager(app) as manager:

            async def serialised(scope: Scope, receive: Receive, send: Send) -> None:
                async with one_at_a_time:  # interleaved savepoints would break the connection
                    await manager.app(scope, receive, send)

            transport = ASGITransport(app=serialised)
            async with AsyncClient(transport=transport, base_url="http://test") as client:
                yield client
    finally:
        app.dependency_overrides.clear()


# --8<-- [end:app_client]
