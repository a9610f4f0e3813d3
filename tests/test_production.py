"""references/production-patterns.md: the app under faults, with nothing lost."""

import asyncio
import logging
import os
import secrets
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from fastapi import Request
from httpx import ASGITransport, AsyncClient
from pydantic import SecretStr
from sqlalchemy import insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool
from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from benchmarks.load import ROOT, free_port, wait_until_healthy
from examples.app.api.deps import SessionDep
from examples.app.db import (
    READ_ONLY,
    configure_sqlite,
    create_engine,
    log_slow_queries,
)
from examples.app.main import create_app
from examples.app.models import Hero
from examples.app.replicas import create_routing_session_factory
from examples.app.settings import Settings, postgres_url
from examples.testing import StatementLog, counting_statements
from tests.conftest import CURSOR_SECRET, POSTGRES_ERROR, Backend, LiveApp, LiveAppFactory


async def server_sessions(backend: Backend, application_name: str) -> list[tuple[Any, ...]]:
    """The app's sessions as the server sees them: (id, state) rows."""
    engine = create_async_engine(backend.url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            if backend.name == "postgresql":
                query = text(
                    "SELECT pid, state FROM pg_stat_activity WHERE application_name = :name"
                )
                rows = await connection.execute(query, {"name": application_name})
            else:
                query = text(
                    "SELECT id, command FROM information_schema.PROCESSLIST"
                    " WHERE db = :db AND id <> CONNECTION_ID()"
                )
                rows = await connection.execute(query, {"db": backend.url.database})
            return [tuple(row) for row in rows]
    finally:
        await engine.dispose()


def add_sleep_route(live: LiveApp) -> None:
    @live.app.get("/_sleep")
    async def sleep(session: SessionDep, seconds: float) -> dict[str, Any]:
        statement = (
            "SELECT pg_sleep(:s)"
            if session.get_bind().dialect.name == "postgresql"
            else ("SELECT SLEEP(:s)")
        )
        await session.exec(text(statement).bindparams(s=seconds))  # type: ignore[call-overload]
        return {"slept": seconds}

    @live.app.get("/_backend")
    async def backend_id(session: SessionDep) -> dict[str, Any]:
        statement = (
            "SELECT pg_backend_pid()"
            if session.get_bind().dialect.name == "postgresql"
            else ("SELECT CONNECTION_ID()")
        )
        result = await session.exec(text(statement))  # type: ignore[call-overload]
        return {"id": result.scalar_one()}


# ---------------------------------------------------------------- health


async def test_health_reports_the_pool(live_app: LiveAppFactory) -> None:
    async with live_app() as live:
        response = await live.client.get("/health/ready")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["database"]) == ("ok", "ok")
    assert "class" in body["pool"]


@pytest.mark.backends("postgresql", "mysql")
async def test_health_is_a_quick_503_when_the_pool_is_full(live_app: LiveAppFactory) -> None:
    async with live_app(pool_size=1, max_overflow=0, pool_timeout=30, health_timeout=0.5) as live:
        async with live.engine.connect():  # the only connection, held
            started = time.perf_counter()
            response = await live.client.get("/health/ready")
            waited = time.perf_counter() - started
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert response.json()["pool"]["checkedout"] == 1
        assert waited < 3  # the health timeout, not the 30 s pool timeout
        assert (await live.client.get("/health/ready")).status_code == 200


@pytest.mark.backends("postgresql", "mysql")
async def test_health_on_a_pooled_connection_that_stops_answering(backend: Backend) -> None:
    """health_timeout, plus up to 2 s on asyncpg: SQLAlchemy closes the dead connection
    gracefully with a fixed close(timeout=2) before the 503 (4 s with the defaults)."""
    stalled, released = asyncio.Event(), asyncio.Event()
    target = (backend.url.host or "127.0.0.1", backend.url.port or 0)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            if stalled.is_set():
                await released.wait()  # the link goes silent, both ways, until the end
                break
            writer.write(data)
            await writer.drain()

    handlers: list[Any] = []
    writers: list[asyncio.StreamWriter] = []

    async def forward(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())
        server_r, server_w = await asyncio.open_connection(*target)
        writers.extend((client_w, server_w))
        pipes = (pipe(client_r, server_w), pipe(server_r, client_w))
        await asyncio.gather(*pipes, return_exceptions=True)

    proxy = await asyncio.start_server(forward, "127.0.0.1", 0)
    port = proxy.sockets[0].getsockname()[1]
    url = backend.url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    app = create_app(Settings(database_url=url, health_timeout=0.5, cursor_secret=CURSOR_SECRET))
    try:
        async with (
            LifespanManager(app) as manager,
            AsyncClient(transport=ASGITransport(app=manager.app), base_url="http://test") as client,
        ):
            assert (await client.get("/health/ready")).status_code == 200  # one pooled connection
            stalled.set()
            started = time.perf_counter()
            ready = await client.get("/health/ready")  # its pre-ping never gets an answer
            waited = time.perf_counter() - started
    finally:
        released.set()
        for writer in writers:
            writer.close()
        proxy.close()
        await asyncio.gather(*handlers, return_exceptions=True)
        await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)
    assert (ready.status_code, ready.json()["database"]) == (503, "TimeoutError")
    if backend.name == "postgresql":
        assert 2.5 <= waited < 10, waited  # 0.5 s, then the 2 s graceful close
    else:
        assert waited < 2.5, waited  # aiomysql closes at once


@pytest.mark.backends("postgresql", "mysql")
async def test_a_database_down_is_a_503_not_a_crash(backend: Backend) -> None:
    dead = backend.url.set(host="127.0.0.1", port=1).render_as_string(hide_password=False)
    app = create_app(Settings(database_url=dead, health_timeout=1, cursor_secret=CURSOR_SECRET))
    async with (
        LifespanManager(app) as manager,  # starts anyway, with a warning
        AsyncClient(
            transport=ASGITransport(app=manager.app, raise_app_exceptions=False),
            base_url="http://test",
        ) as client,
    ):
        live = await client.get("/health/live")
        ready = await client.get("/health/ready")
        heroes = await client.get("/heroes")
    assert live.status_code == 200  # the process is fine: no restart for a database outage
    assert ready.status_code == 503  # no traffic until the database is back
    assert ready.json()["database"] in ("ConnectionRefusedError 111", "OperationalError 2003")
    assert heroes.status_code == 503, heroes.text
    assert "127.0.0.1" not in heroes.text


@pytest.mark.backends("postgresql", "mysql")
async def test_a_wrong_database_name_is_reported_as_such(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    """Not "unreachable": the log and the probe name the driver's error class, never its text."""
    missing = f"asm_missing_{secrets.token_hex(4)}"
    url = backend.url.set(database=missing).render_as_string(hide_password=False)
    app = create_app(Settings(database_url=url, cursor_secret=CURSOR_SECRET))
    async with (
        LifespanManager(app) as manager,  # starts anyway
        AsyncClient(transport=ASGITransport(app=manager.app), base_url="http://test") as client,
    ):
        ready = await client.get("/health/ready")
    kind = {"postgresql": "InvalidCatalogNameError", "mysql": "OperationalError 1049"}
    assert f"database unavailable at startup: {kind[backend.name]}" in caplog.text
    assert ready.status_code == 503
    assert ready.json()["database"] == kind[backend.name]
    assert missing not in ready.text


@asynccontextmanager
async def app_on_a_silent_server(
    backend: Backend,
) -> AsyncIterator[tuple[AsyncClient, list[asyncio.StreamWriter]]]:
    """The app (connect_timeout 1 s) on a loopback server that accepts connections and never
    sends a byte; yields its client and the connections the server has accepted."""
    connections: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    silent = backend.url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    settings = Settings(
        database_url=silent, connect_timeout=1, health_timeout=1, cursor_secret=CURSOR_SECRET
    )
    try:
        # startup_timeout: a generous bound, far below the drivers' own waits.
        async with (
            LifespanManager(create_app(settings), startup_timeout=30) as manager,
            AsyncClient(
                transport=ASGITransport(app=manager.app, raise_app_exceptions=False),
                base_url="http://test",
            ) as client,
        ):
            yield client, connections
    finally:
        server.close()
        for writer in connections:
            writer.close()
        await server.wait_closed()


@pytest.mark.backends("postgresql", "mysql")
async def test_startup_is_bounded_when_the_server_never_answers(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    """asyncpg would wait 60 s for the handshake, aiomysql forever; connect_timeout bounds it."""
    async with app_on_a_silent_server(backend) as (client, connections):
        live = await client.get("/health/live")
        ready = await client.get("/health/ready")
    assert connections  # the app did reach the listener: the driver was waiting for an answer
    assert "database unavailable at startup: TimeoutError" in caplog.text
    assert (live.status_code, ready.status_code) == (200, 503)


@pytest.mark.backends("postgresql", "mysql")
async def test_a_request_is_a_quick_503_when_the_server_never_answers(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    """A new connection waits connect_timeout for the handshake, then 503: not asyncpg's 60 s
    (then a plain-text 500 from the unhandled TimeoutError), not aiomysql's forever."""
    async with app_on_a_silent_server(backend) as (client, connections):
        before = len(connections)
        # A generous bound for a loaded machine, far below the drivers' own waits.
        async with asyncio.timeout(30):
            heroes = await client.get("/heroes")
    assert len(connections) > before  # the request's own connection reached the listener
    assert heroes.status_code == 503, heroes.text
    assert heroes.json()["error"] == "Unavailable"
    assert heroes.headers["Retry-After"] == "1"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # not a logged 500


# ---------------------------------------------------------------- faults


@pytest.mark.backends("postgresql", "mysql")
async def test_killed_connections_are_replaced_without_a_restart(
    backend: Backend, live_app: LiveAppFactory
) -> None:
    name = f"asm-kill-{secrets.token_hex(3)}"
    async with live_app(application_name=name, pool_size=3) as live:
        for _ in range(3):
            assert (await live.client.get("/heroes")).status_code == 200
        victims = await server_sessions(backend, name)
        assert victims
        admin = create_async_engine(backend.url, poolclass=NullPool)
        try:
            async with admin.connect() as connection:
                for victim_id, _state in victims:
                    if backend.name == "postgresql":
                        await connection.execute(
                            text("SELECT pg_terminate_backend(:pid)"), {"pid": victim_id}
                        )
                    else:
                        await connection.execute(text(f"KILL {int(victim_id)}"))
        finally:
            await admin.dispose()
        statuses = [(await live.client.get("/heroes")).status_code for _ in range(5)]
        assert statuses == [200] * 5  # pool_pre_ping found the dead ones and reconnected


@pytest.mark.backends("postgresql", "mysql")
async def test_cancelled_requests_leak_no_connection(
    backend: Backend, live_app: LiveAppFactory
) -> None:
    name = f"asm-cancel-{secrets.token_hex(3)}"
    async with live_app(application_name=name, pool_size=2, max_overflow=0) as live:
        add_sleep_route(live)
        for _ in range(20):
            request = asyncio.create_task(live.client.get("/_sleep", params={"seconds": 1}))
            await asyncio.sleep(0.2)  # the query is running on the server
            request.cancel()  # the client went away
            with pytest.raises(asyncio.CancelledError):
                await request
        # PostgreSQL cancels the query with the task; MySQL runs it to its end, then drops the
        # session whose client is gone.
        await asyncio.sleep(0.5 if backend.name == "postgresql" else 2)
        assert live.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        assert (await live.client.get("/heroes")).status_code == 200
        sessions = await server_sessions(backend, name)
        assert len(sessions) <= 2  # no growth past the pool
        assert all(state not in ("idle in transaction", "active", "Query") for _, state in sessions)


@asynccontextmanager
async def app_under_uvicorn(
    backend: Backend, application_name: str, log: Path, factory: str = "create_slow_app"
) -> AsyncIterator[str]:
    """The reference app (plus tests/slow_app.py's /_sleep) under uvicorn in a subprocess,
    logging to `log`."""
    port = free_port()
    environment = os.environ | {
        "DATABASE_URL": backend.url_string,
        "APPLICATION_NAME": application_name,
        "CURSOR_SECRET": CURSOR_SECRET,
        "PYTHONPATH": str(ROOT),
    }
    command = [sys.executable, "-m", "uvicorn", "--factory", f"tests.slow_app:{factory}"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    with log.open("wb") as output:
        server = await asyncio.create_subprocess_exec(
            *command, cwd=ROOT, env=environment, stderr=output
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        async with AsyncClient(base_url=base_url) as probe:
            await wait_until_healthy(probe, server)
        yield base_url
    finally:
        server.terminate()
        await server.wait()


async def sleeping_statements(backend: Backend, application_name: str) -> int:
    """How many of the app's sessions are running SELECT pg_sleep / SELECT SLEEP now."""
    engine = create_async_engine(backend.url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            if backend.name == "postgresql":
                query = text(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"
                    " AND state = 'active' AND query LIKE 'SELECT pg_sleep%'"
                )
                return int((await connection.execute(query, {"name": application_name})).one()[0])
            query = text(
                "SELECT count(*) FROM information_schema.PROCESSLIST"
                " WHERE db = :db AND info LIKE 'SELECT SLEEP%'"
            )
            return int((await connection.execute(query, {"db": backend.url.database})).one()[0])
    finally:
        await engine.dispose()


async def seconds_until(condition: Callable[[], Awaitable[bool]], limit: float) -> float:
    started = time.perf_counter()
    while not await condition():
        if time.perf_counter() - started > limit:
            return float("inf")
        await asyncio.sleep(0.1)
    return time.perf_counter() - started


UNREAD_BODY = 300_000  # bytes: more than uvicorn buffers before it stops reading the socket
DISCONNECTING_CLIENTS = {
    "GET": ("create_slow_app", "GET /_sleep?seconds={sleep} HTTP/1.1\r\nHost: t\r\n\r\n"),
    # The endpoint never reads the body: CancelOnDisconnect must, to see the disconnect after it.
    "POST, body unread": (
        "create_slow_app",
        "POST /_sleep?seconds={sleep} HTTP/1.1\r\nHost: t\r\nContent-Length: {size}\r\n\r\n"
        + "x" * UNREAD_BODY,
    ),
    # BaseHTTPMiddleware runs the app in a child task: the cancel reaches that task.
    "GET, inside @app.middleware": (
        "create_slow_app_in_http_middleware",
        "GET /_sleep?seconds={sleep} HTTP/1.1\r\nHost: t\r\n\r\n",
    ),
}


@pytest.mark.backends("postgresql", "mysql")
@pytest.mark.usefixtures("engine")  # the tables
@pytest.mark.parametrize("client", DISCONNECTING_CLIENTS)
async def test_a_client_that_disconnects_cancels_its_query(
    backend: Backend, client: str, tmp_path: Path
) -> None:
    factory, request = DISCONNECTING_CLIENTS[client]
    name = f"asm-gone-{secrets.token_hex(3)}"
    sleep = 10 if backend.name == "postgresql" else 3
    log = tmp_path / "uvicorn.log"
    async with (
        app_under_uvicorn(backend, name, log, factory) as base_url,
        AsyncClient(base_url=base_url) as http,
    ):
        for _ in range(3):
            _reader, writer = await asyncio.open_connection("127.0.0.1", http.base_url.port)
            writer.write(request.format(sleep=sleep, size=UNREAD_BODY).encode())
            await writer.drain()
            running = await seconds_until(
                lambda: _is(sleeping_statements(backend, name), 1), limit=sleep / 2
            )
            assert running < sleep / 2  # the query is running on the server
            writer.close()  # the client gives up
            await writer.wait_closed()
            released = await seconds_until(lambda: pool_is_idle(http), limit=sleep / 3)
            assert released < sleep / 3  # the handler was cancelled, its connection released
            gone = await seconds_until(
                lambda: _is(sleeping_statements(backend, name), 0), limit=sleep + 5
            )
            if backend.name == "postgresql":
                assert gone < sleep / 3  # asyncpg asked the server to cancel it
            else:
                assert gone > 1  # MariaDB ran it to its end (then dropped the session)
        assert (await http.get("/heroes")).status_code == 200
        states = [state for _, state in await server_sessions(backend, name)]
        assert not {"idle in transaction", "idle in transaction (aborted)", "active"} & set(states)
    logged = log.read_text()
    assert "Exception in ASGI application" not in logged, logged  # e.g. "No response returned."


@pytest.mark.backends("postgresql")  # MariaDB has no deferred triggers to hold a COMMIT open
@pytest.mark.usefixtures("engine")  # the tables
async def test_a_client_that_disconnects_during_commit_changes_nothing(
    backend: Backend, tmp_path: Path
) -> None:
    """Once COMMIT is sent, cancelling it leaves the outcome unknown (it may land, and then the
    work after it is lost): the request runs to its end instead. Here a deferred trigger holds
    the COMMIT open (with a cancel, PostgreSQL would abort it: nothing saved)."""
    name = f"asm-commit-{secrets.token_hex(3)}"
    admin = create_async_engine(backend.url, poolclass=NullPool)
    async with admin.begin() as connection:
        for statement in (
            "CREATE TABLE asm_probe (marker text)",
            "CREATE FUNCTION asm_slow() RETURNS trigger LANGUAGE plpgsql"
            " AS $$ BEGIN PERFORM pg_sleep(3); RETURN NULL; END $$",
            "CREATE CONSTRAINT TRIGGER asm_slow_commit AFTER INSERT ON asm_probe"
            " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION asm_slow()",
        ):
            await connection.exec_driver_sql(statement)

    async def committing() -> bool:
        async with admin.connect() as connection:
            query = text(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"
                " AND state = 'active' AND query LIKE 'COMMIT%'"
            )
            return bool((await connection.execute(query, {"name": name})).scalar_one())

    async def saved() -> list[str]:
        async with admin.connect() as connection:
            rows = await connection.exec_driver_sql("SELECT marker FROM asm_probe ORDER BY 1")
            return [row[0] for row in rows]

    async def background_saved() -> bool:
        return len(await saved()) == 2

    try:
        log = tmp_path / "uvicorn.log"
        async with app_under_uvicorn(backend, name, log) as base_url:
            port = int(base_url.rsplit(":", 1)[1])
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            request = "POST /_probe?marker=gone HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
            writer.write(request.encode())
            await writer.drain()
            assert await seconds_until(committing, limit=5) < 5  # COMMIT runs the trigger
            writer.close()  # the client gives up while COMMIT runs
            await writer.wait_closed()
            # The COMMIT, then the background task (its own COMMIT runs the trigger too).
            assert await seconds_until(background_saved, limit=15) < 15
            async with AsyncClient(base_url=base_url) as http:
                assert await seconds_until(lambda: pool_is_idle(http), limit=3) < 3
            states = [state for _, state in await server_sessions(backend, name)]
            assert not {"idle in transaction", "idle in transaction (aborted)"} & set(states)
        assert await saved() == ["gone", "gone (background)"]
        assert "Exception in ASGI application" not in log.read_text()
    finally:
        async with admin.begin() as connection:
            await connection.exec_driver_sql("DROP TABLE asm_probe")
            await connection.exec_driver_sql("DROP FUNCTION asm_slow")
        await admin.dispose()


async def _is(count: Awaitable[int], expected: int) -> bool:
    return await count == expected


async def pool_is_idle(http: AsyncClient) -> bool:
    return bool((await http.get("/health/ready")).json()["pool"]["checkedout"] == 0)


@pytest.mark.backends("postgresql", "psycopg", "mysql")
async def test_statement_timeout_is_a_clean_503_and_the_connection_survives(
    live_app: LiveAppFactory,
) -> None:
    async with live_app(statement_timeout_ms=200, pool_size=1, max_overflow=0) as live:
        add_sleep_route(live)
        before = (await live.client.get("/_backend")).json()["id"]
        slow = await live.client.get("/_sleep", params={"seconds": 2})
        assert slow.status_code == 503
        assert slow.json() == {
            "detail": "the database took too long; retry later",
            "error": "Timeout",
        }
        assert (await live.client.get("/_backend")).json()["id"] == before  # same connection


async def test_concurrent_increments_lose_nothing(live_app: LiveAppFactory) -> None:
    async with live_app(pool_size=5, max_overflow=5) as live:
        hero = (
            await live.client.post("/heroes", json={"name": "a", "secret_name": "b", "age": 0})
        ).json()
        responses = await asyncio.gather(
            *(live.client.post(f"/heroes/{hero['id']}/birthday") for _ in range(50))
        )
        assert {r.status_code for r in responses} == {200}
        final = (await live.client.get(f"/heroes/{hero['id']}")).json()
    assert final["age"] == 50


@pytest.mark.backends("postgresql")
async def test_shutdown_leaves_no_connection_on_the_server(
    backend: Backend, live_app: LiveAppFactory
) -> None:
    name = f"asm-shutdown-{secrets.token_hex(3)}"
    async with live_app(application_name=name) as live:
        await asyncio.gather(*(live.client.get("/heroes") for _ in range(10)))
        assert await server_sessions(backend, name)
    assert await server_sessions(backend, name) == []


@pytest.mark.backends("postgresql")
async def test_connection_budget_is_checked_at_startup(backend: Backend) -> None:
    app = create_app(backend.settings().model_copy(update={"workers": 10_000}))

    with pytest.raises(RuntimeError, match="connections, but the server allows"):
        async with LifespanManager(app):
            pass


# ---------------------------------------------------------------- secrets and logs


@pytest.mark.backends("sqlite")
@pytest.mark.parametrize("secret", [None, "too short"])
async def test_the_app_refuses_to_start_without_a_cursor_secret(
    backend: Backend, secret: str | None
) -> None:
    """No silent random secret per process: cursors would break across workers and restarts."""
    settings = backend.settings().model_copy(
        update={"cursor_secret": None if secret is None else SecretStr(secret)}
    )
    with pytest.raises(RuntimeError, match="CURSOR_SECRET is not set"):
        async with LifespanManager(create_app(settings)):
            pass


@pytest.mark.backends("sqlite")
async def test_a_cursor_from_one_process_works_in_another(live_app: LiveAppFactory) -> None:
    async with live_app() as first:  # a worker, or the app before a restart
        for name in ("a", "b", "c"):
            created = await first.client.post("/heroes", json={"name": name, "secret_name": name})
            assert created.status_code == 201, created.text
        page = (await first.client.get("/heroes/feed", params={"limit": 1})).json()
    async with live_app() as second:  # another worker, or after the restart
        following = await second.client.get(
            "/heroes/feed", params={"limit": 1, "cursor": page["next_cursor"]}
        )
    assert following.status_code == 200, following.text
    assert following.json()["items"][0]["name"] != page["items"][0]["name"]


@pytest.mark.backends("postgresql")
async def test_the_password_appears_in_no_log_line_or_response(
    backend: Backend, caplog: pytest.LogCaptureFixture, live_app: LiveAppFactory
) -> None:
    password = f"p%@ss:w/rd{secrets.token_hex(4)}"  # characters that need URL escaping
    role = f"asm_pw_{secrets.token_hex(4)}"
    admin = create_async_engine(backend.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    database = backend.url.database or ""
    try:
        async with admin.connect() as connection:
            escaped = password.replace("'", "''")
            await connection.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD '{escaped}'"))
            await connection.execute(text(f'GRANT ALL ON DATABASE "{database}" TO {role}'))
            await connection.execute(text(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}"))
        url = postgres_url(
            role, password, backend.url.host or "127.0.0.1", database, backend.url.port or 5432
        )
        caplog.set_level(logging.DEBUG)
        async with live_app(
            database_url=url.render_as_string(hide_password=False), echo_sql=True
        ) as live:
            ok = await live.client.get("/heroes")
            assert ok.status_code == 200, ok.text
        # An error path (trust auth on a test server accepts any password: use a missing db).
        wrong = url.set(database=f"missing_{secrets.token_hex(4)}")
        async with live_app(database_url=wrong.render_as_string(hide_password=False)) as live:
            refused = await live.client.get("/heroes")
            assert refused.status_code in (500, 503)
        settings_repr = repr(Settings(database_url=url.render_as_string(hide_password=False)))
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}"))
            await connection.execute(text(f'REVOKE ALL ON DATABASE "{database}" FROM {role}'))
            await connection.execute(text(f"DROP ROLE IF EXISTS {role}"))
        await admin.dispose()
    logged = "\n".join(record.getMessage() + str(record.exc_info) for record in caplog.records)
    assert caplog.records  # echo_sql logged the queries
    for text_seen in (logged, ok.text, refused.text, settings_repr, repr(url)):
        assert password not in text_seen
        assert "p%40ss" not in text_seen  # nor its URL-encoded form


def test_url_create_needs_no_escaping() -> None:
    url = postgres_url("app", "p%@ss:w/rd", "db.internal", "app")
    assert url.password == "p%@ss:w/rd"
    assert "p%@ss" not in repr(url)  # URL's repr masks the password
    assert make_url(url.render_as_string(hide_password=False)).password == "p%@ss:w/rd"


# ---------------------------------------------------------------- observability and routing


@pytest.mark.usefixtures("engine")  # the tables
async def test_slow_queries_are_logged_without_parameters(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_engine(backend.settings())
    log_slow_queries(engine, threshold_ms=0)
    caplog.set_level(logging.WARNING, logger="examples.app.slow_queries")
    try:
        async with engine.connect() as connection:
            await connection.execute(select(Hero).where(Hero.name == "Secret Identity 42"))
    finally:
        await engine.dispose()
    messages = [r.getMessage() for r in caplog.records if r.name == "examples.app.slow_queries"]
    assert any("slow query" in m and "FROM hero" in m for m in messages)
    assert not any("Secret Identity 42" in m for m in messages)


async def test_statements_that_fail_slowly_are_logged_too(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    """The slowest statements end in an error (statement_timeout, a lock wait) and never reach
    after_cursor_execute: handle_error logs them, with the SQL and without the parameters."""
    secret = f"Secret Identity {secrets.token_hex(4)}"
    statement, params = "SELECT pg_sleep(:seconds), CAST(:secret AS text)", {"secret": secret}
    if backend.name == "postgresql":
        engine = create_engine(backend.settings().model_copy(update={"statement_timeout_ms": 300}))
    elif backend.name == "mysql":  # MariaDB's statement timeout
        engine = create_engine(backend.settings())
        statement = "SET STATEMENT max_statement_time=0.3 FOR SELECT SLEEP(:seconds), :secret"
    else:  # SQLite: a writer that waited busy_timeout for the lock, then failed
        engine = create_async_engine(backend.url)
        configure_sqlite(engine, busy_timeout_ms=300)
        statement, params = "SELECT :secret", {"secret": secret}
    log_slow_queries(engine, threshold_ms=100)
    caplog.set_level(logging.WARNING, logger="examples.app.slow_queries")
    writer = None
    try:
        async with engine.connect() as connection:
            await connection.get_raw_connection()  # connected (and its PRAGMAs run) first
            if backend.name == "sqlite":
                writer = sqlite3.connect(backend.url.database or "", isolation_level=None)
                writer.execute("BEGIN IMMEDIATE")  # holds the write lock
            with pytest.raises(DBAPIError):
                await connection.execute(text(statement), params | {"seconds": 2})
    finally:
        if writer is not None:
            writer.close()
        await engine.dispose()
    messages = [r.getMessage() for r in caplog.records if r.name == "examples.app.slow_queries"]
    assert len(messages) == 1, messages
    if backend.name == "postgresql":
        expected = (POSTGRES_ERROR[backend.driver]["cancelled"], "SELECT pg_sleep(")
    else:
        expected = {
            "mysql": ("OperationalError", "max_statement_time=0.3 FOR SELECT SLEEP("),
            "sqlite": ("OperationalError", "BEGIN IMMEDIATE"),  # database is locked
        }[backend.name]
    assert messages[0].startswith("slow query failed (")
    assert all(part in messages[0] for part in expected), messages
    assert secret not in messages[0]


@pytest.mark.usefixtures("engine")  # the tables
async def test_echo_sql_and_errors_show_no_parameter_values(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    secret = f"Tommy Sharp {secrets.token_hex(4)}"
    settings = backend.settings().model_copy(update={"echo_sql": True})
    engine = create_engine(settings)
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
    try:
        async with engine.connect() as connection:
            await connection.execute(insert(Hero).values(name="Echo", secret_name=secret))
            with pytest.raises(IntegrityError) as duplicate:
                await connection.execute(insert(Hero).values(name="Echo 2", secret_name=secret))
            await connection.rollback()
    finally:
        await engine.dispose()
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("sqlalchemy"))
    assert "INSERT INTO hero" in logged  # echo_sql still logs the SQL
    assert secret not in logged
    message = str(duplicate.value)
    assert "[SQL parameters hidden due to hide_parameters=True]" in message
    # MySQL's own error text quotes the value ("Duplicate entry '...' for key ..."), and so does
    # psycopg's DETAIL line; asyncpg's doesn't. Never show an exception's text to a client (the
    # service's errors don't).
    assert (secret in message) == (backend.driver in ("aiomysql", "psycopg"))


RoutingLogs = tuple[async_sessionmaker[AsyncSession], StatementLog, StatementLog]


@asynccontextmanager
async def routed(backend: Backend) -> AsyncIterator[RoutingLogs]:
    """A routing session factory over two engines on the same database, each one's statements
    recorded: (factory, primary's log, replica's log)."""
    settings = backend.settings()
    primary, replica = create_engine(settings), create_engine(settings)
    try:
        with counting_statements(primary) as on_primary, counting_statements(replica) as on_replica:
            yield create_routing_session_factory(primary, replica), on_primary, on_replica
    finally:
        await primary.dispose()
        await replica.dispose()


def verbs(log: StatementLog) -> list[str]:
    return [statement.split()[0] for statement in log.statements]


# SQLite has no replicas (and one writer: two engines on one file wait for each other's lock).
@pytest.mark.backends("postgresql", "mysql")
@pytest.mark.usefixtures("engine")  # the tables
async def test_plain_reads_go_to_the_replica_locks_to_the_primary(backend: Backend) -> None:
    async with routed(backend) as (factory, on_primary, on_replica), factory() as session:
        await session.exec(select(Hero).limit(1))
        assert (verbs(on_primary), verbs(on_replica)) == ([], ["SELECT"])
        await session.exec(select(Hero).limit(1).with_for_update())
        assert "FOR UPDATE" in on_primary.statements[-1]
        await session.exec(select(Hero).limit(1))  # the unit holds locks there: stays
        assert (verbs(on_primary), verbs(on_replica)) == (["SELECT", "SELECT"], ["SELECT"])


@pytest.mark.backends("postgresql", "mysql")
@pytest.mark.usefixtures("engine")  # the tables
@pytest.mark.parametrize("flush", [True, False], ids=["flush", "autoflush"])
async def test_a_unit_reads_its_own_writes(backend: Backend, flush: bool) -> None:
    secret = f"r{secrets.token_hex(3)}"
    async with routed(backend) as (factory, on_primary, on_replica), factory() as session:
        session.add(Hero(name="Routed", secret_name=secret))
        if flush:
            await session.flush()  # INSERT ... RETURNING is a write even though it returns
        found = (await session.exec(select(Hero).where(Hero.secret_name == secret))).first()
        await session.rollback()
    assert found is not None  # the replica's connection could not see the uncommitted row
    assert verbs(on_primary) == ["INSERT", "SELECT"]
    assert on_replica.statements == []


@pytest.mark.backends("postgresql", "mysql")
@pytest.mark.usefixtures("engine")  # the tables
async def test_get_then_update_reads_the_primary(backend: Backend) -> None:
    async with routed(backend) as (factory, on_primary, on_replica):
        async with factory(info={"primary": True}) as session, session.begin():
            hero = Hero(name="Routed", secret_name=f"r{secrets.token_hex(3)}")
            session.add(hero)
        try:
            async with factory(info={"primary": True}) as session, session.begin():
                stored = await session.get(Hero, hero.id)  # a unit that reads to write
                assert stored is not None
                stored.age = 40
            async with factory() as session, session.begin():  # undeclared, but it locks
                locked = await session.get(Hero, hero.id, with_for_update=True)
                assert locked is not None
                locked.age = 41
        finally:
            async with factory(info={"primary": True}) as session, session.begin():
                await session.exec(delete(Hero).where(col(Hero.id) == hero.id))
    assert on_replica.statements == []  # both gets (new sessions, so real SELECTs) ran here
    assert verbs(on_primary).count("UPDATE") == 2
    assert any("FOR UPDATE" in statement for statement in on_primary.statements)


async def test_pre_ping_sends_per_driver(backend: Backend) -> None:
    """What pool_pre_ping sends at each checkout of a pooled connection, before the unit."""
    engine = create_engine(
        backend.settings().model_copy(update={"pool_size": 1, "max_overflow": 0})
    )
    sent: list[str] = []
    try:
        async with engine.connect() as connection:  # opens the pooled connection: no ping
            driver: Any = (await connection.get_raw_connection()).driver_connection
            if backend.driver == "asyncpg":
                driver.add_query_logger(lambda query: sent.append(query.query))
            elif backend.driver == "psycopg":  # no query logger: record what its cursors run
                make_cursor = driver.cursor

                class Recorded:
                    def __init__(self, cursor: Any) -> None:
                        self.cursor = cursor

                    def __getattr__(self, name: str) -> Any:
                        return getattr(self.cursor, name)

                    async def __aenter__(self) -> Any:
                        await self.cursor.__aenter__()
                        return self  # SQLAlchemy keeps what this returns

                    async def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
                        sent.append(str(query))
                        return await self.cursor.execute(query, *args, **kwargs)

                driver.cursor = lambda *args, **kwargs: Recorded(make_cursor(*args, **kwargs))
            elif backend.name == "sqlite":
                await driver.set_trace_callback(sent.append)
            else:  # a COM_PING is a protocol command, no SQL: count the driver's calls
                ping = driver.ping

                async def counted_ping(*args: Any, **kwargs: Any) -> Any:
                    sent.append("COM_PING")
                    return await ping(*args, **kwargs)

                driver.ping = counted_ping
        sent.clear()
        async with engine.connect() as connection:  # a checkout: pre-ping
            await asyncio.sleep(0)  # asyncpg calls its query loggers soon after, not at once
            sent.append("-- the unit starts")
            await connection.execute(text("SELECT 42"))
    finally:
        await engine.dispose()
    expected = {
        # db.py's ping_at_checkout: SQLAlchemy's own pings asyncpg inside a transaction (for
        # PgBouncer), BEGIN; ; ROLLBACK; three round trips.
        "asyncpg": [";"],
        "psycopg": [";"],  # one round trip, an empty query
        "aiomysql": ["COM_PING"],  # one round trip
        "aiosqlite": ["SELECT 1"],  # in-process
    }[backend.driver]
    assert sent[: sent.index("-- the unit starts")] == expected, sent


@pytest.mark.backends("postgresql")
async def test_pgbouncer_mode_keeps_no_connection_open(
    backend: Backend, live_app: LiveAppFactory
) -> None:
    name = f"asm-bouncer-{secrets.token_hex(3)}"
    async with live_app(application_name=name, pgbouncer=True) as live:
        assert type(live.engine.pool).__name__ == "NullPool"
        for _ in range(3):
            assert (await live.client.get("/heroes")).status_code == 200
        assert await server_sessions(backend, name) == []  # closed after every request


def global_span_exporter() -> Any:
    """An in-memory exporter on the process's tracer provider (set once: OpenTelemetry refuses
    to replace it), as an app's own exporter setup would be."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@asynccontextmanager
async def traced_app(backend: Backend) -> AsyncIterator[AsyncClient]:
    """The app with tracing on and a read replica (here: the same database)."""
    settings = backend.settings().model_copy(
        update={"opentelemetry": True, "read_replica_url": SecretStr(backend.url_string)}
    )
    app = create_app(settings)

    @app.get("/_traced")
    async def traced(request: Request, marker: str) -> None:
        primary = request.state.session_factory
        replica = await request.state.reads.session(primary, execution_options=READ_ONLY)
        for kind, session in (("primary", primary()), ("replica", replica)):
            async with session:
                connection = await session.connection()
                await connection.execute(text(f"SELECT '{marker} {kind}'"))

    async with (
        LifespanManager(app) as manager,
        AsyncClient(transport=ASGITransport(app=manager.app), base_url="http://test") as client,
    ):
        yield client


@pytest.mark.usefixtures("engine")  # the tables
async def test_opentelemetry_traces_every_engine_of_every_app(backend: Backend) -> None:
    # The instrumentor is one per process: instrumenting engine by engine traced only the first
    # engine of the first app ("Attempting to instrument while already instrumented").
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    exporter = global_span_exporter()
    async with traced_app(backend) as first:
        async with traced_app(backend) as second:  # a second app in the same process
            assert (await first.get("/_traced", params={"marker": "first"})).status_code == 200
            assert (await second.get("/_traced", params={"marker": "second"})).status_code == 200
            assert (await second.get("/heroes")).status_code == 200
        # The second one stopped: the first one is still traced.
        assert (await first.get("/_traced", params={"marker": "later"})).status_code == 200
    spans = exporter.get_finished_spans()
    statements = {str((span.attributes or {}).get("db.statement")) for span in spans}
    for marker in ("first", "second", "later"):
        for kind in ("primary", "replica"):
            assert f"SELECT '{marker} {kind}'" in statements, (marker, kind, statements)
    assert any("FROM hero" in statement for statement in statements)  # the app's own queries
    assert not SQLAlchemyInstrumentor().is_instrumented_by_opentelemetry  # untraced at shutdown
