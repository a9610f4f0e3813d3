"""references/production-patterns.md: the app under faults, with nothing lost."""

import asyncio
import logging
import secrets
import time
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient
from sqlalchemy import insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from sqlmodel import select

from examples.app.api.deps import SessionDep
from examples.app.db import create_engine, create_routing_session_factory, log_slow_queries
from examples.app.main import create_app
from examples.app.models import Hero
from examples.app.settings import Settings, postgres_url
from examples.testing import counting_statements
from tests.conftest import Backend, LiveApp, LiveAppFactory


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
        response = await live.client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["database"]) == ("ok", "ok")
    assert "class" in body["pool"]


@pytest.mark.backends("postgresql", "mysql")
async def test_health_is_a_quick_503_when_the_pool_is_full(live_app: LiveAppFactory) -> None:
    async with live_app(pool_size=1, max_overflow=0, pool_timeout=30, health_timeout=0.5) as live:
        async with live.engine.connect():  # the only connection, held
            started = time.perf_counter()
            response = await live.client.get("/health")
            waited = time.perf_counter() - started
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert response.json()["pool"]["checkedout"] == 1
        assert waited < 3  # the health timeout, not the 30 s pool timeout
        assert (await live.client.get("/health")).status_code == 200


@pytest.mark.backends("postgresql", "mysql")
async def test_a_database_down_is_a_503_not_a_crash(backend: Backend) -> None:
    dead = backend.url.set(host="127.0.0.1", port=1).render_as_string(hide_password=False)
    app = create_app(Settings(database_url=dead, health_timeout=1))
    async with (
        LifespanManager(app) as manager,  # starts anyway, with a warning
        AsyncClient(
            transport=ASGITransport(app=manager.app, raise_app_exceptions=False),
            base_url="http://test",
        ) as client,
    ):
        health = await client.get("/health")
        heroes = await client.get("/heroes")
    assert health.status_code == 503
    assert heroes.status_code == 503, heroes.text
    assert "127.0.0.1" not in heroes.text


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


@pytest.mark.backends("postgresql")
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
    app = create_app(Settings(database_url=backend.url_string, workers=10_000))

    with pytest.raises(RuntimeError, match="connections, but the server allows"):
        async with LifespanManager(app):
            pass


# ---------------------------------------------------------------- secrets and logs


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
    # MySQL's own error text quotes the value ("Duplicate entry '...' for key ..."): never show
    # an exception's text to a client (the service's errors don't).
    assert (secret in message) == (backend.name == "mysql")


@pytest.mark.backends("postgresql", "mysql")  # SQLite has no replicas (and one writer)
@pytest.mark.usefixtures("engine")  # the tables
async def test_reads_go_to_the_replica_writes_to_the_primary(backend: Backend) -> None:
    settings = backend.settings()
    primary, replica = create_engine(settings), create_engine(settings)  # same db, two engines
    factory = create_routing_session_factory(primary, replica)
    try:
        with counting_statements(primary) as writes, counting_statements(replica) as reads:
            async with factory() as session:
                await session.exec(select(Hero).limit(1))
                session.add(Hero(name="Routed", secret_name=f"r{secrets.token_hex(3)}"))
                await session.flush()  # INSERT ... RETURNING is a write even though it returns
                await session.rollback()
        assert [s.split()[0] for s in reads.statements] == ["SELECT"]
        assert writes.statements[0].split()[0] == "INSERT"
    finally:
        await primary.dispose()
        await replica.dispose()


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


@pytest.mark.usefixtures("engine")  # the tables
async def test_opentelemetry_records_a_span_per_statement(backend: Backend) -> None:
    # Without skip_dep_check the instrumentation refuses SQLAlchemy 2.1 and records nothing.
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    engine = create_engine(backend.settings())
    SQLAlchemyInstrumentor().instrument(
        engine=engine.sync_engine, tracer_provider=provider, skip_dep_check=True
    )
    try:
        async with engine.connect() as connection:
            await connection.execute(select(Hero).where(Hero.name == "traced"))
    finally:
        SQLAlchemyInstrumentor().uninstrument()
        await engine.dispose()
    spans = exporter.get_finished_spans()
    statements = [str((span.attributes or {}).get("db.statement")) for span in spans]
    assert any("FROM hero" in statement for statement in statements), statements
