"""references/async-operations.md: queries, bulk statements, savepoints, raw SQL, streaming,
concurrency, retries, and the errors of misusing a session."""

import asyncio
import gc

import pytest
from httpx import AsyncClient
from sqlalchemy import orm
from sqlalchemy.exc import (
    IntegrityError,
    InvalidRequestError,
    OperationalError,
    PendingRollbackError,
)
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import SQLModel, col, func, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.db import create_engine, create_session_factory
from examples.app.models import Hero, HeroStatus, Team
from examples.app.settings import Settings
from examples.async_operations import (
    active_teammates,
    add_team_unless_taken,
    count_heroes,
    count_in_parallel,
    delete_teamless_heroes,
    heroes_named,
    heroes_older_than,
    names_and_ages,
    retire_everyone_older_than,
    retire_if_covered,
    stream_hero_names,
    team_sizes_from_async,
    transfer_age,
)
from examples.async_operations import main as async_operations_main
from examples.pitfalls import (
    keep_going_after_a_failed_flush,
    misplaced_await,
    share_one_session,
)
from examples.servicebase.errors import DatabaseError, classify
from examples.servicebase.transactions import run_in_transaction, unit_of_work
from examples.testing import counting_statements
from tests.conftest import Backend


async def add_heroes(session: AsyncSession, *ages: int | None) -> None:
    session.add_all(Hero(name=f"h{i}", secret_name=f"s{i}", age=age) for i, age in enumerate(ages))
    await session.flush()


async def test_select_shapes(session: AsyncSession) -> None:
    await add_heroes(session, 30, 50, None)
    assert [h.name for h in await heroes_older_than(session, 40)] == ["h1"]
    assert list(await names_and_ages(session)) == [("h0", 30), ("h1", 50), ("h2", None)]
    assert await count_heroes(session) == 3


async def test_bulk_update_and_delete_statements(
    engine: AsyncEngine, session: AsyncSession
) -> None:
    await add_heroes(session, 30, 50, 60)
    with counting_statements(engine) as log:
        assert await retire_everyone_older_than(session, 40) == 2
        assert await delete_teamless_heroes(session) == 3
    assert [s.split()[0] for s in log.statements] == ["UPDATE", "DELETE"]


async def test_bulk_update_bumps_the_version(session: AsyncSession) -> None:
    """An update() statement skips version_id_col; retire_everyone_older_than bumps it itself."""
    await add_heroes(session, 30, 50, 60)
    await session.flush()
    await retire_everyone_older_than(session, 40)
    fresh = select(Hero.name, Hero.version).order_by(Hero.name)
    assert list(await session.exec(fresh)) == [("h0", 1), ("h1", 2), ("h2", 2)]


async def test_a_bulk_update_makes_an_older_etag_stale(
    client: AsyncClient, session: AsyncSession
) -> None:
    created = await client.post("/heroes", json={"name": "Old", "secret_name": "o", "age": 70})
    hero = f"/heroes/{created.json()['id']}"
    seen = (await client.get(hero)).headers["ETag"]
    await retire_everyone_older_than(session, 40)
    session.expire_all()  # as the next request's own session would: nothing loaded yet
    stale = await client.patch(hero, json={"age": 71}, headers={"If-Match": seen})
    assert stale.status_code == 412
    assert (await client.get(hero)).headers["ETag"] == f'"{int(seen.strip(chr(34))) + 1}"'


async def test_savepoint_keeps_the_transaction_alive(session: AsyncSession) -> None:
    assert await add_team_unless_taken(session, "Preventers")
    assert not await add_team_unless_taken(session, "Preventers")
    teams = (await session.exec(select(Team.name))).all()
    assert teams == ["Preventers"]


async def test_raw_sql_binds_values(session: AsyncSession) -> None:
    session.add(Hero(name="O'Brien; DROP TABLE hero; --", secret_name="x"))
    await session.flush()
    assert await heroes_named(session, "O'Brien; DROP TABLE hero; --") == 1
    assert await count_heroes(session) == 1


async def test_raw_sql_sees_pending_rows(session: AsyncSession) -> None:
    # connection.execute() bypasses the session's autoflush; heroes_named flushes first.
    session.add(Hero(name="pending", secret_name="p"))
    assert await heroes_named(session, "pending") == 1


async def test_bulk_update_leaves_loaded_objects_stale_until_refreshed(
    session: AsyncSession,
) -> None:
    await add_heroes(session, 30, 50, 60)
    loaded = (await session.exec(select(Hero).where(Hero.name == "h1"))).one()
    assert await retire_everyone_older_than(session, 40) == 2
    again = (await session.exec(select(Hero).where(Hero.name == "h1"))).one()
    assert again is loaded
    assert again.status == "active"  # a plain re-read does not overwrite loaded attributes
    fresh = select(Hero).where(Hero.name == "h1").execution_options(populate_existing=True)
    assert (await session.exec(fresh)).one().status == "retired"


async def test_streaming_is_one_query(engine: AsyncEngine, session: AsyncSession) -> None:
    await add_heroes(session, *range(1200))
    with counting_statements(engine) as log:
        streamed = [name async for name in stream_hero_names(session)]
    assert len(streamed) == 1200
    assert log.count == 1


async def test_one_session_per_task(session_factory: async_sessionmaker[AsyncSession]) -> None:
    async with unit_of_work(session_factory) as session:
        await add_heroes(session, 1, 2)
    assert await count_in_parallel(session_factory) == [2, 2, 2]


async def test_in_memory_sqlite_sessions_share_one_connection() -> None:
    # A plain engine: no error, but every session shares one connection and one transaction.
    plain = create_async_engine("sqlite+aiosqlite:///:memory:")
    async with plain.begin() as conn:
        await conn.run_sync(SQLModel.metadata.create_all)
    factory = create_session_factory(plain)
    assert await count_in_parallel(factory) == [0, 0, 0]
    async with factory() as writer, factory() as other:
        writer.add(Team(name="Preventers", headquarters="Sharp Tower"))
        await writer.flush()
        assert (await other.exec(select(func.count()).select_from(Team))).one() == 1
        await other.rollback()  # rolls back the writer's insert too
        await writer.commit()
    async with factory() as reader:
        assert (await reader.exec(select(func.count()).select_from(Team))).one() == 0
    await plain.dispose()
    # The project's engine (BEGIN IMMEDIATE per transaction) fails instead.
    ours = create_engine(Settings(database_url="sqlite+aiosqlite:///:memory:"))
    async with ours.begin() as conn:
        await conn.run_sync(SQLModel.metadata.create_all)
    with pytest.raises(OperationalError, match="cannot start a transaction within a transaction"):
        await count_in_parallel(create_session_factory(ours))
    await ours.dispose()


async def test_a_deadlock_is_retried_and_each_unit_applies_once(
    backend: Backend, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    async with unit_of_work(session_factory) as session:
        session.add_all([Hero(name=n, secret_name=n, age=10) for n in ("A", "B")])
    both_hold_their_first_lock = asyncio.Barrier(2)
    attempts = 0

    async def bump_in_order(first: str, second: str) -> None:
        async def work(session: AsyncSession) -> None:
            nonlocal attempts
            attempts += 1
            for name in (first, second):
                await session.exec(
                    update(Hero).where(col(Hero.name) == name).values(age=col(Hero.age) + 1)
                )
                # First attempts wait for each other, so each holds the lock the other wants.
                # (SQLite's BEGIN IMMEDIATE serialises the units: there is nothing to deadlock.)
                if name == first and attempts <= 2 and backend.name != "sqlite":
                    await asyncio.wait_for(both_hold_their_first_lock.wait(), 10)

        await run_in_transaction(session_factory, work)

    await asyncio.gather(bump_in_order("A", "B"), bump_in_order("B", "A"))
    async with session_factory() as session:
        ages = (await session.exec(select(Hero.name, Hero.age).order_by(Hero.name))).all()
    assert list(ages) == [("A", 12), ("B", 12)]  # both units, exactly once each
    assert attempts == (2 if backend.name == "sqlite" else 3)  # the loser ran twice


async def two_active_teammates(
    session_factory: async_sessionmaker[AsyncSession],
) -> tuple[Hero, Hero]:
    async with unit_of_work(session_factory) as session:
        team = Team(name="Night Watch", headquarters="Tower")
        session.add(team)
        await session.flush()
        pair = (
            Hero(name="A", secret_name="a", team_id=team.id),
            Hero(name="B", secret_name="b", team_id=team.id),
        )
        session.add_all(pair)
    return pair


async def statuses(session_factory: async_sessionmaker[AsyncSession]) -> list[str]:
    async with session_factory() as session:
        return list((await session.exec(select(Hero.status).order_by(Hero.name))).all())


@pytest.mark.parametrize("isolation_level", [None, "SERIALIZABLE"])
async def test_write_skew_needs_serializable_and_a_retry(
    backend: Backend, session_factory: async_sessionmaker[AsyncSession], isolation_level: str | None
) -> None:
    """Both units read (each sees the other active), then both retire: forced interleaving."""
    pair = await two_active_teammates(session_factory)
    both_have_read = asyncio.Barrier(2)
    attempts = 0

    async def retire(hero: Hero) -> bool:
        async def work(session: AsyncSession) -> bool:
            nonlocal attempts
            attempts += 1
            mine = await session.get_one(Hero, hero.id)
            covered = await active_teammates(session, mine) > 0
            if attempts <= 2 and backend.name != "sqlite":  # SQLite: BEGIN IMMEDIATE serialises
                await asyncio.wait_for(both_have_read.wait(), 10)
            if covered:
                mine.status = HeroStatus.RETIRED
            return covered

        return await run_in_transaction(session_factory, work, isolation_level=isolation_level)

    retired = await asyncio.gather(*(retire(hero) for hero in pair))
    if isolation_level is None and backend.name != "sqlite":  # the anomaly, reproduced
        assert retired == [True, True]
        assert await statuses(session_factory) == [HeroStatus.RETIRED] * 2  # nobody left
        assert attempts == 2
    else:  # one retired; the other failed, re-ran, saw it and refused
        assert sorted(retired) == [False, True]
        assert sorted(await statuses(session_factory)) == [HeroStatus.ACTIVE, HeroStatus.RETIRED]
        assert attempts == (2 if backend.name == "sqlite" else 3)


async def test_retire_if_covered_keeps_one_active(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    pair = await two_active_teammates(session_factory)
    results = await asyncio.gather(*(retire_if_covered(session_factory, h.id) for h in pair))
    assert sorted(results) == [False, True]
    assert sorted(await statuses(session_factory)) == [HeroStatus.ACTIVE, HeroStatus.RETIRED]


async def test_the_isolation_level_is_the_transactions_only(
    backend: Backend, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    """unit_of_work(isolation_level=) sets it for one transaction; the pool gets it back reset."""
    async with unit_of_work(session_factory, isolation_level="SERIALIZABLE") as session:
        inside = await (await session.connection()).get_isolation_level()
    async with unit_of_work(session_factory) as session:
        after = await (await session.connection()).get_isolation_level()
    default = {"postgresql": "READ COMMITTED", "mysql": "REPEATABLE READ"}
    assert (inside, after) == ("SERIALIZABLE", default.get(backend.name, "SERIALIZABLE"))


async def test_transfer_with_retry(session_factory: async_sessionmaker[AsyncSession]) -> None:
    async with unit_of_work(session_factory) as session:
        session.add_all([Hero(name=n, secret_name=n, age=10) for n in ("A", "B")])
    await transfer_age(session_factory, "A", "B")
    async with session_factory() as session:
        ages = (await session.exec(select(Hero.age).order_by(Hero.name))).all()
    assert list(ages) == [9, 11]


async def test_retry_does_not_repeat_other_errors(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    attempts = 0

    async def work(session: AsyncSession) -> None:
        nonlocal attempts
        attempts += 1
        session.add_all(
            [Team(name="Twins", headquarters="A"), Team(name="Twins", headquarters="B")]
        )
        await session.flush()

    with pytest.raises(IntegrityError) as caught:
        await run_in_transaction(session_factory, work)
    assert classify(caught.value) is DatabaseError.UNIQUE_VIOLATION
    assert attempts == 1


# ---------------------------------------------------------------- misuse, reproduced


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
async def test_misplaced_await(session: AsyncSession) -> None:
    with pytest.raises(AttributeError, match="'coroutine' object has no attribute 'first'"):
        await misplaced_await(session)
    gc.collect()


async def test_sharing_a_session_between_tasks_fails(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    async with session_factory() as session:
        with pytest.raises(InvalidRequestError, match="concurrent operations are not permitted"):
            await share_one_session(session)


# SQLAlchemy also warns "Usage of the 'Session.add()' operation is not currently supported
# within the execution stage of the flush process" when a task adds while another flushes.
@pytest.mark.filterwarnings("ignore:Usage of the 'Session.add:sqlalchemy.exc.SAWarning")
async def test_a_warm_shared_session_interleaves_reads_and_refuses_concurrent_flushes(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    async with session_factory() as session:
        await session.exec(select(Hero))  # the session now holds a connection
        await share_one_session(session)  # no error: the driver serialises the reads

        async def add_and_flush(i: int) -> None:
            session.add(Hero(name=f"w{i}", secret_name=f"w{i}"))
            await session.flush()

        results = await asyncio.gather(
            *(add_and_flush(i) for i in range(5)), return_exceptions=True
        )
        errors = [result for result in results if isinstance(result, BaseException)]
        assert errors
        assert all(isinstance(error, InvalidRequestError) for error in errors)
        assert "Session is already flushing" in str(errors[0])
        await session.rollback()


async def test_using_a_session_after_a_failed_flush(session: AsyncSession) -> None:
    with pytest.raises(PendingRollbackError, match="rolled back due to a previous exception"):
        await keep_going_after_a_failed_flush(session)


async def test_walkthrough_runs() -> None:
    await async_operations_main()


async def test_sync_code_runs_in_the_async_session(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    async with unit_of_work(session_factory) as session:
        team = Team(name="Sync", headquarters="HQ")
        session.add_all([team, Team(name="Empty", headquarters="HQ")])
        await session.flush()
        session.add_all([Hero(name=n, secret_name=n, team_id=team.id) for n in ("A", "B")])
        await session.flush()
        # In the unit's own transaction: it sees the rows flushed but not committed.
        assert await team_sizes_from_async(session) == {"Empty": 0, "Sync": 2}

        def lazy_team(sync_session: orm.Session) -> object:
            hero = sync_session.scalars(select(Hero).limit(1)).one()
            return hero.team  # no implicit load here either: lazy="raise"

        with pytest.raises(InvalidRequestError, match="lazy='raise'"):
            await session.run_sync(lazy_team)


async def test_an_engine_copy_carries_its_own_isolation_level(
    backend: Backend, engine: AsyncEngine
) -> None:
    """engine.execution_options(isolation_level=...): another engine object on the same pool."""
    level = {"postgresql": "REPEATABLE READ", "mysql": "READ COMMITTED"}.get(
        backend.name, "READ UNCOMMITTED"
    )
    reporting = engine.execution_options(isolation_level=level)
    async with unit_of_work(create_session_factory(reporting)) as session:
        inside = await (await session.connection()).get_isolation_level()
    async with unit_of_work(create_session_factory(engine)) as session:
        default = await (await session.connection()).get_isolation_level()
    assert inside == level
    assert default != level
