"""Units of work: one transaction per block, and retrying the whole unit on transient failures."""

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from .errors import DatabaseError, classify

T = TypeVar("T")


# --8<-- [start:unit_of_work]
@asynccontextmanager
async def unit_of_work(
    session_factory: async_sessionmaker[AsyncSession],
    *,
    isolation_level: str | None = None,
    **session_options: Any,
) -> AsyncIterator[AsyncSession]:
    """One transaction: commits when the block succeeds, rolls back when it raises.

    isolation_level ("SERIALIZABLE", "REPEATABLE READ", ...): this transaction only; the
    connection goes back to the pool with the engine's level. session_options: info=, ...
    """
    async with session_factory(**session_options) as session, session.begin():
        if isolation_level is not None:  # before the first statement, or it is too late
            await session.connection(execution_options={"isolation_level": isolation_level})
        yield session


# --8<-- [end:unit_of_work]


# --8<-- [start:run_in_transaction]
RETRYABLE = {DatabaseError.DEADLOCK, DatabaseError.SERIALIZATION_FAILURE}


async def run_in_transaction(
    session_factory: async_sessionmaker[AsyncSession],
    work: Callable[[AsyncSession], Awaitable[T]],
    *,
    attempts: int = 3,
    backoff: float = 0.05,
    isolation_level: str | None = None,
) -> T:
    """Run work in a fresh transaction; on a deadlock or serialization failure, run it again.

    Only the database rolled the loser back, so re-running the whole unit is safe, provided work
    has no side effects outside the database (no emails, no HTTP calls) before it commits.
    """
    for attempt in range(1, attempts + 1):
        try:
            async with unit_of_work(session_factory, isolation_level=isolation_level) as session:
                return await work(session)
        except DBAPIError as error:
            if attempt == attempts or classify(error) not in RETRYABLE:
                raise
            await asyncio.sleep(backoff * 2 ** (attempt - 1) * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")


# --8<-- [end:run_in_transaction]
