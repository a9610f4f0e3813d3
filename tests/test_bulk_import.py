"""POST /heroes/import: all or nothing, and every refusal names the item (on every backend)."""

from collections.abc import AsyncIterator
from typing import Any

from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.imports import IMPORT_CHUNK, MAX_IMPORT_BYTES, MAX_IMPORT_ITEMS
from examples.testing import counting_statements
from tests.support import raw_rows

N = 5_000


def items(n: int = N, team_id: int | None = None) -> list[dict[str, Any]]:
    return [
        {"name": f"hero {i:05}", "secret_name": f"secret {i:05}", "team_id": team_id}
        for i in range(n)
    ]


async def hero_count(session: AsyncSession) -> int:
    ((count,),) = await raw_rows(session, "SELECT COUNT(*) FROM hero")
    return int(count)


async def test_5000_heroes_in_one_transaction_of_5_inserts(
    client: AsyncClient, session: AsyncSession, engine: AsyncEngine
) -> None:
    team = (await client.post("/teams", json={"name": "t", "headquarters": "hq"})).json()
    with counting_statements(engine) as log:
        response = await client.post("/heroes/import", json=items(team_id=team["id"]))
    assert response.status_code == 201, response.text
    assert response.json() == {"created": N}
    assert await hero_count(session) == N
    # One multi-row INSERT per create_many chunk; no SELECT, no per-row statement.
    assert [s.split()[0] for s in log.statements] == ["INSERT"] * (N // IMPORT_CHUNK)
    ((teams,),) = await raw_rows(session, "SELECT COUNT(DISTINCT team_id) FROM hero")
    assert teams == 1


async def test_a_bad_item_in_the_middle_is_a_422_naming_its_index(
    client: AsyncClient, session: AsyncSession
) -> None:
    batch = items()
    batch[2500]["age"] = -1
    batch[4321]["name"] = ""  # allowed: the name has no minimum
    batch[4999]["secret_name"] = "x" * 101
    response = await client.post("/heroes/import", json=batch)
    assert response.status_code == 422, response.text
    locs = [error["loc"] for error in response.json()["detail"]]
    assert locs == [["body", 2500, "age"], ["body", 4999, "secret_name"]]
    assert await hero_count(session) == 0


async def test_a_duplicate_within_the_batch_is_a_409_naming_both_indexes(
    client: AsyncClient, session: AsyncSession, engine: AsyncEngine
) -> None:
    team = (await client.post("/teams", json={"name": "t", "headquarters": "hq"})).json()
    batch = items(team_id=team["id"])
    batch[3000]["secret_name"] = batch[10]["secret_name"]
    with counting_statements(engine) as log:
        response = await client.post("/heroes/import", json=batch)
    assert response.status_code == 409, response.text
    assert response.json() == {
        "error": "Conflict",
        "detail": "items 10 and 3000 have the same secret_name",
        "index": 3000,
        "field": "secret_name",
        "duplicate_of": 10,
    }
    assert log.statements == []  # found before touching the database
    batch = items(team_id=team["id"])
    batch[7]["name"] = batch[6]["name"]  # (name, team_id) is unique too
    response = await client.post("/heroes/import", json=batch)
    assert (response.status_code, response.json()["field"]) == (409, "name, team_id")
    assert (response.json()["index"], response.json()["duplicate_of"]) == (7, 6)
    # Without a team the pair has a NULL: never a duplicate (as in the database).
    no_team = items(3)
    no_team[1]["name"] = no_team[0]["name"]
    assert (await client.post("/heroes/import", json=no_team)).status_code == 201
    assert await hero_count(session) == 3


async def test_a_conflict_with_an_existing_hero_is_a_409_naming_the_item(
    client: AsyncClient, session: AsyncSession, engine: AsyncEngine
) -> None:
    existing = await client.post("/heroes", json={"name": "old", "secret_name": "secret 01234"})
    assert existing.status_code == 201
    deleted = await client.post("/heroes", json={"name": "gone", "secret_name": "secret 00007"})
    await client.delete(f"/heroes/{deleted.json()['id']}")  # soft-deleted: its names are free
    with counting_statements(engine) as log:
        response = await client.post("/heroes/import", json=items())
    assert response.status_code == 409, response.text
    assert response.json() == {
        "error": "Conflict",
        "detail": "item 1234 has the secret_name of an existing hero",
        "index": 1234,
        "field": "secret_name",
    }
    # The failing INSERT(s), then one SELECT of the batch's keys: no round trip per row.
    verbs = [s.split()[0] for s in log.statements]
    assert verbs.count("SELECT") == 1, verbs
    assert verbs[-1] == "SELECT", verbs
    assert len(verbs) <= N // IMPORT_CHUNK + 1
    assert await hero_count(session) == 2  # the existing and the deleted one: no chunk stayed


async def test_an_unknown_team_is_a_409_naming_the_item(
    client: AsyncClient, session: AsyncSession
) -> None:
    team = (await client.post("/teams", json={"name": "t", "headquarters": "hq"})).json()
    batch = items(10, team_id=team["id"])
    batch[6]["team_id"] = team["id"] + 1000
    response = await client.post("/heroes/import", json=batch)
    assert response.status_code == 409, response.text
    body = response.json()
    assert (body["error"], body["index"], body["field"]) == ("ForeignKeyViolation", 6, "team_id")
    assert await hero_count(session) == 0


async def test_over_size_lists_and_bodies_are_refused(
    client: AsyncClient, session: AsyncSession
) -> None:
    response = await client.post("/heroes/import", json=items(MAX_IMPORT_ITEMS + 1))
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["type"] == "too_long"
    assert (await client.post("/heroes/import", json=[])).status_code == 422
    padded = b"[" + b" " * MAX_IMPORT_BYTES + b"]"
    response = await client.post(
        "/heroes/import", content=padded, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413, response.text
    assert response.json() == {"detail": f"the body is over {MAX_IMPORT_BYTES} bytes"}

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        yield b"["
        for _ in range(MAX_IMPORT_BYTES // 65_536 + 1):
            yield b" " * 65_536
        yield b"]"

    response = await client.post(
        "/heroes/import", content=chunked(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413, response.text
    assert await hero_count(session) == 0
