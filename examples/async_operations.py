"""Queries, transactions and concurrency with SQLModel's AsyncSession.

Run: `python -m examples.async_operations` (a temporary SQLite file; prints each step).
"""

import asyncio
import tempfile
import uuid
from collections.abc import AsyncIterator, Sequence

from sqlalchemy import orm, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import Session, SQLModel, col, delete, func, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.db import create_engine, create_session_factory
from examples.app.models import Hero, HeroStatus, Team
from examples.app.settings import Settings
from examples.servicebase.errors import DatabaseError, classify
from examples.servicebase.transactions import run_in_transaction, unit_of_work


# --8<-- [start:select]
async def heroes_older_than(session: AsyncSession, age: int) -> Sequence[Hero]:
    # select(Model): exec() yields model objects; .all() / .first() / .one() / .one_or_none()
    statement = select(Hero).where(col(Hero.age) > age).order_by(col(Hero.age))
    return (await session.exec(statement)).all()


async def names_and_ages(session: AsyncSession) -> Sequence[tuple[str, int | None]]:
    # select(col, col): exec() yields tuples
    return (await session.exec(select(Hero.name, Hero.age).order_by(Hero.name))).all()


async def count_heroes(session: AsyncSession) -> int:
    return (await session.exec(select(func.count()).select_from(Hero))).one()


# --8<-- [end:select]


# --8<-- [start:bulk_statements]
async def retire_everyone_older_than(session: AsyncSession, age: int) -> int:
    # One UPDATE for all matching rows; no objects loaded. synchronize_session=False: objects
    # already in this session keep their old values, even when a later query returns them,
    # until expired (commit, expire_all) or re-read with populate_existing=True.
    statement = (
        update(Hero)
        .where(col(Hero.age) > age)
        # version_id_col only covers flushes: bump it here, or a stale ETag still matches.
        .values(status="retired", version=col(Hero.version) + 1)
        .execution_options(synchronize_session=False)
    )
    return (await session.exec(statement)).rowcount


async def delete_teamless_heroes(session: AsyncSession) -> int:
    statement = delete(Hero).where(col(Hero.team_id).is_(None))
    return (await session.exec(statement.execution_options(synchronize_session=False))).rowcount


# --8<-- [end:bulk_statements]


# --8<-- [start:savepoint]
async def add_team_unless_taken(session: AsyncSession, name: str) -> bool:
    # A savepoint lets one statement fail without losing the rest of the transaction.
    try:
        async with session.begin_nested():  # rolls back to the savepoint if the block raises
            session.add(Team(name=name, headquarters="unknown"))
        return True
    except IntegrityError as error:
        if classify(error) is not DatabaseError.UNIQUE_VIOLATION:
            raise
        return False


# --8<-- [end:savepoint]


# --8<-- [start:raw_sql]
async def heroes_named(session: AsyncSession, name: str) -> int:
    # Values go in as bound parameters (:name), never formatted into the SQL string.
    await session.flush()  # connection.execute() skips autoflush: pending rows would be missed
    connection = await session.connection()  # the session's own connection and transaction
    result = await connection.execute(
        text("SELECT count(*) FROM hero WHERE name = :name"), {"name": name}
    )
    return int(result.scalar_one())


# --8<-- [end:raw_sql]


# --8<-- [start:stream]
async def stream_hero_names(session: AsyncSession) -> AsyncIterator[str]:
    # Server-side cursor: rows arrive in batches of yield_per, never all in memory at once.
    result = await session.stream_scalars(
        select(Hero).order_by(col(Hero.id)).execution_options(yield_per=500)
    )
    async for hero in result:
        yield hero.name


# --8<-- [end:stream]


# --8<-- [start:one_session_per_task]
async def count_in_parallel(session_factory: async_sessionmaker[AsyncSession]) -> list[int]:
    # Concurrent work: one session (one connection) per task.
    async def count_with_own_session() -> int:
        async with session_factory() as session:
            return await count_heroes(session)

    return list(await asyncio.gather(*(count_with_own_session() for _ in range(3))))


# --8<-- [end:one_session_per_task]


# --8<-- [start:retry]
async def transfer_age(
    session_factory: async_sessionmaker[AsyncSession], giver: str, taker: str
) -> None:
    async def work(session: AsyncSession) -> None:
        # The whole unit re-runs on a deadlock or serialization failure, so it re-reads too.
        for name, delta in ((giver, -1), (taker, 1)):
            await session.exec(
                update(Hero).where(col(Hero.name) == name).values(age=col(Hero.age) + delta)
            )

    await run_in_transaction(session_factory, work)


# --8<-- [end:retry]


# --8<-- [start:run_sync]
def team_sizes(session: Session) -> dict[str, int]:
    """Sync code written for a plain Session (a report, a legacy module, a sync library)."""
    statement = (
        select(Team.name, func.count(col(Hero.id)))
        .join(Hero, isouter=True)
        .group_by(col(Team.name))
        .order_by(col(Team.name))
    )
    return {name: count for name, count in session.exec(statement).all()}


async def team_sizes_from_async(session: AsyncSession) -> dict[str, int]:
    # run_sync hands the AsyncSession's own sync Session to the function, in its transaction.
    # It is SQLModel's Session, but typed as SQLAlchemy's: mypy refuses team_sizes as it is.
    def run(sync_session: orm.Session) -> dict[str, int]:
        assert isinstance(sync_session, Session)
        return team_sizes(sync_session)

    return await session.run_sync(run)


# --8<-- [end:run_sync]


# --8<-- [start:serializable]
async def active_teammates(session: AsyncSession, hero: Hero) -> int:
    statement = select(func.count()).where(
        col(Hero.team_id) == hero.team_id,
        col(Hero.status) == HeroStatus.ACTIVE,
        col(Hero.id) != hero.id,
    )
    return (await session.exec(statement)).one()


async def retire_if_covered(
    session_factory: async_sessionmaker[AsyncSession], hero_id: uuid.UUID
) -> bool:
    """Retire a hero only if an active teammate remains: a rule over rows this unit doesn't write.

    Two units retiring both teammates at once each see the other still active (write skew).
    READ COMMITTED (PostgreSQL's default) and REPEATABLE READ (MariaDB's) let both commit: no one
    is left. SERIALIZABLE makes one fail (PostgreSQL 40001, MariaDB a deadlock), and the retry
    re-runs it: it now sees the other's retirement and refuses.
    """

    async def work(session: AsyncSession) -> bool:
        hero = await session.get_one(Hero, hero_id)
        if await active_teammates(session, hero) == 0:
            return False
        hero.status = HeroStatus.RETIRED
        return True

    return await run_in_transaction(session_factory, work, isolation_level="SERIALIZABLE")


# --8<-- [end:serializable]


async def main() -> None:
    # A file, not :memory: — an in-memory database is one shared connection (StaticPool),
    # so concurrent sessions would step on each other's transactions.
    folder = tempfile.mkdtemp()
    engine = create_engine(Settings(database_url=f"sqlite+aiosqlite:///{folder}/walkthrough.db"))
    async with engine.begin() as conn:
        await conn.run_sync(SQLModel.metadata.create_all)
    session_factory = create_session_factory(engine)
    async with unit_of_work(session_factory) as session:
        session.add_all(
            [
                Hero(name="Deadpond", secret_name="Dive Wilson", age=48),
                Hero(name="Rusty-Man", secret_name="Tommy Sharp", age=30),
            ]
        )
        await session.flush()
        print([hero.name for hero in await heroes_older_than(session, 40)])
        print(await names_and_ages(session), await heroes_named(session, "Deadpond"))
        print("team added:", await add_team_unless_taken(session, "Preventers"))
        print("again:", await add_team_unless_taken(session, "Preventers"))
        print([name async for name in stream_hero_names(session)])
    await transfer_age(session_factory, "Deadpond", "Rusty-Man")
    print(await count_in_parallel(session_factory))
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
