"""The backend matrix: every test that asks for `backend` (directly or through `engine`,
`session`, `client`, ...) runs once per selected database.

Selection: `--db sqlite --db postgresql --db mysql`; by default SQLite plus every server whose
URL is set (TEST_POSTGRES_URL, TEST_MYSQL_URL). With `--require-db` or CI=true the default is all
three, and an unreachable backend fails instead of skipping.

Each run creates its own databases on the servers (never the shared one the URL names) and drops
them at the end, also when tests fail.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager
from fastapi import FastAPI, Request
from httpx import ASGITransport, AsyncClient
from sqlalchemy import delete
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

import examples.app.models  # noqa: F401  (registers every table on SQLModel.metadata)
from examples.app.api.deps import get_session_factory
from examples.app.db import create_engine, create_session_factory
from examples.app.main import create_app
from examples.app.models import Hero, HeroPower, Power, Team
from examples.app.settings import Settings
from examples.pitfalls import pitfall_router
from examples.servicebase.transactions import unit_of_work
from examples.testing import app_client, rolled_back_session, run_database_url

# "psycopg" is PostgreSQL through psycopg 3 instead of asyncpg: its tests see backend.name
# "postgresql" (the dialect), so every PostgreSQL branch applies to both drivers.
BACKENDS = ("sqlite", "postgresql", "mysql", "psycopg")
SERVER_URL_ENV = {
    "postgresql": "TEST_POSTGRES_URL",
    "mysql": "TEST_MYSQL_URL",
    "psycopg": "TEST_PSYCOPG_URL",
}
# The driver's own exception class names, as logs and /health name them (never the message).
POSTGRES_ERROR = {
    "asyncpg": {"cancelled": "QueryCanceledError"},
    "psycopg": {"cancelled": "QueryCanceled"},
}
CONNECT_TIMEOUT = 10.0
CURSOR_SECRET = "test-cursor-secret-0123456789abcdef"  # the app refuses to start without one


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("async-sqlmodel", "database backends")
    group.addoption(
        "--db",
        action="append",
        choices=BACKENDS,
        help="backend to run database tests on (repeatable); "
        "default: sqlite plus every backend whose TEST_*_URL is set",
    )
    group.addoption(
        "--require-db",
        action="store_true",
        help="fail (instead of skip) when a selected backend is unreachable; on when CI=true",
    )


def backends_required(config: pytest.Config) -> bool:
    return bool(config.getoption("--require-db")) or os.environ.get("CI", "").lower() == "true"


def unavailable(config: pytest.Config, message: str) -> NoReturn:
    """Skip locally; fail when backends are required (--require-db, CI=true)."""
    if backends_required(config):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def selected_backends(config: pytest.Config) -> list[str]:
    chosen: list[str] | None = config.getoption("--db")
    if chosen:
        return list(dict.fromkeys(chosen))
    if backends_required(config):
        return list(BACKENDS)
    return ["sqlite", *(name for name, env in SERVER_URL_ENV.items() if os.environ.get(env))]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    names = selected_backends(metafunc.config)
    only = metafunc.definition.get_closest_marker("backends")
    if only:  # @pytest.mark.backends("postgresql", ...): a test about one backend's behaviour
        names = [name for name in names if name in only.args]
    metafunc.parametrize("backend", names, indirect=True, scope="session")


# ---------------------------------------------------------------- databases per run


@dataclass(frozen=True)
class Backend:
    name: str
    url: URL  # the database this run owns
    server_url: URL | None = None  # where more databases can be created (None for SQLite)

    @property
    def url_string(self) -> str:
        return self.url.render_as_string(hide_password=False)

    @property
    def driver(self) -> str:
        """asyncpg or psycopg on PostgreSQL; aiomysql, aiosqlite."""
        return str(self.url.get_driver_name())

    def settings(self) -> Settings:
        return Settings(database_url=self.url_string, cursor_secret=CURSOR_SECRET)


async def _admin_execute(server_url: URL, *statements: str) -> None:
    engine = create_async_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT), engine.connect() as conn:
            for statement in statements:
                await conn.exec_driver_sql(statement)
    finally:
        await engine.dispose()


@pytest_asyncio.fixture(scope="session")
async def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Backend]:
    name: str = request.param
    if name == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / "test.db"
        yield Backend(name, make_url(f"sqlite+aiosqlite:///{path}"))
        return

    env = SERVER_URL_ENV[name]
    raw_url = os.environ.get(env)
    if not raw_url:
        unavailable(request.config, f"{name} backend unavailable: {env} is not set")
    server_url = make_url(str(raw_url))
    dialect = "postgresql" if name == "psycopg" else name
    try:
        database = await create_database(dialect, server_url)
    except Exception as exc:  # any failure to create the database means the server is unusable
        unavailable(request.config, f"{name} backend unavailable: {type(exc).__name__}: {exc}")
    try:
        yield Backend(dialect, server_url.set(database=database), server_url)
    finally:
        await drop_database(dialect, server_url, database)


async def create_database(backend: str, server_url: URL) -> str:
    database = str(run_database_url(server_url).database)  # <server db>_test_<pid>_<hex>
    if backend == "postgresql":
        await _admin_execute(server_url, f'CREATE DATABASE "{database}"')
    else:
        await _admin_execute(
            server_url,
            f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4",  # collation: per table (models)
        )
    return database


async def drop_database(backend: str, server_url: URL, database: str) -> None:
    if backend == "postgresql":
        await _admin_execute(server_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    else:
        await _admin_execute(server_url, f"DROP DATABASE IF EXISTS `{database}`")


@asynccontextmanager
async def an_empty_database(backend: Backend, tmp_path: Path, name: str) -> AsyncIterator[str]:
    """The URL of a new, empty database on the backend's server, dropped afterwards."""
    if backend.server_url is None:
        yield f"sqlite+aiosqlite:///{tmp_path}/{name}.db"
        return
    database = await create_database(backend.name, backend.server_url)
    try:
        yield backend.server_url.set(database=database).render_as_string(hide_password=False)
    finally:
        await drop_database(backend.name, backend.server_url, database)


@pytest_asyncio.fixture
async def empty_database_url(backend: Backend, tmp_path: Path) -> AsyncIterator[str]:
    """A new, empty database on the backend's server, for tests that build a schema (migrations)."""
    async with an_empty_database(backend, tmp_path, "empty") as url:
        yield url


# ---------------------------------------------------------------- engine and sessions


@pytest_asyncio.fixture(scope="session")
async def engine(backend: Backend) -> AsyncIterator[AsyncEngine]:
    """The app's own engine factory on this run's database, with every table created once.

    Tables are created here, outside any test transaction: MySQL/MariaDB commit DDL implicitly.
    """
    engine = create_engine(backend.settings())
    async with engine.begin() as conn:
        await conn.run_sync(SQLModel.metadata.create_all)
    yield engine
    await engine.dispose()


@pytest_asyncio.fixture
async def session_factory(engine: AsyncEngine) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions that really commit (concurrency, locks): what they wrote is deleted after."""
    factory = create_session_factory(engine)
    yield factory
    async with unit_of_work(factory) as session:
        await session.exec(delete(Hero))
        await session.exec(delete(Team))


@pytest_asyncio.fixture
async def session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with rolled_back_session(engine) as test_session:
        yield test_session


# ---------------------------------------------------------------- HTTP


@pytest_asyncio.fixture
async def client(backend: Backend, session: AsyncSession) -> AsyncIterator[AsyncClient]:
    """An HTTP client for the reference app with its lifespan running; nothing it writes stays.

    httpx's ASGITransport alone would skip the lifespan, so asgi-lifespan's LifespanManager runs it.
    """
    async with app_client(create_app(backend.settings()), session, get_session_factory) as http:
        yield http


# ---------------------------------------------------------------- per-backend summary


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    callspec = getattr(item, "callspec", None)
    backend = callspec.params.get("backend") if callspec else None
    report.backend = backend if isinstance(backend, str) else "-"  # NOTSET: no backend selected
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    counts: dict[str, dict[str, int]] = {}
    for outcome in ("passed", "failed", "skipped", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            if getattr(report, "when", "call") != "call" and outcome == "passed":
                continue
            backend = getattr(report, "backend", "-")
            per_backend = counts.setdefault(backend, {})
            per_backend[outcome] = per_backend.get(outcome, 0) + 1
    if not counts:
        return
    terminalreporter.section("tests per backend")
    for name in sorted(counts):
        label = "no database" if name == "-" else name
        parts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts[name].items()))
        terminalreporter.write_line(f"  {label:<12} {parts}")


# ---------------------------------------------------------------- the real app, real commits


@dataclass
class LiveApp:
    app: FastAPI
    client: AsyncClient
    engine: AsyncEngine


LiveAppFactory = Callable[..., AbstractAsyncContextManager[LiveApp]]


@pytest.fixture
async def live_app(backend: Backend, engine: AsyncEngine) -> AsyncIterator[LiveAppFactory]:
    """Start the real app (its own engine, real commits); tables are emptied afterwards."""

    @asynccontextmanager
    async def start(**settings: Any) -> AsyncIterator[LiveApp]:
        app = create_app(Settings.model_validate(backend.settings().model_dump() | settings))
        app.include_router(pitfall_router)
        engines: list[AsyncEngine] = []

        @app.get("/_engine", include_in_schema=False)
        async def capture_engine(request: Request) -> None:
            engines.append(request.state.engine)

        # raise_app_exceptions=False: a server error becomes a 500 response, as in production.
        async with (
            LifespanManager(app) as manager,
            AsyncClient(
                transport=ASGITransport(app=manager.app, raise_app_exceptions=False),
                base_url="http://test",
            ) as client,
        ):
            await client.get("/_engine")
            yield LiveApp(app, client, engines[0])

    try:
        yield start
    finally:
        async with unit_of_work(create_session_factory(engine)) as session:
            for model in (HeroPower, Hero, Power, Team):
                await session.exec(delete(model))


# ---------------------------------------------------------------- PgBouncer (PostgreSQL only)

PGBOUNCER_URL_ENV = "TEST_PGBOUNCER_URL"


@pytest_asyncio.fixture(scope="session")
async def pgbouncer_url(request: pytest.FixtureRequest, backend: Backend) -> str:
    """This run's PostgreSQL database through the transaction-mode PgBouncer that
    TEST_PGBOUNCER_URL names (`.ci/pgbouncer` starts one). It must log in as the
    TEST_POSTGRES_URL user: that user owns the tables. Skipped when unset, failed when required.
    """
    assert backend.name == "postgresql", "mark the test @pytest.mark.backends('postgresql')"

    raw_url = os.environ.get(PGBOUNCER_URL_ENV)
    if not raw_url:
        unavailable(request.config, f"PgBouncer unavailable: {PGBOUNCER_URL_ENV} is not set")
    url = make_url(str(raw_url)).set(database=backend.url.database)
    if url.username != backend.url.username:
        unavailable(
            request.config,
            f"PgBouncer unavailable: {PGBOUNCER_URL_ENV} must log in as"
            f" {backend.url.username!r}, the tables' owner",
        )
    import asyncpg  # type: ignore[import-untyped]  # the PostgreSQL driver: only needed here

    plain = url.set(drivername="postgresql").render_as_string(hide_password=False)
    try:  # reachable at all? (no named prepared statement: nothing to collide with)
        connection = await asyncpg.connect(plain, timeout=CONNECT_TIMEOUT, statement_cache_size=0)
        await connection.close()
    except Exception as exc:
        unavailable(request.config, f"PgBouncer unavailable: {type(exc).__name__}: {exc}")
    return url.render_as_string(hide_password=False)


# ---------------------------------------------------------------- a superuser (PostgreSQL only)

POSTGRES_ADMIN_URL_ENV = "TEST_POSTGRES_ADMIN_URL"


@pytest_asyncio.fixture(scope="session")
async def postgres_admin_url(request: pytest.FixtureRequest, backend: Backend) -> str:
    """This run's PostgreSQL database as the superuser TEST_POSTGRES_ADMIN_URL names, for what
    only a superuser may do (ALTER FUNCTION ... LEAKPROOF). Tests change this database only,
    never the server, and undo it. Skipped when unset, failed when required."""
    assert backend.name == "postgresql", "mark the test @pytest.mark.backends('postgresql')"

    raw_url = os.environ.get(POSTGRES_ADMIN_URL_ENV)
    if not raw_url:
        unavailable(
            request.config, f"PostgreSQL superuser unavailable: {POSTGRES_ADMIN_URL_ENV} is not set"
        )
    url = make_url(str(raw_url)).set(database=backend.url.database)
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT), engine.connect() as connection:
            superuser = (
                await connection.exec_driver_sql("SELECT current_setting('is_superuser')")
            ).scalar_one()
    except Exception as exc:
        unavailable(
            request.config, f"PostgreSQL superuser unavailable: {type(exc).__name__}: {exc}"
        )
    finally:
        await engine.dispose()
    if superuser != "on":
        unavailable(
            request.config,
            f"PostgreSQL superuser unavailable: {POSTGRES_ADMIN_URL_ENV} is not a superuser",
        )
    return url.render_as_string(hide_password=False)


# ---------------------------------------------------------------- a streaming replica (PostgreSQL)

REPLICA_URL_ENV = "TEST_REPLICA_URL"


@pytest_asyncio.fixture(scope="session")
async def replica_url(request: pytest.FixtureRequest, backend: Backend) -> str:
    """This run's PostgreSQL database on the hot standby that TEST_REPLICA_URL names
    (`.ci/replica` starts one). The database reaches the standby by replication, so this waits
    until it is there. Skipped when unset, failed when required."""
    assert backend.name == "postgresql", "mark the test @pytest.mark.backends('postgresql')"

    raw_url = os.environ.get(REPLICA_URL_ENV)
    if not raw_url:
        unavailable(request.config, f"replica unavailable: {REPLICA_URL_ENV} is not set")
    url = make_url(str(raw_url)).set(database=backend.url.database)
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with asyncio.timeout(30):
            while True:
                try:
                    async with engine.connect() as connection:
                        standby = (
                            await connection.exec_driver_sql("SELECT pg_is_in_recovery()")
                        ).scalar_one()
                    break
                except DBAPIError as exc:
                    if "does not exist" not in str(exc):  # not replicated yet: wait
                        raise
                await asyncio.sleep(0.1)
    except Exception as exc:
        unavailable(request.config, f"replica unavailable: {type(exc).__name__}: {exc}")
    finally:
        await engine.dispose()
    if not standby:
        unavailable(
            request.config,
            f"replica unavailable: {REPLICA_URL_ENV} is not a standby"
            " (pg_is_in_recovery() is false)",
        )
    return url.render_as_string(hide_password=False)
