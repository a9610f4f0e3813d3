"""references/database-setup.md: settings, engine, SQLite pragmas, session factory, lifespan."""

import asyncio
import os
import sqlite3
import subprocess
import sys
from contextlib import closing, suppress
from pathlib import Path

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient
from pydantic import ValidationError
from sqlalchemy import delete, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.__main__ import DemoSettings, create_demo_database
from examples.app.db import READ_ONLY, create_engine, create_session_factory
from examples.app.factories import hero_data
from examples.app.main import create_app
from examples.app.models import Hero, Team
from examples.app.settings import Settings
from examples.servicebase.transactions import unit_of_work
from examples.testing import counting_statements, rolled_back_session
from tests.conftest import Backend, LiveAppFactory

ROOT = Path(__file__).parents[1]


def test_settings_require_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(ValidationError, match="DATABASE_URL is not set"):
        Settings(_env_file=None)
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://app@db/app")
    settings = Settings(_env_file=None)
    assert settings.database_url.get_secret_value() == "postgresql+asyncpg://app@db/app"


@pytest.mark.parametrize(
    "command",
    [
        ["-c", "from examples.app.main import create_app; create_app()"],
        ["-m", "examples.app.migrate", "upgrade"],
        ["-m", "alembic", "-c", str(ROOT / "alembic.ini"), "upgrade", "head"],
    ],
    ids=["app factory", "migrate", "alembic"],
)
def test_without_database_url_nothing_starts(command: list[str], tmp_path: Path) -> None:
    """No silent fallback: a clean environment fails with the message and creates no file."""
    result = subprocess.run(
        [sys.executable, *command],
        cwd=tmp_path,  # no .env here
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == (2 if "examples.app.migrate" in command else 1)
    assert "DATABASE_URL is not set" in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []  # no app.db


def test_migrate_finds_alembic_ini_as_the_alembic_command_does(tmp_path: Path) -> None:
    """In the working directory, else $ALEMBIC_CONFIG; never relative to where migrate.py lies."""
    database = tmp_path / "elsewhere.db"
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": f"sqlite+aiosqlite:///{database}",
    }

    def migrate(**extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "examples.app.migrate", "upgrade"],
            cwd=tmp_path,
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    missing = migrate()
    assert missing.returncode == 2
    assert "alembic.ini not found; run from the project root" in missing.stderr
    assert not database.exists()
    found = migrate(ALEMBIC_CONFIG=str(ROOT / "alembic.ini"))
    assert found.returncode == 0, found.stderr
    assert "Running upgrade" in found.stderr  # the ini's logging sections
    assert database.exists()


async def test_the_demo_has_explicit_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("CURSOR_SECRET", raising=False)
    settings = DemoSettings()
    assert settings.database_url.get_secret_value() == "sqlite+aiosqlite:///./app.db"
    await create_demo_database(settings)
    assert (tmp_path / "app.db").exists()
    async with (
        LifespanManager(create_app(settings)) as manager,
        AsyncClient(transport=ASGITransport(app=manager.app), base_url="http://test") as client,
    ):
        first = (await client.get("/heroes/feed", params={"limit": 1})).json()
        second = await client.get("/heroes/feed", params={"cursor": first["next_cursor"]})
    assert second.status_code == 200, second.text
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://app@db/app")
    assert DemoSettings().database_url.get_secret_value() == "postgresql+asyncpg://app@db/app"


async def test_engine_reaches_the_backend(backend: Backend, engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
    assert engine.dialect.name == backend.url.get_backend_name()  # "mariadb" for mariadb+...


@pytest.mark.parametrize(
    "url",
    [
        "sqlite+aiosqlite://",
        "sqlite+aiosqlite:///:memory:",
        "sqlite+aiosqlite:///file:shared_memory?mode=memory&cache=shared&uri=true",
    ],
)
async def test_create_engine_takes_every_in_memory_sqlite_url(url: str) -> None:
    engine = create_engine(Settings(database_url=url))
    try:
        async with engine.connect() as connection:
            assert (await connection.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await engine.dispose()


@pytest.mark.backends("sqlite")
async def test_sqlite_connections_get_the_pragmas(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        pragma = {
            name: (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar_one()
            for name in ("foreign_keys", "journal_mode", "busy_timeout")
        }
    assert pragma == {"foreign_keys": 1, "journal_mode": "wal", "busy_timeout": 5000}


async def count_teams(engine: AsyncEngine) -> int:
    async with create_session_factory(engine)() as session:
        return (await session.exec(select(func.count()).select_from(Team))).one()


async def test_rolled_back_session_undoes_commits_and_savepoints(engine: AsyncEngine) -> None:
    async with rolled_back_session(engine) as session:
        session.add(Team(name="Preventers", headquarters="Sharp Tower"))
        await session.commit()  # releases a savepoint only

        nested = await session.begin_nested()
        session.add(Team(name="Z-Force", headquarters="Sister Margaret's Bar"))
        await session.flush()
        await nested.rollback()

        names = (await session.exec(select(Team.name))).all()
        assert names == ["Preventers"]
    assert await count_teams(engine) == 0


async def test_session_factory_keeps_attributes_after_commit(engine: AsyncEngine) -> None:
    session_factory = create_session_factory(engine)
    try:
        async with session_factory() as session:
            team = Team(name="Preventers", headquarters="Sharp Tower")
            session.add(team)
            await session.commit()
        # No IO needed: the values loaded at flush are still there after commit and close.
        assert (team.id, team.name) == (team.id, "Preventers")
        assert team.id is not None
    finally:
        async with session_factory() as session:
            await session.exec(delete(Team))
            await session.commit()


async def test_statement_counter_ignores_transaction_plumbing(
    engine: AsyncEngine, session: AsyncSession
) -> None:
    with counting_statements(engine) as log:
        async with session.begin_nested():
            session.add(Team(name="Preventers", headquarters="Sharp Tower"))
        await session.exec(select(Team))
    assert log.count == 2, log.statements  # INSERT, SELECT; no SAVEPOINT / RELEASE


async def test_request_uses_the_session_dependency(
    client: AsyncClient, session: AsyncSession
) -> None:
    session.add(Team(name="Preventers", headquarters="Sharp Tower"))
    await session.commit()
    response = await client.get("/teams")
    assert response.status_code == 200
    assert [team["name"] for team in response.json()["items"]] == ["Preventers"]


async def test_factory_makes_valid_unique_rows(session: AsyncSession) -> None:
    first, second = hero_data(age=30), hero_data()
    assert first.secret_name != second.secret_name
    assert first.age == 30
    session.add_all([Hero.model_validate(first), Hero.model_validate(second)])
    await session.flush()


# ---------------------------------------------------------------- SQLite: who takes the write lock


def sqlite_path(backend: Backend) -> str:
    assert backend.url.database is not None
    return backend.url.database


@pytest.mark.backends("sqlite")
async def test_sqlite_read_only_units_read_at_the_same_time(
    backend: Backend, engine: AsyncEngine
) -> None:
    session_factory = create_session_factory(engine)
    async with (
        session_factory(execution_options=READ_ONLY) as first,
        session_factory(execution_options=READ_ONLY) as second,
    ):
        for session in (first, second):
            await session.exec(select(func.count()).select_from(Hero))  # a read transaction
        # SQLite's own state: both connections are inside a transaction right now ...
        raw = [await (await s.connection()).get_raw_connection() for s in (first, second)]
        states = [c.driver_connection.in_transaction if c.driver_connection else None for c in raw]
        assert states == [True, True]
        # ... and neither holds the write lock: a third connection takes it without waiting.
        with closing(sqlite3.connect(sqlite_path(backend), isolation_level=None)) as writer:
            writer.execute("PRAGMA busy_timeout=0")
            writer.execute("BEGIN IMMEDIATE")
            writer.execute("ROLLBACK")


@pytest.mark.backends("sqlite")
async def test_sqlite_write_units_take_the_lock_first_so_read_then_write_does_not_fail(
    engine: AsyncEngine,
) -> None:
    session_factory = create_session_factory(engine)  # no READ_ONLY: a unit that may write
    second_has_read = asyncio.Event()

    async def rename(session: AsyncSession, name: str) -> None:
        team = (await session.exec(select(Team))).one()
        team.headquarters = name
        await session.flush()

    async def second_unit() -> None:
        async with session_factory() as session, session.begin():
            await session.exec(select(func.count()).select_from(Team))
            second_has_read.set()  # with BEGIN IMMEDIATE only after the first unit committed
            await rename(session, "second")

    try:
        async with unit_of_work(session_factory) as session:
            session.add(Team(name="Preventers", headquarters="Sharp Tower"))
        async with session_factory() as session, session.begin():
            await rename(session, "first")
            second = asyncio.create_task(second_unit())
            with suppress(TimeoutError):  # BEGIN DEFERRED would let it read (and later fail)
                await asyncio.wait_for(second_has_read.wait(), 0.5)
        await second  # BEGIN DEFERRED: sqlite3.OperationalError: database is locked
        async with session_factory() as session:
            assert (await session.exec(select(Team.headquarters))).one() == "second"
    finally:
        async with unit_of_work(session_factory) as session:
            await session.exec(delete(Team))


@pytest.mark.backends("sqlite")
async def test_sqlite_read_then_write_in_a_deferred_unit_fails_at_once(
    engine: AsyncEngine,
) -> None:
    """Why write units begin IMMEDIATE: busy_timeout doesn't cover a read lock's upgrade."""
    session_factory = create_session_factory(engine)
    async with (
        session_factory(execution_options={"sqlite_begin": "DEFERRED"}) as reader,  # may write
        session_factory() as writer,
        writer.begin(),
    ):
        await reader.exec(select(func.count()).select_from(Team))
        writer.add(Team(name="Preventers", headquarters="Sharp Tower"))
        await writer.flush()  # holds the write lock, uncommitted
        reader.add(Team(name="Z-Force", headquarters="Sister Margaret's Bar"))
        with pytest.raises(OperationalError, match="database is locked") as caught:
            await reader.flush()  # no 5 s busy wait: fails at once
        assert caught.value.orig.sqlite_errorcode == 5  # type: ignore[union-attr]  # SQLITE_BUSY
        await writer.rollback()


@pytest.mark.usefixtures("engine")  # the tables
async def test_a_write_in_a_read_only_unit_fails_at_once(backend: Backend) -> None:
    """On SQLite READ_ONLY (every GET) refuses writes without any other writer around, and the
    pooled connection it used writes again in the next unit. Other backends don't enforce it."""
    settings = backend.settings().model_copy(update={"pool_size": 1, "max_overflow": 0})
    engine = create_engine(settings)  # one connection: both units get the same one
    session_factory = create_session_factory(engine)
    try:
        async with session_factory(execution_options=READ_ONLY) as session:
            session.add(Team(name="Read Only", headquarters="Nowhere"))
            raw = await (await session.connection()).get_raw_connection()
            first_connection = raw.driver_connection
            if backend.name == "sqlite":
                with pytest.raises(OperationalError) as caught:
                    await session.flush()  # no 5 s busy wait, no other writer: at once
                assert "attempt to write a readonly database" in str(caught.value)
                assert caught.value.orig.sqlite_errorcode == 8  # type: ignore[union-attr]
            else:
                await session.flush()  # accepted: the label is SQLite-only
            await session.rollback()
        async with unit_of_work(session_factory) as session:
            session.add(Team(name="Writable", headquarters="Somewhere"))
            raw = await (await session.connection()).get_raw_connection()
            assert raw.driver_connection is first_connection
        async with session_factory(execution_options=READ_ONLY) as session:
            teams = await session.exec(select(Team.name).where(Team.name == "Writable"))
            assert teams.all() == ["Writable"]  # reads still work
    finally:
        async with unit_of_work(session_factory) as session:
            await session.exec(delete(Team))
        await engine.dispose()


@pytest.mark.backends("sqlite")
async def test_sqlite_query_only_costs_a_statement_per_switch(backend: Backend) -> None:
    settings = backend.settings().model_copy(update={"pool_size": 1, "max_overflow": 0})
    engine = create_engine(settings)  # one pooled connection for every unit
    sent: list[str] = []
    try:
        async with engine.connect() as connection:  # a write unit: query_only stays off
            raw = await connection.get_raw_connection()
            assert raw.driver_connection is not None
            await raw.driver_connection.set_trace_callback(sent.append)  # what SQLite runs
        pragmas = []
        for options in (READ_ONLY, READ_ONLY, {}, {}, READ_ONLY):
            sent.clear()
            async with engine.connect() as connection:
                await connection.execution_options(**options)
                await connection.execute(text("SELECT 1"))
            pragmas.append([s for s in sent if s.startswith("PRAGMA")])
            assert sent[-3:-1] == [
                "BEGIN DEFERRED" if options else "BEGIN IMMEDIATE",
                "SELECT 1",
            ]
    finally:
        await engine.dispose()
    on, off = ["PRAGMA query_only = ON"], ["PRAGMA query_only = OFF"]
    assert pragmas == [on, [], off, [], on]


@pytest.mark.backends("sqlite")
async def test_sqlite_get_requests_and_health_answer_while_a_writer_holds_the_lock(
    backend: Backend, live_app: LiveAppFactory
) -> None:
    async with live_app() as live:
        with closing(sqlite3.connect(sqlite_path(backend), isolation_level=None)) as writer:
            writer.execute("BEGIN IMMEDIATE")  # a long write transaction elsewhere
            try:
                response = await live.client.get("/heroes")  # BEGIN IMMEDIATE: 5 s, then locked
                assert response.status_code == 200, response.text
                health = await live.client.get("/health/ready")  # BEGIN IMMEDIATE: 503 after 2 s
                assert health.status_code == 200, health.text
            finally:
                writer.execute("ROLLBACK")


@pytest.mark.backends("sqlite")
async def test_sqlite_lower_index_means_the_same_in_every_program(
    backend: Backend, engine: AsyncEngine
) -> None:
    """The app registers unicode_lower and leaves lower() alone: an index on lower(name) built
    by the app is the index another program (sqlite3 CLI, a backup tool) expects."""
    async with engine.begin() as conn:
        await conn.exec_driver_sql("CREATE TABLE probe (name TEXT)")
        await conn.exec_driver_sql("CREATE INDEX ix_probe_lower_name ON probe (lower(name))")
        await conn.exec_driver_sql("INSERT INTO probe VALUES ('Éclair')")
    try:
        with closing(sqlite3.connect(sqlite_path(backend))) as other:  # no functions registered
            # With lower() overridden: [('row 1 missing from index ix_probe_lower_name',)]
            assert other.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            found = other.execute("SELECT name FROM probe WHERE lower(name) = 'Éclair'").fetchall()
            assert found == [("Éclair",)]  # SQLite's lower() folds ASCII only
        async with engine.connect() as conn:
            folded = (await conn.exec_driver_sql("SELECT unicode_lower(name) FROM probe")).scalar()
            assert folded == "éclair"  # the Unicode-aware one, under its own name
    finally:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("DROP TABLE probe")
