"""references/fastapi-integration.md: the reference app over HTTP, on every backend."""

import asyncio
import json
from typing import Any

import pytest
from httpx import AsyncClient, Response
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.models import Team
from examples.testing import counting_statements

LEAKS = ("SELECT", "INSERT", "UPDATE", "sqlalchemy", "asyncpg", "pymysql", "sqlite3", "Traceback")


def error(response: Response, status: int, kind: str | None = None) -> dict[str, Any]:
    """Assert an error response: status, a JSON body, and nothing from the database leaked."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert "detail" in body
    assert not any(word in response.text for word in LEAKS), response.text
    if kind is not None:
        assert body["error"] == kind
    return body


async def create_team(client: AsyncClient, name: str = "Preventers") -> dict[str, Any]:
    response = await client.post("/teams", json={"name": name, "headquarters": "Sharp Tower"})
    assert response.status_code == 201, response.text
    team: dict[str, Any] = response.json()
    return team


async def create_hero(client: AsyncClient, name: str, **fields: Any) -> dict[str, Any]:
    body = {"name": name, "secret_name": f"{name} secret", **fields}
    response = await client.post("/heroes", json=body)
    assert response.status_code == 201, response.text
    assert "ETag" not in response.headers  # the background task changes the hero next
    hero: dict[str, Any] = response.json()
    assert "secret_name" not in hero
    return hero


async def test_a_create_promises_no_etag_its_background_task_changes(client: AsyncClient) -> None:
    """POST's ETag would be stale at once: the welcome task bumps the version after the
    response, and a PATCH with it was a 412. The client takes the ETag from a GET."""
    created = await client.post("/heroes", json={"name": "New", "secret_name": "New secret"})
    assert created.status_code == 201, created.text
    assert "ETag" not in created.headers
    assert created.json()["version"] == 1  # the row as committed, before the welcome
    path = f"/heroes/{created.json()['id']}"
    read = await client.get(path)
    assert (read.headers["ETag"], read.json()["attributes"]) == ('"2"', {"welcomed": True})
    stale = await client.patch(path, json={"age": 20}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412  # what an ETag from the POST would have led to
    patched = await client.patch(path, json={"age": 20}, headers={"If-Match": read.headers["ETag"]})
    assert (patched.status_code, patched.headers["ETag"]) == (200, '"3"')


async def test_concurrent_requests_through_the_test_client_run_one_at_a_time(
    client: AsyncClient,
) -> None:
    # Every session shares the test's one connection: app_client serialises the requests.
    bodies = [{"name": f"gathered {i}", "secret_name": f"gathered {i}"} for i in range(5)]
    responses = await asyncio.gather(*(client.post("/heroes", json=body) for body in bodies))
    assert [response.status_code for response in responses] == [201] * 5
    listed = (await client.get("/heroes", params={"name_contains": "gathered"})).json()
    assert listed["total"] == 5


async def test_a_unique_hidden_column_answers_taken_through_the_409(client: AsyncClient) -> None:
    # secret_name is never filterable or returned, but it is UNIQUE: creating answers "taken?".
    await create_hero(client, "Rusty-Man", secret_name="Tommy Sharp")
    probe = {"name": "probe", "secret_name": "Tommy Sharp"}
    error(await client.post("/heroes", json=probe), 409, "Conflict")
    await create_hero(client, "probe", secret_name="Bruce Wayne")  # free: 201


async def test_a_deleted_heroes_names_are_free_and_its_restore_is_a_409_while_taken(
    client: AsyncClient,
) -> None:
    team = await create_team(client)
    first = await create_hero(client, "Rusty-Man", secret_name="Tommy Sharp", team_id=team["id"])
    assert (await client.delete(f"/heroes/{first['id']}")).status_code == 204
    # Unique among live heroes: the same name in the same team and the same secret name.
    second = await create_hero(client, "Rusty-Man", secret_name="Tommy Sharp", team_id=team["id"])
    body = error(await client.post(f"/heroes/{first['id']}/restore"), 409, "Conflict")
    assert "taken" in body["detail"]
    assert (await client.get(f"/heroes/{first['id']}")).status_code == 404  # still deleted
    assert (await client.get(f"/heroes/{second['id']}")).status_code == 200
    # Any number of deleted heroes share the names; one live hero at a time holds them.
    assert (await client.delete(f"/heroes/{second['id']}")).status_code == 204
    third = await create_hero(client, "Rusty-Man", secret_name="Tommy Sharp", team_id=team["id"])
    assert (await client.delete(f"/heroes/{third['id']}")).status_code == 204
    restored = await client.post(f"/heroes/{first['id']}/restore")
    assert (restored.status_code, restored.json()["name"]) == (200, "Rusty-Man")
    error(await client.post(f"/heroes/{second['id']}/restore"), 409, "Conflict")


# ---------------------------------------------------------------- full walks


async def test_team_walk(client: AsyncClient) -> None:
    team = await create_team(client)
    assert set(team) == {"id", "name", "headquarters", "created_at", "updated_at"}
    error(
        await client.post("/teams", json={"name": "Preventers", "headquarters": "x"}),
        409,
        "Conflict",
    )
    await create_team(client, "Z-Force")

    listed = await client.get("/teams", params={"name__icontains": "FORCE"})
    assert listed.json() == {
        "items": [listed.json()["items"][0]],
        "total": 1,
        "limit": 50,
        "offset": 0,
    }
    assert listed.json()["items"][0]["name"] == "Z-Force"
    by_name_desc = await client.get("/teams", params={"sort": "-name", "limit": 1, "offset": 1})
    assert [t["name"] for t in by_name_desc.json()["items"]] == ["Preventers"]

    await create_hero(client, "Deadpond", team_id=team["id"])
    detail = (await client.get(f"/teams/{team['id']}")).json()
    assert [h["name"] for h in detail["heroes"]] == ["Deadpond"]

    patched = await client.patch(f"/teams/{team['id']}", json={"headquarters": "Moon"})
    assert (patched.status_code, patched.json()["headquarters"]) == (200, "Moon")
    assert (await client.delete(f"/teams/{team['id']}")).status_code == 204
    error(await client.get(f"/teams/{team['id']}"), 404, "NotFound")


async def test_hero_walk(client: AsyncClient) -> None:
    team = await create_team(client)
    mentor = await create_hero(client, "Rusty-Man", age=48, team_id=team["id"])
    apprentice = await create_hero(client, "Deadpond", age=30, mentor_id=mentor["id"])
    power = (await client.post("/powers", json={"name": "Flight"})).json()
    granted = await client.put(f"/heroes/{mentor['id']}/powers/{power['id']}", json={"level": 7})
    assert granted.json() == {"power_id": power["id"], "level": 7}

    detail = await client.get(f"/heroes/{mentor['id']}")
    # The background task (its own session, after the response) already welcomed the hero.
    assert detail.headers["ETag"] == '"2"'
    body = detail.json()
    assert body["attributes"] == {"welcomed": True}
    assert body["team"]["name"] == "Preventers"
    assert [(link["power"]["name"], link["level"]) for link in body["power_links"]] == [
        ("Flight", 7)
    ]
    apprentices = await client.get(f"/heroes/{mentor['id']}/apprentices")
    assert [h["name"] for h in apprentices.json()] == ["Deadpond"]

    updated = await client.patch(
        f"/heroes/{mentor['id']}", json={"age": 49}, headers={"If-Match": '"2"'}
    )
    assert (updated.status_code, updated.json()["age"], updated.headers["ETag"]) == (200, 49, '"3"')
    assert updated.json()["team"]["name"] == "Preventers"  # update(load=): the detail it returns
    assert [link["level"] for link in updated.json()["power_links"]] == [7]
    other = (await client.post("/teams", json={"name": "Z-Force", "headquarters": "Sister"})).json()
    moved = await client.patch(
        f"/heroes/{mentor['id']}", json={"team_id": other["id"]}, headers={"If-Match": '"3"'}
    )
    assert moved.json()["team"]["name"] == "Z-Force"  # read after the write: the new team
    assert moved.headers["ETag"] == '"4"'
    error(
        await client.patch(
            f"/heroes/{mentor['id']}", json={"age": 50}, headers={"If-Match": '"3"'}
        ),
        412,
        "StaleVersion",
    )
    error(
        await client.patch(f"/heroes/{mentor['id']}", json={"age": 50}, headers={"If-Match": "x"}),
        400,
        "InvalidPrecondition",
    )
    revoked = await client.delete(f"/heroes/{mentor['id']}/powers/{power['id']}")
    assert revoked.status_code == 204
    error(await client.delete(f"/heroes/{mentor['id']}/powers/{power['id']}"), 404, "NotFound")

    assert (await client.delete(f"/heroes/{apprentice['id']}")).status_code == 204
    error(await client.get(f"/heroes/{apprentice['id']}"), 404, "NotFound")
    assert (await client.get("/heroes")).json()["total"] == 1
    restored = await client.post(f"/heroes/{apprentice['id']}/restore")
    assert restored.status_code == 200
    assert (await client.get("/heroes")).json()["total"] == 2


async def test_hero_list_filters_sort_and_cursor(client: AsyncClient) -> None:
    for i in range(7):
        await create_hero(client, f"hero {i}", age=i % 3 if i else None)
    page = await client.get(
        "/admin/heroes", params={"age__gte": 1, "sort": "-age,name", "limit": 3}
    )
    assert [(h["name"], h["age"]) for h in page.json()["items"]] == [
        ("hero 2", 2),
        ("hero 5", 2),
        ("hero 1", 1),
    ]
    assert page.json()["total"] == 4
    in_list = await client.get("/admin/heroes", params=[("age__in", "0"), ("age__in", "2")])
    assert in_list.json()["total"] == 4
    tree = json.dumps(
        {
            "or": [
                {"field": "age", "op": "isnull", "value": True},
                {"field": "name", "op": "eq", "value": "hero 4"},
            ]
        }
    )
    assert (await client.get("/admin/heroes", params={"filter": tree})).json()["total"] == 2

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"sort": "age", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        feed = (await client.get("/heroes/feed", params=params)).json()
        seen += [h["name"] for h in feed["items"]]
        cursor = feed["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(f"hero {i}" for i in range(7))


# ---------------------------------------------------------------- bad input: 4xx, never 500


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        # filters, sorts and pages outside the allowlist
        ("get", "/admin/heroes", {"params": {"secret_name__eq": "x"}}, 422),
        ("get", "/admin/heroes", {"params": {"age__like": "1"}}, 422),
        ("get", "/admin/heroes", {"params": {"age__gte": "old"}}, 422),
        (
            "get",
            "/admin/heroes",
            {"params": {"age__eq": str(2**40)}},
            422,
        ),  # would overflow INTEGER
        ("get", "/admin/heroes", {"params": {"name__eq": "nul\x00"}}, 422),
        ("get", "/admin/heroes", {"params": {"name__eq": "x" * 101}}, 422),
        ("get", "/admin/heroes", {"params": {"filter": "{not json"}}, 422),
        (
            "get",
            "/admin/heroes",
            {"params": {"filter": '{"field": "secret_name", "op": "eq"}'}},
            422,
        ),
        ("get", "/heroes", {"params": {"sort": "secret_name"}}, 422),
        ("get", "/heroes", {"params": {"limit": "0"}}, 422),
        ("get", "/heroes", {"params": {"limit": "101"}}, 422),
        ("get", "/heroes", {"params": {"offset": "-1"}}, 422),
        ("get", "/heroes/feed", {"params": {"cursor": "forged.cursor"}}, 422),
        ("get", "/heroes/feed", {"params": {"cursor": "abc.\u00e9"}}, 422),  # non-ASCII signature
        # path parameters
        ("get", f"/teams/{2**31}", {}, 422),
        ("get", "/teams/0", {}, 422),
        ("get", "/heroes/not-a-uuid", {}, 422),
        (
            "put",
            f"/heroes/00000000-0000-0000-0000-000000000000/powers/{2**40}",
            {"json": {"level": 1}},
            422,
        ),
        # bodies: NUL anywhere, too long, out of range, wrong types
        ("post", "/teams", {"json": {"name": "nul\x00", "headquarters": "x"}}, 422),
        ("post", "/teams", {"json": {"name": "x" * 101, "headquarters": "x"}}, 422),
        (
            "post",
            "/heroes",
            {"json": {"name": "a", "secret_name": "b", "attributes": {"k\x00": "v"}}},
            422,
        ),
        (
            "post",
            "/heroes",
            {"json": {"name": "a", "secret_name": "b", "attributes": {"nested": ["v\x00"]}}},
            422,
        ),
        ("post", "/heroes", {"json": {"name": "a", "secret_name": "b", "team_id": 2**40}}, 422),
        ("post", "/heroes", {"json": {"name": "a", "secret_name": "b", "age": -1}}, 422),
        ("post", "/heroes", {"json": {"name": "a", "secret_name": "b", "status": "flying"}}, 422),
        ("post", "/heroes", {"json": {"name": "a"}}, 422),
        (
            "post",
            "/heroes",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            422,
        ),
        (
            "put",
            "/heroes/00000000-0000-0000-0000-000000000000/powers/1",
            {"json": {"level": 11}},
            422,
        ),
        # well-formed, but naming rows that don't exist
        ("post", "/heroes", {"json": {"name": "a", "secret_name": "b", "team_id": 987654}}, 409),
        ("get", "/heroes/00000000-0000-0000-0000-000000000000", {}, 404),
        ("patch", "/teams/987654", {"json": {"name": "x"}}, 404),
        (
            "put",
            "/heroes/00000000-0000-0000-0000-000000000000/powers/1",
            {"json": {"level": 1}},
            404,
        ),
    ],
)
async def test_bad_input_is_a_clean_4xx(
    client: AsyncClient, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    response = await getattr(client, method)(path, **kwargs)
    error(response, status)


async def test_nothing_is_written_by_a_rejected_request(client: AsyncClient) -> None:
    await client.post("/heroes", json={"name": "a", "secret_name": "b", "team_id": 987654})
    assert (await client.get("/heroes")).json()["total"] == 0


# ---------------------------------------------------------------- query counts


@pytest.mark.parametrize("heroes", [1, 30])
async def test_list_and_detail_query_counts_do_not_grow_with_rows(
    client: AsyncClient, engine: AsyncEngine, heroes: int
) -> None:
    team = await create_team(client)
    created = [await create_hero(client, f"h{i:02}", team_id=team["id"]) for i in range(heroes)]
    powers = [(await client.post("/powers", json={"name": f"p{i}"})).json() for i in range(heroes)]
    for power in powers:
        await client.put(f"/heroes/{created[0]['id']}/powers/{power['id']}", json={"level": 1})
    with counting_statements(engine) as log:
        page = (await client.get("/admin/heroes", params={"limit": 100})).json()
    assert (len(page["items"]), log.count) == (heroes, 1)
    with counting_statements(engine) as log:
        page = (await client.get("/heroes", params={"limit": 100})).json()
    assert (len(page["items"]), log.count) == (heroes, 2)  # + links joined to powers
    with counting_statements(engine) as log:
        assert len((await client.get(f"/teams/{team['id']}")).json()["heroes"]) == heroes
    assert log.count == 2  # team, its heroes
    with counting_statements(engine) as log:
        detail = (await client.get(f"/heroes/{created[0]['id']}")).json()
    assert len(detail["power_links"]) == heroes
    assert log.count == 2  # hero joined to team, links joined to powers


async def test_api_writes_share_the_test_transaction(
    client: AsyncClient, session: AsyncSession
) -> None:
    await create_team(client)
    assert (await session.exec(select(Team.name))).all() == ["Preventers"]
