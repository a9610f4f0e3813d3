"""Test helpers shared by conftest.py and the tests that exercise them directly."""

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession


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


async def raw_rows(session: AsyncSession, sql: str, **params: Any) -> list[Any]:
    """Plain SQL on the session's own connection and transaction (typed, unlike exec(text))."""
    connection = await session.connection()
    result = await connection.execute(text(sql), params)
    return list(result.all())
