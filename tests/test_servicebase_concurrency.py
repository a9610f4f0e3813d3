"""ServiceBase under real concurrency: separate sessions and transactions, real commits."""

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from typing import assert_type

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.models import Hero
from examples.app.schemas import HeroCreate, HeroUpdate, TeamCreate
from examples.app.services import HeroService, TeamService
from examples.servicebase.errors import StaleVersion
from examples.servicebase.pagination import Page
from examples.servicebase.transactions import run_in_transaction, unit_of_work
from tests.test_servicebase import SECRET


async def test_two_updates_from_the_same_version_one_wins(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    async with unit_of_work(session_factory) as session:
        contested = await HeroService(session, cursor_secret=SECRET).create(
            HeroCreate(name="Contested", secret_name="c")
        )

    async def update_from_version_1(age: int) -> str:
        try:
            async with unit_of_work(session_factory) as session:
                service = HeroService(session, cursor_secret=SECRET)
                await service.update(contested.id, HeroUpdate(age=age), expected_version=1)
        except StaleVersion:
            return "stale"
        return "updated"

    outcomes = await asyncio.gather(update_from_version_1(30), update_from_version_1(40))
    assert sorted(outcomes) == ["stale", "updated"]
    async with session_factory() as session:
        final = await HeroService(session, cursor_secret=SECRET).get(contested.id)
        assert final.version == 2
        assert final.age in (30, 40)


async def test_get_or_create_with_20_concurrent_callers_makes_one_row(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    data = TeamCreate(name="Preventers", headquarters="Sharp Tower")

    async def get_or_create() -> tuple[int | None, bool]:
        async with unit_of_work(session_factory) as session:
            team, created = await TeamService(session).get_or_create(data, keys=["name"])
            return team.id, created

    results = await asyncio.gather(*(get_or_create() for _ in range(20)))
    assert len({team_id for team_id, _ in results}) == 1
    assert sorted(created for _, created in results) == [False] * 19 + [True]
    async with session_factory() as session:
        assert await TeamService(session).count() == 1


async def test_service_methods_return_the_model_type(session: AsyncSession) -> None:
    service = HeroService(session, cursor_secret=SECRET)
    created = await service.create(HeroCreate(name="Typed", secret_name="t"))
    assert_type(created, Hero)
    assert_type(await service.get(created.id), Hero)
    assert_type(await service.page(), Page[Hero])
    found = await service.get_one_or_none({"field": "name", "op": "eq", "value": "Typed"})
    assert_type(found, Hero | None)
    assert isinstance(found, Hero)
    assert found.id == created.id
    assert isinstance(created.id, uuid.UUID)
    assert [hero.id for hero in await service.apprentices_of(created.id)] == []


def crossing_get_or_create(
    index: int, attempts: list[int], barrier: asyncio.Barrier | None, names: list[str]
) -> Callable[[AsyncSession], Awaitable[list[int | None]]]:
    """A unit that get_or_creates two teams, in opposite orders for odd and even callers."""
    order = names if index % 2 == 0 else names[::-1]

    async def work(session: AsyncSession) -> list[int | None]:
        attempts[index] += 1
        service = TeamService(session)
        ids = []
        for name in order:
            team, _ = await service.get_or_create(
                TeamCreate(name=name, headquarters="Sharp Tower"), keys=["name"]
            )
            ids.append(team.id)
            if barrier is not None and attempts[index] == 1 and len(ids) == 1:
                # Both hold their first row: now cross over. Bounded, in case a gap lock makes
                # the second caller wait for the first.
                with contextlib.suppress(TimeoutError, asyncio.BrokenBarrierError):
                    async with asyncio.timeout(5):
                        await barrier.wait()
        return sorted(ids, key=str)

    return work


@pytest.mark.backends("postgresql", "mysql")  # SQLite: one writer at a time, no deadlock
@pytest.mark.parametrize("callers", [2, 10])
async def test_get_or_create_deadlocks_are_retried(
    session_factory: async_sessionmaker[AsyncSession], callers: int
) -> None:
    """Callers get_or_create two teams in opposite orders: real deadlocks, which
    run_in_transaction retries. On MySQL/MariaDB a deadlock rolls back the whole transaction;
    with a savepoint around the INSERT, ROLLBACK TO SAVEPOINT then failed (1305) and hid the
    retryable 1213.

    Two callers meet at a barrier first, so they deadlock for certain; ten race freely.
    """
    attempts = [0] * callers
    # New names: a deleted row with the same name (not purged yet) would add InnoDB gap locks.
    names = [f"Preventers {uuid.uuid4()}", f"Z-Force {uuid.uuid4()}"]
    barrier = asyncio.Barrier(2) if callers == 2 else None
    results = await asyncio.gather(
        *(
            run_in_transaction(
                session_factory,
                crossing_get_or_create(index, attempts, barrier, names),
                attempts=10,
            )
            for index in range(callers)
        )
    )
    assert len({tuple(ids) for ids in results}) == 1  # everyone got the same two rows
    async with session_factory() as session:
        assert await TeamService(session).count() == 2
    if barrier is not None:
        assert sum(attempts) == 3  # one deadlock victim, run again once
