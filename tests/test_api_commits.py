"""The app with real sessions and real commits: commit timing, pool limits, concurrency, streams."""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from asgi_lifespan import LifespanManager
from fastapi import Request
from httpx import ASGITransport, AsyncClient
from sqlalchemy import Engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from examples.app.main import create_app
from tests.conftest import Backend, LiveAppFactory


@asynccontextmanager
async def failing_commits() -> AsyncIterator[None]:
    def fail(_connection: Any) -> None:
        raise OperationalError("COMMIT", {}, Exception("connection lost during commit"))

    event.listen(Engine, "commit", fail)
    try:
        yield
    finally:
        event.remove(Engine, "commit", fail)


async def test_a_failed_commit_is_an_error_response_and_saves_nothing(
    live_app: LiveAppFactory,
) -> None:
    async with live_app() as live:
        async with failing_commits():
            response = await live.client.post("/teams", json={"name": "X", "headquarters": "Y"})
        assert response.status_code == 500
        assert response.json() == {"detail": "database error", "error": "DatabaseError"}
        assert (await live.client.get("/teams")).json()["total"] == 0


async def test_default_scope_commits_after_the_client_saw_success(
    live_app: LiveAppFactory,
) -> None:
    async with live_app() as live:
        async with failing_commits():
            response = await live.client.post("/late-commit/teams", params={"name": "Ghost"})
        assert response.status_code == 201  # the client was told it worked...
        assert (await live.client.get("/teams")).json()["total"] == 0  # ...and nothing was saved


async def test_serialising_an_unloaded_relationship_is_a_500(live_app: LiveAppFactory) -> None:
    async with live_app() as live:
        hero = (await live.client.post("/heroes", json={"name": "a", "secret_name": "b"})).json()
        response = await live.client.get(f"/unloaded/heroes/{hero['id']}")
        assert response.status_code == 500
        assert "lazy=" not in response.text  # the details stay in the server log


async def test_100_concurrent_requests_on_a_pool_of_2(live_app: LiveAppFactory) -> None:
    async with live_app(pool_size=2, max_overflow=0, pool_timeout=30) as live:
        team = (await live.client.post("/teams", json={"name": "T", "headquarters": "H"})).json()

        async def request(i: int) -> int:
            client = live.client
            if i % 4 == 0:
                body = {"name": f"hero {i}", "secret_name": f"s{i}", "team_id": team["id"]}
                return (await client.post("/heroes", json=body)).status_code
            if i % 4 == 1:
                return (await client.get("/heroes", params={"team": "T"})).status_code
            if i % 4 == 2:
                return (await client.get(f"/teams/{team['id']}")).status_code
            return (
                await client.patch(f"/teams/{team['id']}", json={"headquarters": f"H{i}"})
            ).status_code

        statuses = await asyncio.gather(*(request(i) for i in range(100)))
        assert sorted(set(statuses)) == [200, 201]
        assert (await live.client.get("/heroes")).json()["total"] == 25
        assert live.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_pool_exhausted_is_a_quick_503_with_retry_after(live_app: LiveAppFactory) -> None:
    async with live_app(pool_size=1, max_overflow=0, pool_timeout=0.3) as live:
        async with live.engine.connect():  # hold the only connection
            started = time.perf_counter()
            response = await live.client.get("/teams")
            waited = time.perf_counter() - started
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert response.json()["error"] == "Unavailable"
        assert waited < 2
        assert (await live.client.get("/teams")).status_code == 200
        assert live.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_export_streams_with_its_own_session(live_app: LiveAppFactory) -> None:
    async with live_app() as live:
        for i in range(3):
            body = {"name": f"hero {i}", "secret_name": f"s{i}"}
            assert (await live.client.post("/heroes", json=body)).status_code == 201
        response = await live.client.get("/heroes/export")
        assert response.headers["content-type"] == "application/x-ndjson"
        lines = response.text.strip().splitlines()
        assert sorted(line.split('"name":"')[1].split('"')[0] for line in lines) == [
            "hero 0",
            "hero 1",
            "hero 2",
        ]


async def test_shutdown_disposes_the_engine(backend: Backend) -> None:
    app = create_app(backend.settings())
    engines: list[AsyncEngine] = []

    @app.get("/_engine")
    async def capture_engine(request: Request) -> None:
        engines.append(request.state.engine)

    async with (
        LifespanManager(app) as manager,
        AsyncClient(transport=ASGITransport(app=manager.app), base_url="http://test") as client,
    ):
        await client.get("/_engine")
        await client.get("/teams")
        assert engines[0].pool.checkedin() >= 1  # type: ignore[attr-defined]
    assert engines[0].pool.checkedin() == 0  # type: ignore[attr-defined]  # disposed: none left
