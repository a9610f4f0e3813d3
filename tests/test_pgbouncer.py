"""references/production-patterns.md#pgbouncer-and-serverless: the app through a real PgBouncer
in transaction mode (TEST_PGBOUNCER_URL; `.ci/pgbouncer` starts one with a pool of 5).

Transaction pooling hands each transaction whatever server connection is free, so anything a
client leaves on a connection (prepared statements, SET) is seen by the next client there.
"""

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
import pytest_asyncio
from sqlalchemy import delete, event, func, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlmodel import col, select

from examples.app.db import (
    create_engine,
    create_session_factory,
    set_statement_timeout_per_transaction,
)
from examples.app.models import Hero
from examples.app.services import HeroService
from examples.app.settings import Settings
from examples.servicebase.transactions import unit_of_work
from tests.conftest import Backend, LiveAppFactory, create_database, drop_database
from tests.test_production import add_sleep_route

pytestmark = pytest.mark.backends("postgresql")

ROOT = Path(__file__).resolve().parent.parent
SECRET = b"cursor-secret-for-pgbouncer-tests-0123"
HEROES = 30


def driver_error(error: DBAPIError) -> str:
    """asyncpg's exception class behind SQLAlchemy's DBAPIError."""
    return type(getattr(error.orig, "__cause__", None)).__name__


def bouncer_settings(url: str, **overrides: Any) -> Settings:
    return Settings.model_validate({"database_url": url, "pgbouncer": True, **overrides})


@pytest_asyncio.fixture
async def bouncer_engine(pgbouncer_url: str) -> AsyncIterator[AsyncEngine]:
    """The app's engine in pgbouncer mode, through the real PgBouncer."""
    engine = create_engine(bouncer_settings(pgbouncer_url, statement_timeout_ms=1234))
    yield engine
    await engine.dispose()


@pytest_asyncio.fixture
async def heroes_committed(engine: AsyncEngine) -> AsyncIterator[None]:
    """HEROES committed rows (ages 0..29) for readers on other connections; deleted afterwards."""
    factory = create_session_factory(engine)
    async with unit_of_work(factory) as session:
        for n in range(HEROES):
            session.add(Hero(name=f"bouncer {n:02}", secret_name=f"pgb {n:02}", age=n))
    try:
        yield
    finally:
        async with unit_of_work(factory) as session:
            await session.exec(delete(Hero).where(col(Hero.name).startswith("bouncer ")))


# ---------------------------------------------------------------- what fails without the fix


async def test_statement_timeout_as_a_startup_parameter_is_refused(pgbouncer_url: str) -> None:
    # What the engine used to send: both settings in asyncpg's server_settings.
    engine = create_async_engine(
        pgbouncer_url,
        poolclass=NullPool,
        connect_args={"server_settings": {"application_name": "asm", "statement_timeout": "15000"}},
    )
    try:
        with pytest.raises(DBAPIError) as caught:
            async with engine.connect() as connection:
                await connection.exec_driver_sql("SELECT 1")
    finally:
        await engine.dispose()
    assert "unsupported startup parameter: statement_timeout" in str(caught.value)
    assert driver_error(caught.value) == "ProtocolViolationError"


async def test_default_asyncpg_settings_fail_when_the_app_restarts(
    backend: Backend, pgbouncer_url: str
) -> None:
    """asyncpg names statements __asyncpg_stmt_1__, _2_, ... per process and leaves them on the
    server connection; a restarted app (or a second worker) prepares the same name there."""
    assert backend.server_url is not None
    database = await create_database("postgresql", backend.server_url)  # a pool of its own
    url = make_url(pgbouncer_url).set(database=database).render_as_string(hide_password=False)
    script = (
        "import asyncio, sys\n"
        "from sqlalchemy.ext.asyncio import create_async_engine\n"
        "async def main():\n"
        "    engine = create_async_engine(sys.argv[1])  # asyncpg's defaults\n"
        "    async with engine.connect() as connection:\n"
        "        await connection.exec_driver_sql('SELECT 1')\n"
        "    await engine.dispose()\n"
        "asyncio.run(main())\n"
    )

    def start_app() -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        command = [sys.executable, "-c", script, url]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)

    try:
        first = await asyncio.to_thread(start_app)
        second = await asyncio.to_thread(start_app)
    finally:
        await drop_database("postgresql", backend.server_url, database)
    assert first.returncode == 0, first.stderr
    assert second.returncode != 0
    assert 'prepared statement "__asyncpg_stmt_1__" already exists' in second.stderr


async def test_a_cached_statement_is_missing_on_the_next_server_connection(
    pgbouncer_url: str,
) -> None:
    """The default pool and statement cache: a statement prepared in one transaction is
    reused in the next, which PgBouncer runs on another server connection."""
    engine = create_async_engine(pgbouncer_url)  # asyncpg's defaults, a QueuePool
    statement = text("SELECT CAST(:n AS integer) + 1")
    try:
        async with engine.connect() as first, engine.connect() as other:
            await first.execute(statement, {"n": 1})  # prepared and cached on server conn A
            await first.commit()  # A goes back to PgBouncer
            await other.exec_driver_sql("SELECT 1")  # takes A and keeps it (open transaction)
            with pytest.raises(
                DBAPIError, match=r'prepared statement "__asyncpg_stmt_\w+__" does'
            ) as e:
                await first.execute(statement, {"n": 2})  # the cached name, on server conn B
    finally:
        await engine.dispose()
    assert driver_error(e.value) == "InvalidSQLStatementNameError"


async def test_a_database_setting_reaches_every_server_connection(
    backend: Backend, pgbouncer_url: str
) -> None:
    """The alternative to SET LOCAL: ALTER ROLE / ALTER DATABASE ... SET statement_timeout,
    applied by the server to each connection PgBouncer opens; no statement per transaction."""
    assert backend.server_url is not None
    database = await create_database("postgresql", backend.server_url)
    url = make_url(pgbouncer_url).set(database=database)
    engine = create_async_engine(url, poolclass=NullPool, connect_args={"statement_cache_size": 0})
    admin = create_async_engine(backend.server_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.exec_driver_sql(
                f'ALTER DATABASE "{database}" SET statement_timeout = 4321'
            )
        async with engine.connect() as connection:
            assert await connection.scalar(text("SHOW statement_timeout")) == "4321ms"
    finally:
        await engine.dispose()
        await admin.dispose()
        await drop_database("postgresql", backend.server_url, database)


# ---------------------------------------------------------------- the app's engine


async def test_the_statement_timeout_is_set_in_every_transaction_and_nowhere_else(
    bouncer_engine: AsyncEngine, pgbouncer_url: str
) -> None:
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(bouncer_engine.sync_engine, "before_cursor_execute", record)
    for _ in range(3):
        async with bouncer_engine.connect() as connection:
            timeout = await connection.scalar(text("SHOW statement_timeout"))
            name = await connection.scalar(text("SELECT current_setting('application_name')"))
            assert (timeout, name) == ("1234ms", "async-sqlmodel")
    event.remove(bouncer_engine.sync_engine, "before_cursor_execute", record)
    # The cost: one statement per transaction.
    assert statements.count("SET LOCAL statement_timeout = 1234") == 3
    assert len(statements) == 3 * 3

    # SET LOCAL ended with each transaction: other clients of those server connections see the
    # server's default. Five open transactions hold every server connection of a pool of 5.
    plain = pgbouncer_url.replace("postgresql+asyncpg://", "postgresql://")
    clients = [await asyncpg.connect(plain, statement_cache_size=0) for _ in range(5)]
    try:
        for client in clients:
            await client.execute("BEGIN")
        seen = [await client.fetchval("SHOW statement_timeout") for client in clients]
    finally:
        for client in clients:
            await client.close()
    assert len(seen) == 5
    assert "1234ms" not in seen  # the server's default (0 unless configured)


async def prepared_statements_on_the_servers(pgbouncer_url: str) -> dict[int, int]:
    """Prepared statements on each of PgBouncer's server connections (pool of 5): five
    concurrent transactions hold all five; each counts its own (unnamed statements: none)."""
    plain = pgbouncer_url.replace("postgresql+asyncpg://", "postgresql://")

    async def one() -> tuple[int, int]:
        client = await asyncpg.connect(plain, statement_cache_size=0)
        try:
            async with client.transaction():
                await client.execute("SELECT pg_sleep(0.5)")  # the others start theirs meanwhile
                row = await client.fetchrow(
                    "SELECT pg_backend_pid(), (SELECT count(*) FROM pg_prepared_statements)"
                )
                return int(row[0]), int(row[1])
        finally:
            await client.close()

    return dict(await asyncio.gather(*(one() for _ in range(5))))


@pytest.mark.usefixtures("engine")  # the tables
async def test_units_leave_no_prepared_statement_on_the_server_connections(
    bouncer_engine: AsyncEngine, pgbouncer_url: str
) -> None:
    """A named statement stays on the server connection until the client closes it, which
    NullPool never does (and a client's next transaction runs elsewhere): one per unit of work,
    tens of KiB of server memory each, until PgBouncer's server_lifetime recycles it."""
    factory = create_session_factory(bouncer_engine)
    before = await prepared_statements_on_the_servers(pgbouncer_url)
    assert len(before) == 5  # every server connection of the pool

    async def unit(n: int) -> None:
        async with factory() as session, session.begin():
            await session.exec(select(Hero).where(col(Hero.age) == n))
            await session.exec(text("SELECT CAST(:n AS integer) + 1").bindparams(n=n))  # type: ignore[call-overload]

    for batch in range(20):
        await asyncio.gather(*(unit(batch * 10 + n) for n in range(10)))  # 200 units
    after = await prepared_statements_on_the_servers(pgbouncer_url)
    assert sum(after.values()) <= sum(before.values()), (before, after)


def small_pool_engine(url: str, timeout_ms: int) -> AsyncEngine:
    """The pgbouncer settings with a pool of our own (3 connections) instead of NullPool."""
    engine = create_async_engine(
        make_url(url).update_query_dict({"prepared_statement_cache_size": "0"}),
        pool_size=3,
        max_overflow=0,
        connect_args={"statement_cache_size": 0},
    )
    set_statement_timeout_per_transaction(engine, timeout_ms)
    return engine


@pytest.mark.parametrize("pool", ["NullPool", "pool of 3"])
async def test_fifty_sessions_share_a_few_server_connections_without_errors(
    bouncer_engine: AsyncEngine, pgbouncer_url: str, heroes_committed: None, pool: str
) -> None:
    """Differently shaped statements from 50 concurrent sessions: column lists, IN lists of
    every length, the service layer's filtered pages and counts."""
    engine = bouncer_engine if pool == "NullPool" else small_pool_engine(pgbouncer_url, 1234)
    factory = create_session_factory(engine)

    async def one_session(n: int) -> tuple[int, int]:
        async with factory() as session:
            pid = (await session.exec(text("SELECT pg_backend_pid()"))).scalar_one()  # type: ignore[call-overload]
            columns: list[Any] = [Hero.name, Hero.age, Hero.secret_name][: n % 3 + 1]
            rows = (await session.exec(select(*columns).where(col(Hero.age) == n % HEROES))).all()
            assert len(rows) == 1
            ages = list(range(n % 7 + 1))  # IN lists of 1..7 values
            found = (await session.exec(select(func.count()).where(col(Hero.age).in_(ages)))).one()
            assert found == len(ages)
            heroes = HeroService(session, cursor_secret=SECRET)
            filter = {
                "and": [
                    {"field": "name", "op": "startswith", "value": "bouncer"},
                    {"field": "age", "op": "gte", "value": n % 10},
                ]
            }
            page = await heroes.page(filter, sort="-age", limit=n % 5 + 1)
            assert page.total == HEROES - n % 10
            assert page.items[0].age == HEROES - 1
            assert await heroes.count({"field": "age", "op": "in", "value": ages}) == len(ages)
            timeout = (await session.exec(text("SHOW statement_timeout"))).scalar_one()  # type: ignore[call-overload]
            assert timeout == "1234ms"
            return n, pid

    try:
        results = await asyncio.gather(*(one_session(n) for n in range(50)), return_exceptions=True)
    finally:
        await engine.dispose()
    errors = [repr(result) for result in results if isinstance(result, BaseException)]
    assert errors == []
    pids = {pid for _, pid in results}  # type: ignore[misc]
    assert len(pids) < 50  # server connections were shared: PgBouncer really pooled them


# ---------------------------------------------------------------- the app over HTTP


async def test_a_long_statement_is_cancelled_by_the_server_as_a_503(
    live_app: LiveAppFactory, pgbouncer_url: str
) -> None:
    async with live_app(
        database_url=pgbouncer_url, pgbouncer=True, statement_timeout_ms=200
    ) as live:
        add_sleep_route(live)
        # Within the command_timeout backstop (0.2 + 5 s): only the server can stop it.
        slow = await live.client.get("/_sleep", params={"seconds": 4})
        assert slow.status_code == 503
        assert slow.json() == {
            "detail": "the database took too long; retry later",
            "error": "Timeout",
        }
        assert (await live.client.get("/_sleep", params={"seconds": 0})).status_code == 200


async def test_the_app_serves_requests_through_pgbouncer(
    live_app: LiveAppFactory, pgbouncer_url: str
) -> None:
    async with live_app(database_url=pgbouncer_url, pgbouncer=True) as live:
        created = await live.client.post(
            "/heroes", json={"name": "Bouncer", "secret_name": "Pooled", "age": 41}
        )
        assert created.status_code == 201, created.text
        hero_id = created.json()["id"]
        responses = await asyncio.gather(
            *(live.client.get(f"/heroes/{hero_id}") for _ in range(10)),
            *(live.client.get("/heroes", params={"limit": n + 1}) for n in range(10)),
        )
        assert [response.status_code for response in responses] == [200] * 20
        assert (await live.client.get("/health/ready")).json()["status"] == "ok"
    # PgBouncer is the pool: NullPool, and no pre-ping (a new connection is never pinged).
    assert type(live.engine.pool).__name__ == "NullPool"
    assert live.engine.pool._pre_ping is False
