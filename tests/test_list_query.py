"""references/fastapi-integration.md: GET /heroes with hand-named query parameters, every backend.

name_contains, age_gte, age_lte, status, team (repeatable: ids or names), power (repeatable:
every one), sort (-age,name), limit, offset; mapped onto HeroService's allowlist.
"""

from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine

from examples.app.queries import HERO_SORT_KEYS, HeroListQuery, hero_filter
from examples.app.services import HeroService
from examples.servicebase.errors import InvalidFilter
from examples.servicebase.filters import FilterSpec
from examples.testing import counting_statements
from tests.test_api import LEAKS, create_hero, create_team

Params = dict[str, Any] | list[tuple[str, Any]]


async def names(client: AsyncClient, params: Params) -> list[str]:
    """The names on one page (in the page's order); asserts the envelope and the total."""
    response = await client.get("/heroes", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"items", "total", "limit", "offset"}
    found = [hero["name"] for hero in body["items"]]
    assert body["total"] >= len(found)
    return found


@pytest.fixture
async def world(client: AsyncClient) -> dict[str, Any]:
    """Two teams, three powers, six heroes (one deleted)."""
    preventers = await create_team(client, "Preventers")
    z_force = await create_team(client, "Z-Force 2")  # a name with digits is still a name
    powers = {}
    for power in ("Flight", "Strength", "Speed"):
        powers[power] = (await client.post("/powers", json={"name": power})).json()["id"]
    heroes = {
        "Deadpond": dict(age=30, team_id=preventers["id"], powers=["Flight", "Strength"]),
        "Rusty-Man": dict(age=48, team_id=preventers["id"], powers=["Flight"]),
        "Spider-Boy": dict(age=16, team_id=z_force["id"], status="retired", powers=["Speed"]),
        "Tarantula": dict(status="missing", powers=["Strength"]),  # no age, no team
        "Dead Man": dict(age=70, powers=[]),
        "Gone": dict(age=30, team_id=preventers["id"], powers=["Flight"]),
    }
    ids = {}
    for name, fields in heroes.items():
        granted = fields.pop("powers")
        hero = await create_hero(client, name, **fields)
        ids[name] = hero["id"]
        for power in granted:
            url = f"/heroes/{hero['id']}/powers/{powers[power]}"
            assert (await client.put(url, json={"level": 2})).status_code == 200
    assert (await client.delete(f"/heroes/{ids['Gone']}")).status_code == 204
    return {"preventers": preventers["id"], "z_force": z_force["id"], "powers": powers}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["Dead Man", "Deadpond", "Rusty-Man", "Spider-Boy", "Tarantula"]),  # default: name
        ({"name_contains": "DEAD"}, ["Dead Man", "Deadpond"]),  # case-insensitive
        ({"name_contains": "%"}, []),  # % and _ are literal characters, not wildcards
        ({"name_contains": ""}, ["Dead Man", "Deadpond", "Rusty-Man", "Spider-Boy", "Tarantula"]),
        ({"age_gte": 30}, ["Dead Man", "Deadpond", "Rusty-Man"]),  # NULL age never matches
        ({"age_lte": 30}, ["Deadpond", "Spider-Boy"]),
        ({"age_gte": 20, "age_lte": 50}, ["Deadpond", "Rusty-Man"]),
        ({"age_gte": 50, "age_lte": 20}, []),
        ({"status": "retired"}, ["Spider-Boy"]),
        ({"team": "Preventers"}, ["Deadpond", "Rusty-Man"]),
        ({"team": "Z-Force 2"}, ["Spider-Boy"]),
        ({"team": "Nobody"}, []),
        ({"power": "Flight"}, ["Deadpond", "Rusty-Man"]),  # "Gone" is deleted
        ([("power", "Flight"), ("power", "Strength")], ["Deadpond"]),  # every power named
        ([("power", "Flight"), ("power", "Flight")], ["Deadpond", "Rusty-Man"]),
        ({"power": "Invisibility"}, []),
        ({"sort": "-age"}, ["Dead Man", "Rusty-Man", "Deadpond", "Spider-Boy", "Tarantula"]),
        ({"sort": "age,name"}, ["Spider-Boy", "Deadpond", "Rusty-Man", "Dead Man", "Tarantula"]),
        ({"sort": "-name", "limit": 2}, ["Tarantula", "Spider-Boy"]),
        ({"sort": "name", "limit": 2, "offset": 3}, ["Spider-Boy", "Tarantula"]),
        ({"offset": 5}, []),
        (
            [("name_contains", "a"), ("age_gte", 18), ("team", "Preventers"), ("power", "Flight"),
             ("sort", "-age")],
            ["Rusty-Man", "Deadpond"],
        ),
    ],
)  # fmt: skip
async def test_each_parameter_and_combinations(
    client: AsyncClient, world: dict[str, Any], params: Params, expected: list[str]
) -> None:
    assert await names(client, params) == expected


async def test_team_takes_ids_and_names_repeated_any_of(
    client: AsyncClient, world: dict[str, Any]
) -> None:
    preventers, z_force = str(world["preventers"]), str(world["z_force"])
    assert await names(client, {"team": preventers}) == ["Deadpond", "Rusty-Man"]
    both = ["Deadpond", "Rusty-Man", "Spider-Boy"]
    assert await names(client, [("team", preventers), ("team", z_force)]) == both
    assert await names(client, [("team", preventers), ("team", "Z-Force 2")]) == both
    assert await names(client, {"team": "987654"}) == []  # an id no team has
    filtered = await client.get("/heroes", params={"team": "Preventers", "limit": 1})
    assert filtered.json()["total"] == 2


async def test_a_scalar_parameter_sent_twice_keeps_the_last_value(
    client: AsyncClient, world: dict[str, Any]
) -> None:
    """FastAPI's behaviour for a non-list field of a query model (the reference says so)."""
    assert await names(client, [("age_gte", "60"), ("age_gte", "40")]) == ["Dead Man", "Rusty-Man"]
    assert await names(client, [("sort", "name"), ("sort", "-age"), ("limit", "1")]) == ["Dead Man"]


async def test_items_carry_team_and_powers(client: AsyncClient, world: dict[str, Any]) -> None:
    page = (await client.get("/heroes", params={"name_contains": "deadpond"})).json()
    (hero,) = page["items"]
    assert hero["team"]["name"] == "Preventers"
    assert sorted(link["power"]["name"] for link in hero["power_links"]) == ["Flight", "Strength"]
    assert "secret_name" not in hero
    assert (page["total"], page["limit"], page["offset"]) == (1, 50, 0)


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        # sort: allowlisted keys only, each once, the exact syntax
        ({"sort": "secret_name"}, ["sort"]),
        ({"sort": "nonsense"}, ["sort"]),
        ({"sort": "age,-age"}, ["sort"]),
        ({"sort": "name,name"}, ["sort"]),
        ({"sort": ""}, ["sort"]),
        ({"sort": ","}, ["sort"]),
        ({"sort": "age,"}, ["sort"]),
        ({"sort": "--age"}, ["sort"]),
        ({"sort": "+age"}, ["sort"]),
        ({"sort": "age, name"}, ["sort"]),
        ({"sort": " age"}, ["sort"]),
        ({"sort": "age:nulls_first"}, ["sort"]),  # the service's syntax, not this API's
        ({"sort": "status"}, ["sort"]),  # sortable in the service, not offered here
        ({"sort": "age," * 40 + "name"}, ["sort"]),
        # pages
        ({"limit": "0"}, ["limit"]),
        ({"limit": "101"}, ["limit"]),
        ({"limit": "1.5"}, ["limit"]),
        ({"offset": "-1"}, ["offset"]),
        ({"offset": "1000001"}, ["offset"]),
        ({"offset": str(2**64)}, ["offset"]),
        # strings: length, NUL
        ({"name_contains": "x" * 101}, ["name_contains"]),
        ({"name_contains": "a\x00b"}, ["name_contains"]),
        ({"team": "x" * 101}, ["team", 0]),
        ({"team": "\x00"}, ["team", 0]),
        ({"team": ""}, ["team", 0]),
        ({"power": "x" * 101}, ["power", 0]),
        ({"power": "nul\x00"}, ["power", 0]),
        # numbers out of range, or not numbers
        ({"age_gte": "-1"}, ["age_gte"]),
        ({"age_lte": "10001"}, ["age_lte"]),
        ({"age_gte": str(2**40)}, ["age_gte"]),
        ({"age_gte": "old"}, ["age_gte"]),
        ({"age_gte": "NaN"}, ["age_gte"]),
        ({"team": "0"}, ["team", 0]),
        ({"team": str(2**31)}, ["team", 0]),  # would overflow INTEGER
        ({"team": "9" * 100}, ["team", 0]),
        ({"status": "flying"}, ["status"]),
        # repeatable parameters: bounded
        ([("team", "a")] * 21, ["team"]),
        ([("power", "a")] * 11, ["power"]),
        # unknown parameters, including the generated form's
        ({"age__gte": "18"}, ["age__gte"]),
        ({"secret_name": "x"}, ["secret_name"]),
        ({"filter": '{"field": "age", "op": "eq", "value": 1}'}, ["filter"]),
        ({"Limit": "5"}, ["Limit"]),
    ],
)
async def test_bad_parameters_are_a_422_naming_the_parameter(
    client: AsyncClient, params: Params, loc: list[Any]
) -> None:
    response = await client.get("/heroes", params=params)
    assert response.status_code == 422, response.text
    assert not any(word in response.text for word in LEAKS), response.text
    errors = response.json()["detail"]
    assert ["query", *loc] in [error["loc"] for error in errors], errors
    assert all(error["msg"] for error in errors)


async def test_accepted_edges(client: AsyncClient, world: dict[str, Any]) -> None:
    """The largest values each bound allows are accepted, and 20 teams, 10 powers at once."""
    accepted: list[Params] = [
        {"limit": 100, "offset": 1_000_000},
        {"age_gte": 0, "age_lte": 10_000},
        {"name_contains": "x" * 100, "sort": "-created_at,-age,name"},
        {"team": str(2**31 - 1)},
        [("team", f"t{i}") for i in range(20)] + [("power", f"p{i}") for i in range(10)],
        {"name_contains": "😀e\u0301'\"; --"},
    ]
    for params in accepted:
        response = await client.get("/heroes", params=params)
        assert response.status_code == 200, (params, response.text)


@pytest.mark.parametrize("rows", [1, 30])
async def test_list_statement_count_does_not_grow_with_rows(
    client: AsyncClient, engine: AsyncEngine, rows: int
) -> None:
    team = await create_team(client)
    for i in range(rows):
        hero = await create_hero(client, f"h{i:02}", team_id=team["id"], age=20)
        power = (await client.post("/powers", json={"name": f"p{i:02}"})).json()
        await client.put(f"/heroes/{hero['id']}/powers/{power['id']}", json={"level": 1})
    params: Params = [("team", "Preventers"), ("power", "p00"), ("age_gte", 18), ("sort", "-age")]
    with counting_statements(engine) as log:
        page = (await client.get("/heroes", params={"limit": 100})).json()
    assert len(page["items"]) == rows
    assert all(len(hero["power_links"]) == 1 and hero["team"] for hero in page["items"])
    assert log.count == 2  # heroes joined to teams with the total; links joined to powers
    with counting_statements(engine) as log:
        assert len((await client.get("/heroes", params=params)).json()["items"]) == 1
    assert log.count == 2


def test_the_mapping_stays_inside_the_allowlist() -> None:
    """Everything hero_filter produces, and every sort key offered, is in HeroService's
    allowlist; a service whose allowlist lacks a field refuses the mapping's output."""
    query = HeroListQuery.model_validate(
        {"name_contains": "a", "age_gte": 1, "age_lte": 2, "status": "active",
         "team": ["1", "Preventers"], "power": ["Flight", "Speed"]}
    )  # fmt: skip
    tree = hero_filter(query)
    HeroService.filters.parse(tree)  # raises InvalidFilter for a field or op not allowed
    assert hero_filter(HeroListQuery()) is None
    sortable = {name for name, spec in HeroService.filters.fields.items() if spec.sortable}
    assert set(HERO_SORT_KEYS) <= sortable
    narrower = FilterSpec(
        {name: spec for name, spec in HeroService.filters.fields.items() if name != "power.name"}
    )
    with pytest.raises(InvalidFilter, match=r"cannot filter on 'power\.name'"):
        narrower.parse(hero_filter(HeroListQuery(power=["Flight"])))
