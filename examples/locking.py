"""Row locks and advisory locks: wait, fail at once, skip, or give up after a while.

SQLite has neither: its BEGIN IMMEDIATE (db.py) lets one writer in at a time, so the others wait
(busy_timeout), and FOR UPDATE is left out of its SQL.
"""

import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.models import Hero
from examples.servicebase.transactions import unit_of_work


# --8<-- [start:nowait]
async def lock_hero_or_fail(session: AsyncSession, hero_id: uuid.UUID) -> Hero:
    """The hero, locked until this unit ends; if another unit holds it, fail at once instead of
    waiting: PostgreSQL 55P03, MariaDB 1205. classify() calls both LOCK_TIMEOUT; the app's
    handlers answer 503 with Retry-After. (skip_locked=True skips such rows: the job queue.)"""
    statement = select(Hero).where(col(Hero.id) == hero_id).with_for_update(nowait=True)
    return (await session.exec(statement)).one()


# --8<-- [end:nowait]


# --8<-- [start:lock_timeout]
async def lock_hero_within(session: AsyncSession, hero_id: uuid.UUID, seconds: float) -> Hero:
    """Wait at most `seconds` for the lock (PostgreSQL: lock_timeout, this transaction only).
    MySQL/MariaDB's innodb_lock_wait_timeout (50 s by default) is per session and in whole
    seconds: a SET there stays on the pooled connection."""
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        # At least 1 ms: 0 means "wait forever".
        timeout_ms = max(1, round(seconds * 1000))
        await connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{timeout_ms}ms'")
    statement = select(Hero).where(col(Hero.id) == hero_id).with_for_update()
    return (await session.exec(statement)).one()


# --8<-- [end:lock_timeout]


# --8<-- [start:advisory]
async def run_exclusively(
    engine: AsyncEngine,
    session_factory: async_sessionmaker[AsyncSession],
    name: str,
    work: Callable[[AsyncSession], Awaitable[None]],
) -> bool:
    """Run `work` in its own unit of work unless another process is running it right now
    (a scheduled job on several hosts): then return False at once.

    The lock is held on a connection of its own, outside any transaction, and released after
    the work has committed: no second runner can start before the first one's writes are
    visible. It is per server session: not behind a transaction-mode PgBouncer.
    """
    async with engine.connect() as raw:
        lock = await raw.execution_options(isolation_level="AUTOCOMMIT")
        if not await try_lock(lock, name):
            return False
        try:
            async with unit_of_work(session_factory) as session:
                await work(session)
        finally:
            await unlock(lock, name)
    return True


async def try_lock(connection: AsyncConnection, name: str) -> bool:
    if connection.dialect.name == "postgresql":
        statement = "SELECT pg_try_advisory_lock(hashtextextended(:name, 0))"
    else:  # MySQL/MariaDB: names are server-wide, at most 64 characters
        statement = "SELECT GET_LOCK(:name, 0) = 1"
    return bool((await connection.execute(text(statement), {"name": name})).scalar_one())


async def unlock(connection: AsyncConnection, name: str) -> None:
    if connection.dialect.name == "postgresql":
        statement = "SELECT pg_advisory_unlock(hashtextextended(:name, 0))"
    else:
        statement = "SELECT RELEASE_LOCK(:name)"
    await connection.execute(text(statement), {"name": name})


# --8<-- [end:advisory]
