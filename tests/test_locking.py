"""Row locks that fail at once or after a bound, and advisory locks for one runner at a time."""

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.models import Hero
from examples.locking import lock_hero_or_fail, lock_hero_within, run_exclusively
from examples.servicebase.errors import DatabaseError, classify
from examples.servicebase.transactions import unit_of_work
from tests.conftest import Backend

pytestmark = pytest.mark.backends("postgresql", "psycopg", "mysql")


async def a_hero(session_factory: async_sessionmaker[AsyncSession]) -> Hero:
    async with unit_of_work(session_factory) as session:
        hero = Hero(name="Locked", secret_name="locked")
        session.add(hero)
    return hero


async def test_nowait_fails_at_once_while_another_unit_holds_the_row(
    backend: Backend, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    hero = await a_hero(session_factory)
    async with unit_of_work(session_factory) as holder:
        await lock_hero_or_fail(holder, hero.id)
        with pytest.raises(DBAPIError) as refused:
            async with unit_of_work(session_factory) as other:
                await asyncio.wait_for(lock_hero_or_fail(other, hero.id), 5)  # no waiting
    assert classify(refused.value) is DatabaseError.LOCK_TIMEOUT
    code = {"postgresql": "55P03", "mysql": 1205}[backend.name]
    orig = refused.value.orig
    assert getattr(orig, "sqlstate", None) == code or getattr(orig, "args", [None])[0] == code
    async with unit_of_work(session_factory) as again:  # released with the holder's transaction
        assert (await lock_hero_or_fail(again, hero.id)).name == "Locked"


@pytest.mark.backends("postgresql", "psycopg")
async def test_lock_timeout_bounds_the_wait_for_this_transaction_only(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    hero = await a_hero(session_factory)
    async with unit_of_work(session_factory) as holder:
        await lock_hero_or_fail(holder, hero.id)
        with pytest.raises(DBAPIError) as gave_up:
            async with unit_of_work(session_factory) as waiter:
                await asyncio.wait_for(lock_hero_within(waiter, hero.id, 0.2), 5)
    assert classify(gave_up.value) is DatabaseError.LOCK_TIMEOUT
    async with unit_of_work(session_factory) as later:
        connection = await later.connection()
        assert (await connection.execute(text("SHOW lock_timeout"))).scalar_one() == "0"


async def test_one_runner_at_a_time_and_the_next_after_it_committed(
    engine: AsyncEngine, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    first_is_running, may_finish = asyncio.Event(), asyncio.Event()
    name = "nightly-report"

    async def slow(session: AsyncSession) -> None:
        session.add(Hero(name="Report", secret_name="report"))
        first_is_running.set()
        await may_finish.wait()

    async def quick(session: AsyncSession) -> None:
        session.add(Hero(name="Second", secret_name="second"))

    first = asyncio.create_task(run_exclusively(engine, session_factory, name, slow))
    await asyncio.wait_for(first_is_running.wait(), 5)
    assert (
        await run_exclusively(engine, session_factory, name, quick) is False
    )  # at once, not waiting
    may_finish.set()
    assert await first is True
    assert await run_exclusively(engine, session_factory, name, quick) is True  # free again
    async with session_factory() as session:
        names = sorted((await session.exec(text("SELECT name FROM hero"))).scalars())  # type: ignore[call-overload]
    assert names == ["Report", "Second"]
