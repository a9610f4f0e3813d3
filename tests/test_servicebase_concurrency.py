"""ServiceBase under real concurrency: separate sessions and transactions, real commits."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import assert_type

import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.db import create_session_factory
from examples.app.models import Hero, Team
from examples.app.schemas import HeroCreate, HeroUpdate, TeamCreate
from examples.app.services import HeroService, TeamService
from examples.servicebase.errors import StaleVersion
from examples.servicebase.pagination import Page
from examples.servicebase.transactions import unit_of_work
from tests.test_servicebase import SECRET


@pytest.fixture
async def session_factory(engine: AsyncEngine) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    factory = create_session_factory(engine)
    yield factory
    async with unit_of_work(factory) as session:  # these tests commit: clean up after them
        await session.exec(delete(Hero))
        await session.exec(delete(Team))


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
            team, created = await TeamService(session, cursor_secret=SECRET).get_or_create(
                data, keys=["name"]
            )
            return team.id, created

    results = await asyncio.gather(*(get_or_create() for _ in range(20)))
    assert len({team_id for team_id, _ in results}) == 1
    assert sorted(created for _, created in results) == [False] * 19 + [True]
    async with session_factory() as session:
        assert await TeamService(session, cursor_secret=SECRET).count() == 1


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
