"""references/servicebase.md: CRUD, filters, sorting, pages, cursors, errors, soft delete."""

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import registry
from sqlalchemy.pool import NullPool
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.models import Hero, HeroPower, HeroStatus, Power, Team
from examples.app.schemas import HeroCreate, HeroPowerCreate, HeroPowerGrant, HeroUpdate, TeamCreate
from examples.app.services import HeroPowerService, HeroService, TeamService
from examples.app.types import UTCDateTime
from examples.data_models import main as data_models_main
from examples.relationships import grant_power
from examples.relationships import main as relationships_main
from examples.servicebase.cursors import CursorPages
from examples.servicebase.errors import (
    Conflict,
    ForeignKeyViolation,
    InvalidFilter,
    NotFound,
    StaleVersion,
)
from examples.servicebase.filters import FilterSpec
from examples.servicebase.soft_delete import SoftDelete
from examples.servicebase.upserts import Upserts
from examples.servicebase_usage import (
    adults_in_team,
    birthday,
    every_hero_by_age,
    import_heroes,
)
from examples.servicebase_usage import main as servicebase_usage_main
from examples.testing import counting_statements
from tests.conftest import Backend, _admin_execute
from tests.support import a_session_on_fresh_tables, plan_of, raw_rows

SECRET = b"cursor-secret-for-tests-0123456789"


@pytest.fixture
def heroes(session: AsyncSession) -> HeroService:
    return HeroService(session, cursor_secret=SECRET)


@pytest.fixture
def teams(session: AsyncSession) -> TeamService:
    return TeamService(session)


def hero(name: str, **fields: Any) -> HeroCreate:
    return HeroCreate.model_validate({"name": name, "secret_name": f"{name} secret", **fields})


def where(field: str, op: str, value: Any = None) -> dict[str, Any]:
    return {"field": field, "op": op, "value": value}


async def names(service: HeroService, filter: Any, **kwargs: Any) -> list[str]:
    page = await service.page(filter, sort="name", limit=100, **kwargs)
    return [item.name for item in page.items]


# ---------------------------------------------------------------- create and read


async def test_create_get_and_not_found(heroes: HeroService) -> None:
    created = await heroes.create(hero("Deadpond", age=48))
    fetched = await heroes.get(created.id)
    assert (fetched.id, fetched.name, fetched.version) == (created.id, "Deadpond", 1)
    with pytest.raises(NotFound, match="not found"):
        await heroes.get(uuid.uuid4())


async def test_create_many_is_one_insert(engine: AsyncEngine, heroes: HeroService) -> None:
    with counting_statements(engine) as log:
        created = await heroes.create_many([hero(f"hero {i:03}") for i in range(250)])
    assert len({h.id for h in created}) == 250
    assert all(h.created_at is not None for h in created)  # server defaults came back too
    assert [s.split()[0] for s in log.statements] == ["INSERT"]


async def test_create_many_with_an_autoincrement_key_is_one_insert_per_row_on_sqlite(
    backend: Backend, engine: AsyncEngine, teams: TeamService
) -> None:
    # SQLite can't promise RETURNING order for rows numbered by the database, so SQLAlchemy
    # sends one INSERT per row there; PostgreSQL and MariaDB batch 1000 rows per INSERT.
    items = [TeamCreate(name=f"team {i:04}", headquarters="x") for i in range(2500)]
    with counting_statements(engine) as log:
        created = await teams.create_many(items)
    assert len({team.id for team in created}) == 2500
    assert {s.split()[0] for s in log.statements} == {"INSERT"}
    assert log.count == (2500 if backend.name == "sqlite" else 3)


async def test_get_one_or_none_refuses_an_ambiguous_filter(heroes: HeroService) -> None:
    await heroes.create_many([hero("Deadpond", age=1), hero("Dead Man", age=1)])
    found = await heroes.get_one_or_none(where("name", "eq", "Deadpond"))
    assert found is not None
    assert found.name == "Deadpond"
    assert await heroes.get_one_or_none(where("name", "eq", "Nobody")) is None
    with pytest.raises(InvalidFilter, match="more than one"):
        await heroes.get_one_or_none(where("age", "eq", 1))


async def test_count_and_exists(heroes: HeroService) -> None:
    await heroes.create_many([hero("a", age=1), hero("b", age=2), hero("c", age=3)])
    assert await heroes.count(where("age", "gte", 2)) == 2
    assert await heroes.exists(where("age", "eq", 3))
    assert not await heroes.exists(where("age", "eq", 4))


# ---------------------------------------------------------------- filters


@pytest.fixture
async def cast(heroes: HeroService, session: AsyncSession) -> None:
    team = Team(name="Preventers", headquarters="Sharp Tower")
    flight, strength = Power(name="Flight"), Power(name="Strength")
    session.add_all([team, flight, strength])
    await session.flush()
    created = await heroes.create_many(
        [
            hero("Deadpond", age=48, team_id=team.id),
            hero("Rusty-Man", age=None, status=HeroStatus.RETIRED, team_id=team.id),
            hero("100%_done", age=20),
            hero("100 done", age=None),
            hero("Ébène", age=30, status=HeroStatus.MISSING),
            hero("éclair", age=31),
        ]
    )
    assert flight.id is not None
    assert strength.id is not None
    await grant_power(session, created[0].id, flight.id, level=3)
    await grant_power(session, created[0].id, strength.id, level=8)
    await grant_power(session, created[4].id, flight.id, level=9)


ALL = ["100 done", "100%_done", "Deadpond", "Rusty-Man", "Ébène", "éclair"]


@pytest.mark.usefixtures("cast")
@pytest.mark.parametrize(
    ("filter", "expected"),
    [
        (where("age", "eq", 48), ["Deadpond"]),
        # ne / not_in never match NULL (SQL three-valued logic, same on every backend)
        (where("age", "ne", 48), ["100%_done", "Ébène", "éclair"]),
        (where("age", "gt", 30), ["Deadpond", "éclair"]),
        (where("age", "gte", 30), ["Deadpond", "Ébène", "éclair"]),
        (where("age", "lt", 30), ["100%_done"]),
        (where("age", "lte", 30), ["100%_done", "Ébène"]),
        (where("age", "in", [20, 48]), ["100%_done", "Deadpond"]),
        (where("age", "not_in", [20, 48]), ["Ébène", "éclair"]),
        (where("age", "in", []), []),
        (where("age", "not_in", []), ALL),
        (where("age", "between", [30, 31]), ["Ébène", "éclair"]),
        (where("age", "isnull", True), ["100 done", "Rusty-Man"]),
        (where("age", "isnull", False), ["100%_done", "Deadpond", "Ébène", "éclair"]),
        (where("status", "in", ["retired", "missing"]), ["Rusty-Man", "Ébène"]),
        # % and _ are literal characters, never wildcards
        (where("name", "contains", "%"), ["100%_done"]),
        (where("name", "contains", "0_d"), []),
        (where("name", "startswith", "100%"), ["100%_done"]),
        (where("name", "endswith", "_done"), ["100%_done"]),
        # case-sensitive operators are case-sensitive everywhere; i* fold non-ASCII too
        (where("name", "contains", "dead"), []),
        (where("name", "icontains", "DEAD"), ["Deadpond"]),
        (where("name", "icontains", "ÉBÈ"), ["Ébène"]),
        (where("name", "istartswith", "é"), ["Ébène", "éclair"]),
        (where("name", "iendswith", "NE"), ["100 done", "100%_done", "Ébène"]),
        (where("name", "eq", "deadpond"), []),
        # related columns go through EXISTS: Deadpond has two powers and appears once
        (where("power.level", "gte", 3), ["Deadpond", "Ébène"]),
        (where("power.name", "eq", "Flight"), ["Deadpond", "Ébène"]),
        (where("team.name", "eq", "Preventers"), ["Deadpond", "Rusty-Man"]),
        (
            {"or": [where("age", "lt", 25), {"and": [where("status", "eq", "missing")]}]},
            ["100%_done", "Ébène"],
        ),
        ({"not": where("age", "gt", 30)}, ["100%_done", "Ébène"]),  # NOT never adds NULL rows
        (None, ALL),
    ],
)
async def test_filter_operators(heroes: HeroService, filter: Any, expected: list[str]) -> None:
    assert await names(heroes, filter) == sorted(expected, key=str)


@pytest.mark.parametrize(
    ("filter", "message"),
    [
        (where("secret_name", "eq", "x"), "cannot filter on 'secret_name'; allowed: age, "),
        (where("age", "like", 1), "operator 'like' not allowed on 'age'; allowed: between, eq"),
        (where("age", "eq", "old"), "bad value for 'age'"),
        (where("age", "eq", 2**40), "bad value for 'age'"),  # would overflow INTEGER
        (where("age", "eq", None), "use isnull"),
        (where("name", "eq", "nul\x00byte"), "bad value for 'name'"),  # PostgreSQL refuses NUL
        (where("name", "eq", "x" * 101), "bad value for 'name'"),  # longer than the column
        (where("age", "between", [1]), "exactly two values"),
        (where("age", "between", [1, 2, 3]), "exactly two values"),
        (where("age", "between", [5, 1]), "low is greater than high"),
        (where("age", "in", 5), "takes a list"),
        (where("age", "in", list(range(101))), "at most 100 values"),
        (where("status", "eq", "flying"), "bad value for 'status'"),
        (where("created_at", "gt", "2030-01-01T00:00:00"), "bad value for 'created_at'"),
        ({"and": []}, "non-empty list"),
        ({"field": "age"}, "unexpected keys"),
        ({"xor": [where("age", "eq", 1)]}, "unexpected keys"),
        ("age=1", "a filter is an object"),
        ({"not": {"not": {"not": {"not": {"not": where("age", "eq", 1)}}}}}, "deeper than 4"),
        ({"or": [where("age", "eq", i) for i in range(21)]}, "more than 20 conditions"),
    ],
)
async def test_bad_filters_fail_closed(heroes: HeroService, filter: Any, message: str) -> None:
    with pytest.raises(InvalidFilter) as caught:
        await heroes.page(filter)
    assert message in str(caught.value)


@pytest.mark.backends("postgresql")
async def test_postgresql_folds_unicode_case_only_with_a_utf8_ctype(
    backend: Backend, session: AsyncSession
) -> None:
    # The tests' databases inherit the server's C.UTF-8; a database with LC_CTYPE C folds ASCII.
    folds = "SELECT lower('\u00c9') = '\u00e9' AND '\u00c9LODIE' ILIKE '%\u00e9lodie%'"
    assert (await raw_rows(session, folds)) == [(True,)]
    assert backend.server_url is not None
    name = f"asm_ctype_c_{uuid.uuid4().hex[:8]}"
    await _admin_execute(
        backend.server_url,
        f"CREATE DATABASE {name} TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C' ENCODING 'UTF8'",
    )
    try:
        engine = create_async_engine(backend.server_url.set(database=name), poolclass=NullPool)
        async with engine.connect() as connection:
            assert (await connection.exec_driver_sql(folds)).all() == [(False,)]
        await engine.dispose()
    finally:
        await _admin_execute(backend.server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def test_mysql_ignores_trailing_spaces_in_equality(
    backend: Backend, heroes: HeroService
) -> None:
    # MySQL/MariaDB collations are PAD SPACE: 'Deadpond ' = 'Deadpond'. A pinned difference.
    await heroes.create(hero("Deadpond"))
    matched = await names(heroes, where("name", "eq", "Deadpond "))
    assert matched == (["Deadpond"] if backend.name == "mysql" else [])


async def test_mysql_unique_keys_ignore_trailing_spaces(
    backend: Backend, engine: AsyncEngine, heroes: HeroService, teams: TeamService
) -> None:
    # utf8mb4_bin is PAD SPACE in UNIQUE keys too: 'Deadpond ' is taken by 'Deadpond'.
    team = await teams.create(TeamCreate(name="Preventers", headquarters="Sharp Tower"))
    await heroes.create(hero("Deadpond", team_id=team.id))
    if backend.name != "mysql":
        assert (await heroes.create(hero("Deadpond ", team_id=team.id))).name == "Deadpond "
        return
    with pytest.raises(Conflict):
        await heroes.create(hero("Deadpond ", team_id=team.id))
    # MariaDB's utf8mb4_nopad_bin tells them apart in both (MySQL 8 has no such collation).
    async with engine.connect() as connection:
        await connection.exec_driver_sql(
            "CREATE TEMPORARY TABLE nopad (s VARCHAR(20) UNIQUE)"
            " CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin"
        )
        await connection.exec_driver_sql("INSERT INTO nopad VALUES ('x'), ('x ')")
        matched = await connection.exec_driver_sql("SELECT CONCAT(s, '|') FROM nopad WHERE s = 'x'")
        assert matched.scalars().all() == ["x|"]


# ---------------------------------------------------------------- sorting and pages


@pytest.mark.usefixtures("cast")
@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("age", [20, 30, 31, 48, None, None]),  # NULLs last by default, on every backend
        ("-age", [48, 31, 30, 20, None, None]),
        ("age:nulls_first", [None, None, 20, 30, 31, 48]),
        ("-age:nulls_first", [None, None, 48, 31, 30, 20]),
    ],
)
async def test_sort_places_nulls_the_same_everywhere(
    heroes: HeroService, sort: str, expected: list[int | None]
) -> None:
    page = await heroes.page(sort=sort)
    assert [item.age for item in page.items] == expected


@pytest.mark.parametrize(
    ("sort", "message"),
    [
        ("secret_name", "cannot sort by 'secret_name'; sortable: age, created_at, name, status"),
        ("team_id", "cannot sort by 'team_id'"),
        ("age:sideways", "cannot sort by 'age:sideways'"),
        ("age,-age", "appears twice"),
    ],
)
async def test_bad_sorts_fail_closed(heroes: HeroService, sort: str, message: str) -> None:
    with pytest.raises(InvalidFilter) as caught:
        await heroes.page(sort=sort)
    assert message in str(caught.value)


@pytest.mark.parametrize(("limit", "offset"), [(0, 0), (101, 0), (10, -1), (10, 10**7)])
async def test_page_bounds(heroes: HeroService, limit: int, offset: int) -> None:
    with pytest.raises(InvalidFilter, match="must be between"):
        await heroes.page(limit=limit, offset=offset)


async def test_page_total_comes_with_the_rows(engine: AsyncEngine, heroes: HeroService) -> None:
    await heroes.create_many([hero(f"hero {i:02}", age=i % 3) for i in range(25)])
    with counting_statements(engine) as log:
        page = await heroes.page(where("age", "eq", 1), limit=5, offset=5)
    # 8 matches (hero 01, 04, ... 22); offset 5 leaves the last 3.
    assert ([h.name for h in page.items], page.total) == (["hero 16", "hero 19", "hero 22"], 8)
    assert log.count == 1
    with counting_statements(engine) as log:
        past_the_end = await heroes.page(where("age", "eq", 1), limit=5, offset=50)
    assert (past_the_end.items, past_the_end.total) == ([], 8)
    assert log.count == 2  # no row to carry the window count: a separate COUNT


async def collect_offset_pages(heroes: HeroService, sort: str, limit: int) -> list[str]:
    seen: list[str] = []
    offset = 0
    while True:
        page = await heroes.page(sort=sort, limit=limit, offset=offset)
        seen += [h.name for h in page.items]
        offset += limit
        if offset >= page.total:
            return seen


async def collect_cursor_pages(heroes: HeroService, sort: str, limit: int) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        page = await heroes.page_by_cursor(sort=sort, limit=limit, cursor=cursor)
        seen += [h.name for h in page.items]
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


@pytest.mark.parametrize("sort", ["age", "-age:nulls_first", "status,-age"])
async def test_every_row_exactly_once_under_heavy_ties(heroes: HeroService, sort: str) -> None:
    ages = [None, 1, 1, 1, 2, 2, None, 1, 3, 3, 3, 3, None, 1, 2, 2, 1, 1, 1, 1, 1, 1, 2]
    statuses = list(HeroStatus)
    await heroes.create_many(
        [hero(f"h{i:02}", age=a, status=statuses[i % 3]) for i, a in enumerate(ages)]
    )
    everyone = sorted(f"h{i:02}" for i in range(len(ages)))
    for limit in (1, 4, 7):
        assert sorted(await collect_offset_pages(heroes, sort, limit)) == everyone
        assert sorted(await collect_cursor_pages(heroes, sort, limit)) == everyone


async def test_keyset_paging_survives_inserts_between_pages(heroes: HeroService) -> None:
    await heroes.create_many([hero(f"m{i:02}", age=i % 4) for i in range(20)])
    first = await heroes.page_by_cursor(sort="age", limit=6)
    seen = [h.name for h in first.items]
    # New rows sort before and after the cursor; none of the old rows may repeat or vanish.
    await heroes.create_many([hero(f"new{i}", age=i % 4) for i in range(8)])
    cursor = first.next_cursor
    while cursor is not None:
        page = await heroes.page_by_cursor(sort="age", limit=6, cursor=cursor)
        seen += [h.name for h in page.items]
        cursor = page.next_cursor
    old = [name for name in seen if name.startswith("m")]
    assert sorted(old) == [f"m{i:02}" for i in range(20)]
    assert len(seen) == len(set(seen))


async def test_cursor_pages_go_back(heroes: HeroService) -> None:
    await heroes.create_many([hero(f"b{i:02}", age=i % 3) for i in range(10)])
    first = await heroes.page_by_cursor(sort="-age", limit=4)
    assert first.prev_cursor is None
    second = await heroes.page_by_cursor(sort="-age", limit=4, cursor=first.next_cursor)
    back = await heroes.page_by_cursor(sort="-age", limit=4, cursor=second.prev_cursor)
    assert [h.name for h in back.items] == [h.name for h in first.items]
    assert back.prev_cursor is None
    assert back.next_cursor is not None


@pytest.mark.parametrize("sort", ["created_at", "-created_at"])
async def test_cursor_walk_on_created_at_mixes_server_and_python_timestamps(
    heroes: HeroService, session: AsyncSession, sort: str
) -> None:
    # One INSERT: the database clock gives these rows created_at in the same millisecond.
    server_set = await heroes.create_many([hero(f"server{i}") for i in range(4)])
    clock = server_set[0].created_at
    assert clock is not None
    # Python-bound values at and around that instant, down to the microsecond.
    for i, delta in enumerate((-1, 0, 0, 1, 999)):
        at = clock + timedelta(microseconds=delta)
        session.add(Hero(name=f"bound{i}", secret_name=f"bound{i} secret", created_at=at))
    await session.flush()
    everyone = sorted([f"server{i}" for i in range(4)] + [f"bound{i}" for i in range(5)])
    for limit in (1, 2, 3):
        seen: list[Hero] = []
        cursor = None
        for _ in range(len(everyone) + 1):  # a cursor that repeats rows could loop forever
            page = await heroes.page_by_cursor(sort=sort, limit=limit, cursor=cursor)
            seen += page.items
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert sorted(h.name for h in seen) == everyone  # every row exactly once
        times = [h.created_at for h in seen]
        assert times == sorted(times, key=lambda t: t or clock, reverse=sort.startswith("-"))


async def test_tampered_or_foreign_cursors_are_rejected(heroes: HeroService) -> None:
    await heroes.create_many([hero(f"c{i:02}", age=i) for i in range(5)])
    cursor = (await heroes.page_by_cursor(sort="age", limit=2)).next_cursor
    assert cursor is not None
    body, _, signature = cursor.partition(".")
    forged = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1] + "." + signature
    for bad in (forged, "garbage", cursor + "x", "", "abc.\u00e9", body + ".\u00e9"):
        with pytest.raises(InvalidFilter, match="invalid cursor"):
            await heroes.page_by_cursor(sort="age", limit=2, cursor=bad)
    with pytest.raises(InvalidFilter, match="different filter or sort"):
        await heroes.page_by_cursor(sort="-age", limit=2, cursor=cursor)
    with pytest.raises(InvalidFilter, match="different filter or sort"):
        await heroes.page_by_cursor(where("age", "gt", 0), sort="age", limit=2, cursor=cursor)
    other_secret = HeroService(heroes.session, cursor_secret=b"another-secret-0123456789")
    with pytest.raises(InvalidFilter, match="invalid cursor"):
        await other_secret.page_by_cursor(sort="age", limit=2, cursor=cursor)


async def test_a_cursor_survives_reordered_repeatable_parameters(heroes: HeroService) -> None:
    """?status=a&status=b then ?status=b&status=a: the same filter, so the same cursor binding."""
    await heroes.create_many([hero(f"r{i}", age=i, status=HeroStatus.MISSING) for i in range(4)])
    both = ["active", "missing"]

    def filter_of(statuses: list[str], ages: list[int]) -> dict[str, Any]:
        return {"and": [where("status", "in", statuses), where("age", "not_in", ages)]}

    first = await heroes.page_by_cursor(filter_of(both, [7, 9]), sort="age", limit=2)
    reordered = {"and": list(reversed(filter_of(both[::-1], [9, 7])["and"]))}
    rest = await heroes.page_by_cursor(reordered, sort="age", limit=2, cursor=first.next_cursor)
    assert [h.name for h in rest.items] == ["r2", "r3"]
    with pytest.raises(InvalidFilter, match="different filter or sort"):  # between keeps order
        await heroes.page_by_cursor(
            where("age", "between", [0, 9]), sort="age", limit=2, cursor=first.next_cursor
        )


# ---------------------------------------------------------------- updates and deletes


async def test_update_is_partial_and_versioned(heroes: HeroService) -> None:
    created = await heroes.create(hero("Deadpond", age=48, attributes={"cape": "red"}))
    updated = await heroes.update(created.id, HeroUpdate(age=49), expected_version=1)
    assert (updated.age, updated.attributes, updated.version) == (49, {"cape": "red"}, 2)
    with pytest.raises(StaleVersion, match="newer version"):
        await heroes.update(created.id, HeroUpdate(age=50), expected_version=1)


async def test_update_where_counts_and_bumps_versions(heroes: HeroService) -> None:
    await heroes.create_many([hero("a", age=1), hero("b", age=1), hero("c", age=2)])
    changed = await heroes.update_where(where("age", "eq", 1), HeroUpdate(age=10))
    assert changed == 2
    page = await heroes.page(where("age", "eq", 10))
    assert sorted((h.name, h.version) for h in page.items) == [("a", 2), ("b", 2)]
    with pytest.raises(InvalidFilter, match="needs a filter"):
        await heroes.update_where({}, HeroUpdate(age=1))


async def test_soft_deleted_rows_are_invisible_until_restored(heroes: HeroService) -> None:
    _alive, doomed = await heroes.create_many([hero("alive", age=1), hero("doomed", age=1)])
    await heroes.delete(doomed.id)  # one UPDATE; the object in the session follows it
    assert doomed.deleted_at is not None
    assert doomed.version == 2
    assert doomed.updated_at is not None  # readable: expired would be MissingGreenlet
    age_one = where("age", "eq", 1)
    with pytest.raises(NotFound):
        await heroes.get(doomed.id)
    with pytest.raises(NotFound):
        await heroes.update(doomed.id, HeroUpdate(age=5))
    with pytest.raises(NotFound):
        await heroes.delete(doomed.id)
    assert await names(heroes, age_one) == ["alive"]
    assert await heroes.count(age_one) == 1
    assert not await heroes.exists(where("name", "eq", "doomed"))
    assert [h.name for h in (await heroes.page_by_cursor(age_one)).items] == ["alive"]
    assert await heroes.update_where(where("name", "eq", "doomed"), HeroUpdate(age=7)) == 0
    assert await heroes.delete_where(where("name", "eq", "doomed")) == 0
    assert await names(heroes, age_one, include_deleted=True) == ["alive", "doomed"]

    restored = await heroes.restore(doomed.id)
    assert restored is doomed
    assert (restored.deleted_at, restored.version) == (None, 3)
    assert restored.updated_at is not None  # server-set, loaded: no lazy load
    assert await heroes.count(age_one) == 2
    with_team = await heroes.restore(doomed.id, load=["team"])  # relationships, loaded
    assert with_team.team is None
    again = await heroes.restore(doomed.id)  # not deleted: returned unchanged
    assert (again.deleted_at, again.version) == (None, 3)
    with pytest.raises(NotFound):
        await heroes.restore(uuid.uuid4())


async def test_delete_where_refuses_an_empty_filter_and_hard_deletes(
    heroes: HeroService,
) -> None:
    await heroes.create_many([hero("a", age=1), hero("b", age=2)])
    empty: dict[str, Any] | None
    for empty in (None, {}):
        with pytest.raises(InvalidFilter, match="refusing to delete every row"):
            await heroes.delete_where(empty)
    assert await heroes.delete_where(where("age", "eq", 1), hard=True) == 1
    assert await heroes.count(include_deleted=True) == 1


async def test_hard_delete_is_one_statement_and_the_schema_cascades(
    engine: AsyncEngine, session: AsyncSession, heroes: HeroService
) -> None:
    """DELETE by id, not the ORM's load-then-delete: ON DELETE CASCADE removes the power
    links, ON DELETE SET NULL frees the apprentices, on every backend."""
    mentor = await heroes.create(hero("Mentor"))
    apprentice = await heroes.create(hero("Apprentice", mentor_id=mentor.id))
    flight = Power(name="Flight")
    session.add(flight)
    await session.flush()
    assert flight.id is not None
    await grant_power(session, mentor.id, flight.id, level=3)
    with counting_statements(engine) as log:
        await heroes.delete(mentor.id, hard=True)
    assert log.count == 1, log.statements
    with pytest.raises(NotFound):
        await heroes.get(mentor.id, include_deleted=True)
    with pytest.raises(NotFound):
        await heroes.delete(mentor.id, hard=True)
    links = await session.exec(select(HeroPower).where(HeroPower.hero_id == mentor.id))
    assert links.all() == []
    assert (await heroes.get(apprentice.id)).mentor_id is None


# ---------------------------------------------------------------- upserts and errors


async def test_upsert_inserts_then_updates_in_one_statement(
    backend: Backend, engine: AsyncEngine, heroes: HeroService
) -> None:
    first = await heroes.upsert(hero("Deadpond", age=1), conflict=["secret_name"])
    assert (first.age, first.version) == (1, 1)
    with counting_statements(engine) as log:
        await heroes.upsert_many(
            [hero("Deadpond", age=2), hero("Rusty-Man", age=3)], conflict=["secret_name"]
        )
    # MySQL first checks the other unique keys (SELECT ... FOR UPDATE).
    check = ["SELECT"] if backend.name == "mysql" else []
    assert [s.split()[0] for s in log.statements] == [*check, "INSERT"]
    again = await heroes.get(first.id)
    assert (again.age, again.version) == (2, 2)
    # Unique among live heroes: once deleted, the same key upserts a new hero.
    await heroes.delete(first.id)
    new = await heroes.upsert(hero("Deadpond", age=4), conflict=["secret_name"])
    assert (new.id != first.id, new.age) == (True, 4)
    assert (await heroes.get(first.id, include_deleted=True)).age == 2
    assert (await heroes.count(), await heroes.count(include_deleted=True)) == (2, 3)


async def test_upsert_never_overwrites_a_row_hit_by_another_unique_key(
    heroes: HeroService, teams: TeamService
) -> None:
    # MySQL's ON DUPLICATE KEY UPDATE fires on any unique key, not only the conflict target.
    team = await teams.create(TeamCreate(name="Preventers", headquarters="Sharp Tower"))
    await heroes.create_many(
        [
            hero("Rusty-Man", secret_name="Tommy", age=48, team_id=team.id),
            hero("Other", secret_name="Other", age=30, team_id=team.id),
        ]
    )
    # No row has secret_name "NEW"; the row collides with "Other" on (name, team_id) only.
    clash = hero("Other", secret_name="NEW", age=99, team_id=team.id)
    with pytest.raises(Conflict):
        async with heroes.session.begin_nested():
            await heroes.upsert_many([clash], conflict=["secret_name"])
    ages = await raw_rows(heroes.session, "SELECT name, age FROM hero ORDER BY name")
    assert [tuple(row) for row in ages] == [("Other", 30), ("Rusty-Man", 48)]


async def test_upsert_refuses_a_row_whose_target_collides_on_another_key(
    heroes: HeroService, teams: TeamService
) -> None:
    team = await teams.create(TeamCreate(name="Preventers", headquarters="Sharp Tower"))
    await heroes.create_many(
        [
            hero("Rusty-Man", secret_name="Tommy", age=48, team_id=team.id),
            hero("Other", secret_name="Other", age=30, team_id=team.id),
        ]
    )
    # Targets Tommy's row, but renaming it to "Other" would collide with the other hero.
    clash = hero("Other", secret_name="Tommy", age=99, team_id=team.id)
    with pytest.raises(Conflict):
        async with heroes.session.begin_nested():
            await heroes.upsert_many([clash], conflict=["secret_name"])
    ages = await raw_rows(heroes.session, "SELECT name, age FROM hero ORDER BY name")
    assert [tuple(row) for row in ages] == [("Other", 30), ("Rusty-Man", 48)]


@pytest.mark.backends("mysql")
async def test_mysql_upsert_guard_alone_never_overwrites(
    heroes: HeroService, teams: TeamService
) -> None:
    # Without the check (as if another transaction inserted "Other" after it), the guarded
    # ON DUPLICATE KEY UPDATE leaves the other row as it was.
    class Unchecked(HeroService):
        async def _refuse_other_key_hits(self, rows: Any, conflict: Any) -> None:
            return None

    team = await teams.create(TeamCreate(name="Preventers", headquarters="Sharp Tower"))
    await heroes.create(hero("Other", secret_name="Other", age=30, team_id=team.id))
    unchecked = Unchecked(heroes.session, cursor_secret=SECRET)
    clash = hero("Other", secret_name="NEW", age=99, team_id=team.id)
    await unchecked.upsert_many([clash], conflict=["secret_name"])
    rows = await raw_rows(heroes.session, "SELECT secret_name, age, version FROM hero")
    assert [tuple(row) for row in rows] == [("Other", 30, 1)]


async def test_upsert_refuses_the_same_key_twice_in_one_batch(
    heroes: HeroService, teams: TeamService
) -> None:
    # PostgreSQL would fail with "ON CONFLICT DO UPDATE command cannot affect row a second
    # time"; SQLite and MySQL would keep the last one. Refused up front, on every backend.
    rows = [
        {"name": "A", "secret_name": "dup", "age": 1},
        {"name": "B", "secret_name": "dup", "age": 2},
    ]
    with pytest.raises(Conflict, match="secret_name more than once"):
        await import_heroes(heroes, rows)
    team = await teams.create(TeamCreate(name="Preventers", headquarters="Sharp Tower"))
    same_name_and_team = [
        hero("A", secret_name="one", team_id=team.id),
        hero("A", secret_name="two", team_id=team.id),
    ]
    with pytest.raises(Conflict, match="name, team_id more than once"):
        await heroes.upsert_many(same_name_and_team, conflict=["secret_name"])
    assert await heroes.count() == 0
    # NULLs never collide: the same name without a team is two rows.
    no_team = [hero("A", secret_name="one"), hero("A", secret_name="two")]
    await heroes.upsert_many(no_team, conflict=["secret_name"])
    assert await heroes.count() == 2


async def test_upsert_updates_only_the_fields_sent(heroes: HeroService, teams: TeamService) -> None:
    team = await teams.create(TeamCreate(name="Preventers", headquarters="Sharp Tower"))
    await heroes.create(hero("Rusty-Man", secret_name="Tommy", age=48, team_id=team.id))
    partial = HeroCreate(name="Rusty-Man II", secret_name="Tommy")  # no age, no team_id
    updated = await heroes.upsert(partial, conflict=["secret_name"])
    assert (updated.name, updated.age, updated.team_id) == ("Rusty-Man II", 48, team.id)


async def test_get_or_create_returns_the_existing_row(teams: TeamService) -> None:
    data = TeamCreate(name="Preventers", headquarters="Sharp Tower")
    created, was_created = await teams.get_or_create(data, keys=["name"])
    again, created_again = await teams.get_or_create(data, keys=["name"])
    assert (was_created, created_again) == (True, False)
    assert again.id == created.id


async def test_get_or_create_passes_over_a_soft_deleted_match(heroes: HeroService) -> None:
    doomed = await heroes.create(hero("Other", secret_name="Other"))
    await heroes.delete(doomed.id)
    found, created = await heroes.get_or_create(
        hero("X", secret_name="Other"), keys=["secret_name"]
    )
    assert (found.id != doomed.id, found.name, created) == (True, "X", True)
    again, created = await heroes.get_or_create(
        hero("Y", secret_name="Other"), keys=["secret_name"]
    )
    assert (again.id, created) == (found.id, False)
    with pytest.raises(Conflict, match="taken"):  # its secret name is a live hero's now
        async with heroes.session.begin_nested():
            await heroes.restore(doomed.id)


class CouponBase(SQLModel, registry=registry(metadata=sa.MetaData())):
    """Soft delete with a key unique among ALL rows, deleted ones too (no live column)."""


class Coupon(CouponBase, table=True):
    __tablename__ = "coupon_all_rows"  # examples/soft_delete_unique.py has a "coupon" table

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=20, unique=True)
    percent: int = 0
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class CouponService(Upserts[Coupon, Coupon, Coupon], SoftDelete[Coupon, Coupon, Coupon]):
    model = Coupon
    filters = FilterSpec({})


async def test_a_key_unique_among_all_rows_revives_on_upsert_and_refuses_get_or_create(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(CouponBase.metadata.create_all)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session:
            coupons = CouponService(session)
            first = await coupons.upsert(Coupon(code="SAVE", percent=5), conflict=["code"])
            await coupons.delete(first.id)
            with pytest.raises(Conflict, match="a deleted coupon holds this key"):
                await coupons.get_or_create(Coupon(code="SAVE", percent=9), keys=["code"])
            revived = await coupons.upsert(Coupon(code="SAVE", percent=7), conflict=["code"])
            assert (revived.id, revived.percent, revived.deleted_at) == (first.id, 7, None)
            assert await coupons.count(include_deleted=True) == 1
    finally:
        async with engine.begin() as connection:
            await connection.run_sync(CouponBase.metadata.drop_all)


async def test_constraint_errors_are_safe_to_show(heroes: HeroService, teams: TeamService) -> None:
    await teams.create(TeamCreate(name="Preventers", headquarters="Sharp Tower"))
    with pytest.raises(Conflict) as conflict:
        await teams.create(TeamCreate(name="Preventers", headquarters="Secret Base"))
    await teams.session.rollback()
    with pytest.raises(ForeignKeyViolation) as missing_parent:
        await heroes.create(hero("Orphan", team_id=987654))
    for error in (conflict.value, missing_parent.value):
        message = str(error)
        assert not any(word in message for word in ("INSERT", "SELECT", "Preventers", "987654"))


async def test_unknown_load_option_is_refused(heroes: HeroService) -> None:
    with pytest.raises(InvalidFilter, match="loadable: powers, team"):
        await heroes.page(load=["secret"])


async def test_load_options_are_constant_in_statements(
    engine: AsyncEngine, heroes: HeroService, session: AsyncSession
) -> None:
    team = Team(name="Preventers", headquarters="Sharp Tower")
    session.add(team)
    await session.flush()
    await heroes.create_many([hero(f"h{i}", team_id=team.id) for i in range(30)])
    session.expunge_all()
    with counting_statements(engine) as log:
        page = await heroes.page(load=["team", "powers"], limit=30)
        assert {h.team.name for h in page.items if h.team} == {"Preventers"}
        assert all(h.power_links == [] for h in page.items)
    assert log.count == 2  # heroes joined to teams; all their power links


async def test_apprentices_of(heroes: HeroService) -> None:
    mentor = await heroes.create(hero("Rusty-Man"))
    await heroes.create_many(
        [hero("young", age=20, mentor_id=mentor.id), hero("old", age=60, mentor_id=mentor.id)]
    )
    assert [h.name for h in await heroes.apprentices_of(mentor.id)] == ["old", "young"]


async def test_raw_enum_value_survives_bulk_insert(
    heroes: HeroService, session: AsyncSession
) -> None:
    await heroes.create_many([hero("Deadpond", status=HeroStatus.MISSING)])
    assert await raw_rows(session, "SELECT status FROM hero") == [("missing",)]


# ---------------------------------------------------------------- the usage walkthrough


async def test_usage_walkthrough(heroes: HeroService, teams: TeamService) -> None:
    team, created = await teams.get_or_create(
        TeamCreate(name="Preventers", headquarters="Sharp Tower"), keys=["name"]
    )
    assert created
    rows: list[dict[str, Any]] = [
        {"name": "Rusty-Man", "secret_name": "Tommy Sharp", "age": 48, "team_id": team.id},
        {"name": "Deadpond", "secret_name": "Dive Wilson", "team_id": team.id},
        {"name": "Kid", "secret_name": "Kid Secret", "age": 12, "team_id": team.id},
        {"name": "Loner", "secret_name": "Lone Secret", "age": 30},
    ]
    await import_heroes(heroes, rows)
    page = await adults_in_team(heroes, "Preventers")
    assert [(h.name, h.team.name if h.team else None) for h in page.items] == [
        ("Rusty-Man", "Preventers")
    ]
    assert await every_hero_by_age(heroes) == ["Deadpond", "Kid", "Loner", "Rusty-Man"]

    rusty = page.items[0]
    older = await birthday(heroes, rusty.id, seen_version=1)
    assert (older.age, older.version) == (49, 2)
    with pytest.raises(StaleVersion):
        await birthday(heroes, rusty.id, seen_version=1)

    bad_batch: list[dict[str, Any]] = [{"name": "New", "secret_name": "n"}, {"name": "x" * 500}]
    with pytest.raises(ValidationError):  # one bad row: nothing is written
        await import_heroes(heroes, bad_batch)
    assert await heroes.count() == 4


async def test_walkthroughs_run() -> None:
    for walkthrough in (data_models_main, relationships_main, servicebase_usage_main):
        await walkthrough()


async def test_statements_per_method(
    backend: Backend, engine: AsyncEngine, heroes: HeroService, teams: TeamService
) -> None:
    # MariaDB has no UPDATE ... RETURNING: server-set columns come back with one more SELECT;
    # an upsert there first checks the other unique keys (one more SELECT too).
    extra = 1 if backend.name == "mysql" else 0
    created = await heroes.create(hero("Deadpond"))
    calls: list[tuple[str, Any, int]] = [
        ("update", lambda: heroes.update(created.id, HeroUpdate(age=3)), 2 + extra),
        # load=: the row again with its team joined and its powers by one selectinload
        (
            "update, load",
            lambda: heroes.update(created.id, HeroUpdate(age=4), load=LOAD),
            4 + extra,
        ),
        ("create, load", lambda: heroes.create(hero("Loaded"), load=LOAD), 3),  # INSERT RETURNING
        # UPDATE ... WHERE id AND not deleted; then a SELECT, as `created` is held here
        ("delete", lambda: heroes.delete(created.id), 2),
        ("restore", lambda: heroes.restore(created.id), 1 + extra),  # UPDATE ... RETURNING
        (
            "upsert",
            lambda: heroes.upsert(hero("Deadpond", age=5), conflict=["secret_name"]),
            2 + extra,
        ),
        ("get_or_create", lambda: teams.get_or_create(TEAM, keys=["name"]), 2),
        ("get_or_create again", lambda: teams.get_or_create(TEAM, keys=["name"]), 2),
    ]
    for name, call, expected in calls:
        with counting_statements(engine) as log:
            await call()
        assert log.count == expected, (name, log.statements)
    heroes.session.expunge_all()  # a request's fresh session holds nothing
    with counting_statements(engine) as log:
        await heroes.delete(created.id)
    assert log.count == 1, log.statements


TEAM = TeamCreate(name="Preventers", headquarters="Sharp Tower")
LOAD = ["team", "powers"]


async def test_a_composite_primary_key_takes_tuple_ids_everywhere(
    engine: AsyncEngine, heroes: HeroService
) -> None:
    links = HeroPowerService(heroes.session)
    powers = [Power(name=f"power {n}") for n in range(3)]
    heroes.session.add_all(powers)
    made = await heroes.create_many([hero("A"), hero("B")])
    await heroes.session.flush()
    for h in made:
        for power in powers:
            await links.create(HeroPowerCreate(hero_id=h.id, power_id=power.id or 0, level=5))
    first, second = made[0].id, made[1].id
    key = (first, powers[1].id)
    assert (await links.get(key)).level == 5
    with counting_statements(engine) as log:
        updated = await links.update(key, HeroPowerGrant(level=9))
    assert (updated.level, len(log.statements)) == (9, 2)  # SELECT, UPDATE
    # Sorted by level, then by every key column: a total order, pages never overlap.
    page = await links.page(limit=4)
    assert page.total == 6
    rest = await links.page(limit=4, offset=4)
    seen = [(link.hero_id, link.power_id) for link in [*page.items, *rest.items]]
    assert seen[0] == key
    assert sorted(seen[1:]) == seen[1:]
    assert len(set(seen)) == 6

    class CursorLinks(CursorPages[HeroPower, HeroPowerCreate, HeroPowerGrant], HeroPowerService):
        pass

    cursor_links, walked, cursor = CursorLinks(heroes.session, cursor_secret=SECRET), [], None
    while True:  # two rows a page, all at level 5 but one: only the key columns order them
        cursor_page = await cursor_links.page_by_cursor(limit=2, cursor=cursor)
        walked += [(link.hero_id, link.power_id) for link in cursor_page.items]
        if (cursor := cursor_page.next_cursor) is None:
            break
    assert walked == seen
    with counting_statements(engine) as log:
        await links.delete(key)
    assert len(log.statements) == 1
    with pytest.raises(NotFound):
        await links.get(key)
    with pytest.raises(NotFound):
        await links.delete((second, 987654))
    assert await links.count() == 5


@pytest.mark.backends("postgresql", "psycopg")
async def test_only_an_index_in_the_exact_sort_order_spares_the_page_its_sort(
    empty_database_url: str,
) -> None:
    """sort=-age is ORDER BY age DESC NULLS LAST, id: the model's plain index on age can't
    give that order; one declared in it can (no Sort node)."""
    async with a_session_on_fresh_tables(empty_database_url) as session:
        heroes = HeroService(session, cursor_secret=SECRET)
        rows = [{"name": f"h{i}", "secret_name": f"s{i}", "age": i % 90} for i in range(3000)]
        await session.exec(sa.insert(Hero), params=rows)
        connection = await session.connection()
        await connection.exec_driver_sql("ANALYZE hero")

        async def page() -> object:
            return await heroes.page(sort="-age", limit=50)

        assert "Sort Key: hero.age DESC NULLS LAST, hero.id" in await plan_of(session, page)
        await connection.exec_driver_sql(
            "CREATE INDEX ix_hero_age_page ON hero (age DESC NULLS LAST, id)"
        )
        plan = await plan_of(session, page)
        assert "Index Scan using ix_hero_age_page" in plan
        assert "Sort" not in plan
