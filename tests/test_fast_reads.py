"""references/servicebase.md#row-pages: page_rows reads what page() reads, without ORM objects.

Every backend: the same items, order and total as ServiceBase.page for a set of filters, sorts
and pages; the same InvalidFilter; one statement per page (one more per nested list); the
soft-delete scope. PostgreSQL: what an AUTOCOMMIT read session changes and what it keeps.
"""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import registry
from sqlmodel import Field, Relationship, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.db import create_engine, create_session_factory
from examples.app.models import Hero, HeroPower, Power, Team
from examples.app.schemas import HeroDetail, HeroPublic
from examples.app.services import HeroService
from examples.servicebase import row_pages
from examples.servicebase.errors import DatabaseError, InvalidFilter, classify
from examples.servicebase.filters import Condition, FilterField, FilterSpec, keep
from examples.servicebase.row_pages import page_rows
from examples.servicebase.service import ServiceBase
from examples.servicebase.transactions import unit_of_work
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


class WithExtra(SQLModel):
    id: uuid.UUID
    nickname: str  # no such column: refused, never silently left out


# A relationship with an order of its own, on tables of their own registry (not the app's).
class PlaylistModel(SQLModel, registry=registry()):
    pass


class PlaylistGenre(PlaylistModel, table=True):
    playlist_id: int = Field(foreign_key="playlist.id", primary_key=True)
    genre_id: int = Field(foreign_key="genre.id", primary_key=True)


class Genre(PlaylistModel, table=True):
    id: int | None = Field(default=None, primary_key=True)


class Playlist(PlaylistModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=50)
    tracks: list["Track"] = Relationship(
        sa_relationship_kwargs={"lazy": "raise", "order_by": "Track.position"}
    )
    genres: list[Genre] = Relationship(
        link_model=PlaylistGenre, sa_relationship_kwargs={"lazy": "raise"}
    )


class Track(PlaylistModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    playlist_id: int = Field(foreign_key="playlist.id")
    position: int


class TrackRow(SQLModel):
    position: int


class PlaylistRow(SQLModel):
    name: str
    tracks: list[TrackRow]


class PlaylistService(ServiceBase[Playlist, Any, Any]):
    model = Playlist
    filters = FilterSpec({"name": FilterField(Playlist.name, sortable=True)})
    default_sort = "name"


class Owner(PlaylistModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    live_pets: list["Pet"] = Relationship(  # a primaryjoin with more than the foreign key
        sa_relationship_kwargs={
            "primaryjoin": "and_(Owner.id == Pet.owner_id, Pet.gone.is_(False))",
            "viewonly": True,
            "lazy": "raise",
        }
    )
    profile: "Profile" = Relationship(sa_relationship_kwargs={"uselist": False, "lazy": "raise"})


class Pet(PlaylistModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    owner_id: int = Field(foreign_key="owner.id")
    gone: bool = False


class Profile(PlaylistModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    owner_id: int = Field(foreign_key="owner.id")


class Region(PlaylistModel, table=True):
    code: str = Field(primary_key=True, max_length=2)
    country: str = Field(primary_key=True, max_length=2)


class Shop(PlaylistModel, table=True):
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["region_code", "region_country"], ["region.code", "region.country"]
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    region_code: str = Field(max_length=2)
    region_country: str = Field(max_length=2)
    region: Region | None = Relationship(sa_relationship_kwargs={"lazy": "raise"})


class IdRow(SQLModel):
    id: int


class RegionRow(SQLModel):
    code: str


class OwnerWithLivePets(SQLModel):
    id: int
    live_pets: list[IdRow]


class OwnerWithProfile(SQLModel):
    id: int
    profile: list[IdRow]


class ShopWithRegion(SQLModel):
    id: int
    region: RegionRow | None


class PlaylistWithGenres(SQLModel):
    name: str
    genres: list[IdRow]


class PlaylistWithTrackTitles(SQLModel):
    name: str
    tracks: list[str]


@pytest.mark.parametrize(
    ("model", "schema", "field"),
    [
        (Owner, OwnerWithLivePets, "live_pets"),  # IN (...) alone would show gone pets
        (Owner, OwnerWithProfile, "profile"),  # one-to-one: not a list
        (Shop, ShopWithRegion, "region"),  # a composite foreign key
        (Playlist, PlaylistWithGenres, "genres"),  # many-to-many: nest the link model instead
        (Playlist, PlaylistWithTrackTitles, "tracks"),  # not a data model
        (Hero, WithExtra, "nickname"),  # not a column or relationship
    ],
)
def test_what_one_plain_select_can_not_read_is_refused(
    model: Any, schema: type[SQLModel], field: str
) -> None:
    with pytest.raises(TypeError, match=f"{schema.__name__}.{field}"):
        row_pages.plan(model, schema)


async def test_a_nested_list_keeps_its_relationships_order(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(PlaylistModel.metadata.create_all)
    try:
        async with unit_of_work(create_session_factory(engine)) as session:
            playlist = Playlist(name="mix")
            session.add(playlist)
            await session.flush()
            assert playlist.id is not None
            session.add_all([Track(playlist_id=playlist.id, position=p) for p in (3, 1, 2)])
        async with create_session_factory(engine)() as session:
            page = await page_rows(PlaylistService(session), PlaylistRow)
        assert [[t.position for t in p.tracks] for p in page.items] == [[1, 2, 3]]
    finally:
        async with engine.begin() as connection:
            await connection.run_sync(PlaylistModel.metadata.drop_all)


# ---------------------------------------------------------------- the statement cache


@contextmanager
def executed(engine: Any) -> Iterator[list[Any]]:
    """The statement objects execute() gets, in order."""
    seen: list[Any] = []

    def record(_conn: Any, clause: Any, *_args: Any) -> None:
        seen.append(clause)

    sa.event.listen(engine.sync_engine, "before_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine.sync_engine, "before_execute", record)


async def same_as_page(heroes: HeroService, filter: Any, **options: Any) -> tuple[Any, Any]:
    """page_rows' page and the statement it executed, checked against page()."""
    expected = await heroes.page(filter, limit=100, **options)
    with executed(heroes.session.bind) as statements:
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


ONE = {"field": "age", "op": "eq", "value": 1}
UNDER_ONE = {"field": "age", "op": "lt", "value": 1}


async def test_what_changes_the_sql_is_part_of_the_shape(
    heroes: HeroService, session: AsyncSession
) -> None:
    await seed(session)
    deleted = (await heroes.page(ONE)).items[0]
    await heroes.delete(deleted.id)  # include_deleted then changes the answer
    session.expunge_all()
    statements = [
        (await same_as_page(heroes, filter, **options))[1]
        for filter, options in (
            (ONE, {}),
            ({"field": "age", "op": "ne", "value": 1}, {}),
            (ONE, {"sort": "-age"}),
            (ONE, {"include_deleted": True}),
            ({"or": [ONE, UNDER_ONE]}, {}),
            ({"and": [ONE, UNDER_ONE]}, {}),
            ({"field": "age", "op": "isnull", "value": True}, {}),
            ({"field": "age", "op": "isnull", "value": False}, {}),
            ({"field": "age", "op": "in", "value": []}, {}),  # matches nothing
            ({"field": "age", "op": "in", "value": [1]}, {}),
            ({"field": "age", "op": "not_in", "value": []}, {}),  # matches all
        )
    ]
    assert len({id(statement) for statement in statements}) == len(statements)


class AgeScoped(HeroService):
    """A scope with a value in it, as a tenant id would be."""

    age = 1

    def _scope(self, include_deleted: bool) -> list[sa.ColumnElement[bool]]:
        return [*super()._scope(include_deleted), Hero.age == self.age]  # type: ignore[list-item]


class age_is(sa.sql.expression.ColumnElement[bool]):
    """A construct SQLAlchemy can't make a cache key for (no inherit_cache)."""

    type = sa.Boolean()

    def __init__(self, age: int) -> None:
        self.age = age


@compiles(age_is)
def _age_is(element: age_is, compiler: Any, **kw: Any) -> str:
    return f"hero.age = {int(element.age)}"


class UncacheableScope(AgeScoped):
    def _scope(self, include_deleted: bool) -> list[sa.ColumnElement[bool]]:
        return [*HeroService._scope(self, include_deleted), age_is(self.age)]


class KnownAgesOnly(HeroService):
    """_where overridden with SQL that holds no value: page_rows goes through it, and keeps it."""

    def _where(self, filter: Any, include_deleted: bool, bind: Any = keep) -> Any:
        return [*super()._where(filter, include_deleted, bind), col(Hero.age).is_not(None)]


class FlippableSort(HeroService):
    """_sort depends on the instance: the ORDER BY a call gets is part of its key."""

    descending = False

    def _sort(self, sort: str | None) -> Any:
        return super()._sort(("-" if self.descending else "") + (sort or "name"))


@pytest.mark.filterwarnings("ignore:Class age_is will not make use of SQL compilation caching")
@pytest.mark.parametrize("service_class", [AgeScoped, UncacheableScope])
async def test_a_scope_with_a_value_of_its_own_is_never_kept(
    session: AsyncSession, service_class: type[AgeScoped]
) -> None:
    await seed(session)
    scoped = service_class(session, cursor_secret=SECRET)
    first, _ = await same_as_page(scoped, None)
    scoped.age = 2
    second, _ = await same_as_page(scoped, None)
    assert first.total > 0
    assert second.total > 0
    assert {item.age for item in first.items} == {1}
    assert {item.age for item in second.items} == {2}
    assert not [key for key in row_pages._statements if key[0] is service_class]


async def test_an_overridden_where_and_sort_are_honoured(session: AsyncSession) -> None:
    await seed(session)
    known = KnownAgesOnly(session, cursor_secret=SECRET)
    everyone = {"field": "name", "op": "icontains", "value": "hero"}
    first, kept = await same_as_page(known, everyone)
    second, again = await same_as_page(known, {"field": "name", "op": "icontains", "value": "ÁBC"})
    assert kept is again  # the override holds no value: one statement for both filters
    assert 0 < second.total < first.total
    assert all(item.age is not None for item in [*first.items, *second.items])
    heroes = HeroService(session, cursor_secret=SECRET)
    assert first.total < (await page_rows(heroes, HeroPublic, everyone)).total
    flippable = FlippableSort(session, cursor_secret=SECRET)
    ascending, up = await same_as_page(flippable, None)
    flippable.descending = True
    descending, down = await same_as_page(flippable, None)
    assert up is not down
    assert [item.name for item in descending.items] == [item.name for item in ascending.items][::-1]


async def test_filters_built_in_code_read_as_page_reads_them(session: AsyncSession) -> None:
    await seed(session)
    heroes = HeroService(session, cursor_secret=SECRET)
    ages = {}
    for label, node in {
        "null": Condition("age", "eq", None),  # IS NULL, as page() reads it
        "3": Condition("age", "eq", sa.literal(2) + 1),  # SQL in the filter: never kept
        "4": Condition("age", "eq", sa.literal(3) + 1),
        "1-2": Condition("age", "between", (sa.literal(1), sa.literal(2))),
        "known": Condition("age", "eq", col(Hero.age)),
    }.items():
        page, _ = await same_as_page(heroes, node)
        ages[label] = {item.age for item in page.items}
    assert ages == {"null": {None}, "3": {3}, "4": {4}, "1-2": {1, 2}, "known": set(range(7))}


async def test_the_least_recently_used_shape_goes_first(
    heroes: HeroService, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed(session)
    monkeypatch.setattr(row_pages, "STATEMENTS_KEPT", 3)
    monkeypatch.setattr(row_pages, "_statements", {})

    async def statement(op: str) -> Any:
        return (await same_as_page(heroes, {"field": "age", "op": op, "value": 3}))[1]

    eq = await statement("eq")
    ne = await statement("ne")
    for op in ("gt", "eq", "gte", "lt"):  # eq used again: ne and gt go first
        await statement(op)
        assert len(row_pages._statements) <= 3
    assert await statement("eq") is eq  # kept
    assert await statement("ne") is not ne  # built again


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
