"""references/servicebase.md#row-pages: page_rows reads what page() reads, without ORM objects.

Every backend: the same items, order and total as ServiceBase.page for a set of filters, sorts
and pages; the same InvalidFilter; one statement per page (one more per nested list); the
soft-delete scope. PostgreSQL: what an AUTOCOMMIT read session changes and what it keeps.
"""

import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.db import create_engine, create_session_factory
from examples.app.models import Hero, HeroPower, Power, Team
from examples.app.schemas import HeroDetail, HeroPublic
from examples.app.services import HeroService
from examples.servicebase import row_pages
from examples.servicebase.errors import DatabaseError, InvalidFilter, classify
from examples.servicebase.row_pages import page_rows
from examples.testing import counting_statements
from tests.conftest import Backend

SECRET = b"cursor-secret-for-tests-0123456789"
AUTOCOMMIT = {"isolation_level": "AUTOCOMMIT"}


@pytest.fixture
def heroes(session: AsyncSession) -> HeroService:
    return HeroService(session, cursor_secret=SECRET)


async def seed(session: AsyncSession) -> None:
    """Heroes with and without a team, with 0-2 powers, ages with NULLs and ties."""
    tag = uuid.uuid4().hex[:6]
    teams = [Team(name=f"team {n} {tag}", headquarters=f"HQ {n}") for n in range(3)]
    powers = [Power(name=f"power {n} {tag}") for n in range(3)]
    session.add_all([*teams, *powers])
    await session.flush()
    for n in range(25):
        hero = Hero(
            name=f"hero {n:02d} {'ábc' if n % 4 == 0 else 'xyz'}",
            secret_name=f"secret {n} {tag}",
            age=None if n % 5 == 0 else n % 7,
            team_id=None if n % 3 == 0 else teams[n % 3].id,
        )
        session.add(hero)
        await session.flush()
        for power in powers[: n % 3]:
            assert power.id is not None
            session.add(HeroPower(hero_id=hero.id, power_id=power.id, level=1 + n % 10))
    await session.flush()
    session.expunge_all()  # page() must read, not find the objects created here


def detail(item: Any) -> dict[str, Any]:
    """HeroDetail as JSON-able data, each hero's powers in power-id order (the ORM's
    selectinload gives no order within a list)."""
    data = HeroDetail.model_validate(item).model_dump(mode="json")
    data["power_links"].sort(key=lambda link: link["power"]["id"])
    return data


PAGES: list[tuple[Any, dict[str, Any]]] = [
    (None, {}),
    (None, {"sort": "-age,name", "limit": 7, "offset": 3}),
    ({"field": "age", "op": "gte", "value": 3}, {"sort": "age:nulls_first"}),
    ({"field": "name", "op": "icontains", "value": "ÁBC"}, {"sort": "-name"}),
    ({"field": "team.name", "op": "istartswith", "value": "TEAM 1"}, {"limit": 3}),
    ({"field": "power.level", "op": "gte", "value": 2}, {"sort": "-created_at", "limit": 5}),
    (
        {
            "or": [
                {"field": "age", "op": "isnull", "value": True},
                {"field": "team_id", "op": "isnull", "value": True},
            ]
        },
        {"sort": "status,-age"},
    ),
    ({"field": "age", "op": "eq", "value": 6}, {"offset": 100}),  # past the end: total counted
]


@pytest.mark.parametrize(("filter", "options"), PAGES)
async def test_page_rows_reads_what_page_reads(
    heroes: HeroService, session: AsyncSession, filter: Any, options: dict[str, Any]
) -> None:
    await seed(session)
    expected = await heroes.page(filter, load=["team", "powers"], **options)
    session.expunge_all()
    got = await page_rows(heroes, HeroDetail, filter, **options)
    assert all(isinstance(item, HeroDetail) for item in got.items)
    assert [detail(item) for item in got.items] == [detail(item) for item in expected.items]
    assert (got.total, got.limit, got.offset) == (expected.total, expected.limit, expected.offset)
    assert not session.identity_map  # no ORM object was made


BAD: list[tuple[Any, dict[str, Any]]] = [
    ({"field": "secret_name", "op": "eq", "value": "x"}, {}),  # not in the allowlist
    ({"field": "age", "op": "icontains", "value": "x"}, {}),  # operator not allowed there
    ({"field": "age", "op": "gte", "value": "old"}, {}),  # value of the wrong type
    ({"and": [{"field": "age", "op": "eq", "value": 1}] * 21}, {}),  # too many conditions
    (None, {"sort": "secret_name"}),
    (None, {"limit": 0}),
    (None, {"limit": 101}),
    (None, {"offset": -1}),
]


@pytest.mark.parametrize(("filter", "options"), BAD)
async def test_page_rows_refuses_what_page_refuses(
    heroes: HeroService, filter: Any, options: dict[str, Any]
) -> None:
    with pytest.raises(InvalidFilter) as refused_by_page:
        await heroes.page(filter, **options)
    with pytest.raises(InvalidFilter) as refused:
        await page_rows(heroes, HeroPublic, filter, **options)
    assert str(refused.value) == str(refused_by_page.value)


async def test_one_statement_per_page_and_one_per_nested_list(
    heroes: HeroService, session: AsyncSession, engine: AsyncEngine
) -> None:
    await seed(session)
    with counting_statements(engine) as log:
        page = await page_rows(heroes, HeroPublic, {"field": "age", "op": "gte", "value": 0})
    assert len(log.statements) == 1
    assert page.total > 0
    with counting_statements(engine) as log:
        await page_rows(heroes, HeroDetail, limit=100)  # team joined, powers: one IN (...)
    assert len(log.statements) == 2
    with counting_statements(engine) as log:
        await page_rows(heroes, HeroDetail, offset=1000)  # no row carries the total: COUNT
    assert len(log.statements) == 2


async def test_soft_deleted_heroes_stay_out_unless_asked_for(
    heroes: HeroService, session: AsyncSession
) -> None:
    await seed(session)
    page = await page_rows(heroes, HeroPublic, limit=100)
    await heroes.delete(page.items[0].id)
    after = await page_rows(heroes, HeroPublic, limit=100)
    assert after.total == page.total - 1
    assert page.items[0].id not in {item.id for item in after.items}
    everyone = await page_rows(heroes, HeroPublic, limit=100, include_deleted=True)
    assert everyone.total == page.total


async def test_a_schema_field_that_is_no_column_or_relationship_is_refused(
    heroes: HeroService,
) -> None:
    class WithExtra(SQLModel):
        id: uuid.UUID
        nickname: str  # no such column: refused, never silently left out

    with pytest.raises(TypeError, match="nickname"):
        await page_rows(heroes, WithExtra)


# ---------------------------------------------------------------- the statement cache


def executed(engine: AsyncEngine) -> Any:
    """The statement objects execute() gets, in order."""
    seen: list[Any] = []

    def record(_conn: Any, clause: Any, *_args: Any) -> None:
        seen.append(clause)

    class Capture:
        def __enter__(self) -> list[Any]:
            sa.event.listen(engine.sync_engine, "before_execute", record)
            return seen

        def __exit__(self, *_exc: object) -> None:
            sa.event.remove(engine.sync_engine, "before_execute", record)

    return Capture()


async def same_as_page(heroes: HeroService, filter: Any, **options: Any) -> tuple[Any, Any]:
    """page_rows' page and the statement it executed, checked against page()."""
    expected = await heroes.page(filter, limit=100, **options)
    with executed(heroes.session.bind) as statements:  # type: ignore[arg-type]
        got = await page_rows(heroes, HeroPublic, filter, limit=100, **options)
    heroes.session.expunge_all()
    assert [item.id for item in got.items] == [hero.id for hero in expected.items]
    assert got.total == expected.total
    return got, statements[0]


async def test_a_filter_shape_is_built_once_and_its_values_bound_per_call(
    heroes: HeroService, session: AsyncSession
) -> None:
    await seed(session)
    pages, statements = zip(
        *[
            await same_as_page(heroes, filter)
            for filter in (
                {"field": "age", "op": "eq", "value": 1},
                {"field": "age", "op": "eq", "value": 2},
                {"field": "age", "op": "in", "value": [1, 2, 3]},
                {"field": "age", "op": "in", "value": [4]},
                {"field": "name", "op": "icontains", "value": "ÁBC"},
                {"field": "name", "op": "icontains", "value": "_"},  # literal: matches none
            )
        ],
        strict=True,
    )
    assert statements[0] is statements[1]  # eq: one statement, two values
    assert statements[2] is statements[3]  # in: one statement, three values and one
    assert statements[4] is statements[5]
    assert len({id(statement) for statement in statements}) == 3
    assert [page.total > 0 for page in pages] == [True, True, True, True, True, False]
    assert pages[0].items != pages[1].items


async def test_what_changes_the_sql_is_part_of_the_shape(
    heroes: HeroService, session: AsyncSession
) -> None:
    await seed(session)
    statements = [
        (await same_as_page(heroes, filter, **options))[1]
        for filter, options in (
            ({"field": "age", "op": "isnull", "value": True}, {}),
            ({"field": "age", "op": "isnull", "value": False}, {}),
            ({"field": "age", "op": "in", "value": []}, {}),  # matches nothing
            ({"field": "age", "op": "in", "value": [1]}, {}),
            ({"field": "age", "op": "not_in", "value": []}, {}),  # matches all
            ({"field": "age", "op": "eq", "value": 1}, {"sort": "-age"}),
            ({"field": "age", "op": "eq", "value": 1}, {"include_deleted": True}),
            ({"not": {"field": "age", "op": "eq", "value": 1}}, {}),
        )
    ]
    assert len({id(statement) for statement in statements}) == len(statements)


class AgeScoped(HeroService):
    """A scope with a value in it, as a tenant id would be."""

    age = 1

    def _scope(self, include_deleted: bool) -> list[sa.ColumnElement[bool]]:
        return [*super()._scope(include_deleted), Hero.age == self.age]  # type: ignore[list-item]


async def test_a_scope_with_a_bound_value_is_never_kept(session: AsyncSession) -> None:
    await seed(session)
    scoped = AgeScoped(session, cursor_secret=SECRET)
    first, _ = await same_as_page(scoped, None)
    scoped.age = 2
    second, _ = await same_as_page(scoped, None)
    assert first.total > 0
    assert second.total > 0
    assert {item.age for item in first.items} == {1}
    assert {item.age for item in second.items} == {2}
    assert not [key for key in row_pages._statements if key[0] is AgeScoped]


async def test_the_statement_cache_is_bounded(
    heroes: HeroService, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed(session)
    monkeypatch.setattr(row_pages, "STATEMENTS_KEPT", 3)
    monkeypatch.setattr(row_pages, "_statements", {})
    for op in ("eq", "ne", "gt", "gte", "lt", "lte"):  # six shapes
        await same_as_page(heroes, {"field": "age", "op": op, "value": 3})
        assert len(row_pages._statements) <= 3
    # the oldest went first
    assert [key[4][1] for key in row_pages._statements] == ["gte", "lt", "lte"]


# ---------------------------------------------------------------- AUTOCOMMIT read sessions


@pytest.mark.backends("postgresql", "psycopg")
async def test_in_an_autocommit_read_each_statement_is_its_own_snapshot(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    async def two_clocks(**options: Any) -> tuple[Any, Any]:
        async with session_factory(execution_options=options) as session:
            first = (await session.exec(select(sa.func.now()))).one()
            await session.exec(select(sa.func.pg_sleep(0.01)))
            return first, (await session.exec(select(sa.func.now()))).one()

    first, second = await two_clocks()
    assert first == second  # one transaction: now() is its start
    first, second = await two_clocks(**AUTOCOMMIT)
    assert first < second  # a transaction per statement: nothing spans the page and a 2nd read


@pytest.mark.backends("postgresql", "psycopg")
async def test_statement_timeout_still_applies_to_an_autocommit_read(backend: Backend) -> None:
    engine = create_engine(backend.settings().model_copy(update={"statement_timeout_ms": 200}))
    try:
        async with create_session_factory(engine)(execution_options=AUTOCOMMIT) as session:
            with pytest.raises(DBAPIError) as timed_out:
                await session.exec(select(sa.func.pg_sleep(2)))
        assert classify(timed_out.value) is DatabaseError.STATEMENT_TIMEOUT
    finally:
        await engine.dispose()
