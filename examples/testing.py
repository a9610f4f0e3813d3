"""Test helpers for an async SQLModel + FastAPI project: copy into your tests' support module.

rolled_back_session: every test's writes vanish, even when the code under test commits.
counting_statements: assert how many queries a block sends (N+1 detection).
app_client: an HTTP client for the app with its lifespan running, its sessions on the test's.
"""

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.types import Receive, Scope, Send

from examples.app.api.deps import get_session_factory
from examples.app.schemas import HeroCreate


# --8<-- [start:rolled_back_session]
@asynccontextmanager
async def rolled_back_session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session whose commits only release savepoints; everything is rolled back at exit.

    The session joins an outer transaction on one connection (SQLAlchemy's "joining a session
    into an external transaction" recipe). On SQLite this needs the BEGIN handling in db.py.
    """
    async with engine.connect() as conn:
        outer = await conn.begin()
        session = AsyncSession(
            bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        try:
            yield session
        finally:
            await session.close()
            await outer.rollback()


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


# --8<-- [start:factory]
_sequence = itertools.count(1)


def hero_data(**overrides: Any) -> HeroCreate:
    """Valid input with unique values; a test states only what it is about."""
    n = next(_sequence)
    return HeroCreate.model_validate(
        {"name": f"hero {n}", "secret_name": f"secret {n}", **overrides}
    )


# --8<-- [end:factory]


# --8<-- [start:app_client]
@asynccontextmanager
async def app_client(app: FastAPI, session: AsyncSession) -> AsyncIterator[AsyncClient]:
    """The app over HTTP, in-process, with its lifespan running.

    Every session the app opens (requests, background tasks, streams) joins the test session's
    transaction on its connection, so their commits release savepoints and nothing stays.
    That one connection can't serve two requests at once: requests run one at a time (a lock),
    so asyncio.gather over requests works but is not concurrent. Test real concurrency with
    real commits. httpx's ASGITransport alone would not run the lifespan: LifespanManager does.
    """
    app.dependency_overrides[get_session_factory] = lambda: async_sessionmaker(
        bind=session.bind,
        class_=AsyncSession,
        expire_on_commit=False,
        join_transaction_mode="create_savepoint",
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
