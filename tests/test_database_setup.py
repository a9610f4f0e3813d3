"""references/database-setup.md: settings, engine, SQLite pragmas, session factory, lifespan."""

import pytest
from httpx import AsyncClient
from sqlalchemy import delete, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.db import create_session_factory
from examples.app.models import Hero, Team
from examples.app.settings import Settings
from examples.testing import counting_statements, hero_data, rolled_back_session
from tests.conftest import Backend


def test_settings_default_to_embedded_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    settings = Settings(_env_file=None)
    assert settings.database_url.get_secret_value() == "sqlite+aiosqlite:///./app.db"
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://app@db/app")
    settings = Settings(_env_file=None)
    assert settings.database_url.get_secret_value() == "postgresql+asyncpg://app@db/app"


async def test_engine_reaches_the_backend(backend: Backend, engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
    assert engine.dialect.name == backend.url.get_backend_name()  # "mariadb" for mariadb+...


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
