"""MySQL/MariaDB through every URL form users write: mysql+aiomysql:// and mariadb+aiomysql://
(dialect name "mysql" or "mariadb"), with and without ?charset=utf8mb4, and URL.create().

The key behaviours hold for each: the engine's session settings, a model round trip with server
timestamps, the migrations and their lock, and the real UUID column type.
"""

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import URL
from sqlalchemy.exc import DataError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.schema import CreateTable
from sqlmodel import SQLModel

from examples.app.db import create_engine, create_session_factory
from examples.app.migrate import migration_engine
from examples.app.models import Hero, Team
from tests.conftest import Backend, create_database, drop_database
from tests.support import migrate_with, raw_rows

pytestmark = pytest.mark.backends("mysql")

FORMS = [
    "mysql+aiomysql://?charset=utf8mb4",
    "mysql+aiomysql://",
    "mariadb+aiomysql://?charset=utf8mb4",
    "mariadb+aiomysql://",
    "URL.create('mariadb+aiomysql', ...)",
]
LOCK_NAME = "async_sqlmodel_migrations"  # examples/app/migrations/env.py


@pytest_asyncio.fixture(params=FORMS)
async def url(request: pytest.FixtureRequest, backend: Backend) -> AsyncIterator[str]:
    """A new database on the MySQL/MariaDB server, named by one URL form."""
    assert backend.server_url is not None
    database = await create_database(backend.name, backend.server_url)
    server = backend.server_url
    form: str = request.param
    if form.startswith("URL.create"):
        built = URL.create(
            "mariadb+aiomysql",
            username=server.username,
            password=server.password,
            host=server.host,
            port=server.port,
            database=database,
        )
    else:
        driver, _, query = form.partition("://?")
        built = server.set(
            drivername=driver.removesuffix("://"),
            database=database,
            query=dict([query.split("=")]) if query else {},
        )
    try:
        yield built.render_as_string(hide_password=False)
    finally:
        await drop_database(backend.name, server, database)


async def session_settings(engine: AsyncEngine) -> tuple[str, str]:
    async with engine.connect() as connection:
        row = await connection.execute(
            text("SELECT @@session.time_zone, @@session.character_set_connection")
        )
        time_zone, charset = row.one()
    return time_zone, charset


async def test_the_engine_settings_are_in_force(backend: Backend, url: str) -> None:
    engine = create_engine(backend.settings(), url)
    try:
        assert await session_settings(engine) == ("+00:00", "utf8mb4")
        assert engine.pool._recycle == backend.settings().pool_recycle
    finally:
        await engine.dispose()


async def test_the_migration_engine_gets_the_same_session_settings(url: str) -> None:
    engine = migration_engine(url)
    try:
        assert await session_settings(engine) == ("+00:00", "utf8mb4")
    finally:
        await engine.dispose()


async def test_models_round_trip_with_server_timestamps(backend: Backend, url: str) -> None:
    engine = create_engine(backend.settings(), url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(SQLModel.metadata.create_all)
        async with create_session_factory(engine)() as session:
            team = Team(name="Preventers", headquarters="Sharp Tower")
            hero = Hero(name="Deadpond", secret_name="Dive Wilson", team=team)
            session.add(hero)
            await session.commit()
            hero_id = hero.id
        async with create_session_factory(engine)() as session:
            loaded = await session.get_one(Hero, hero_id)
            [(server_now,)] = await raw_rows(session, "SELECT UTC_TIMESTAMP(6)")
        assert loaded.created_at is not None
        assert loaded.created_at.utcoffset() == timedelta(0)
        assert abs(loaded.created_at.replace(tzinfo=None) - server_now) < timedelta(minutes=1)
        assert (loaded.id, loaded.name) == (hero_id, "Deadpond")
    finally:
        await engine.dispose()


async def test_migrations_take_the_lock_and_match_the_models(url: str) -> None:
    holder = create_async_engine(url, poolclass=NullPool)
    try:
        async with holder.connect() as other:  # another migrator holds the lock
            got = await other.execute(text("SELECT GET_LOCK(:name, 0)"), {"name": LOCK_NAME})
            assert got.scalar() == 1
            with pytest.raises(TimeoutError, match=r"migration lock .* not obtained within 1 s"):
                async with asyncio.timeout(30):  # a wait that ignores lock_timeout fails here
                    await migrate_with(url, "upgrade", "head", lock_timeout=1)
    finally:
        await holder.dispose()
    await migrate_with(url, "upgrade", "head")  # the lock is free again
    await migrate_with(url, "check")  # no drift between the models and the migrated schema


async def test_uuid_columns_are_native_uuid_on_mariadb(url: str) -> None:
    """MariaDB >= 10.7 gets UUID with either URL form (SQLAlchemy detects MariaDB on connect);
    MySQL gets CHAR(32)."""
    await migrate_with(url, "upgrade", "head")
    engine = migration_engine(url)
    try:
        async with engine.connect() as connection:
            version = (await connection.execute(text("SELECT VERSION()"))).scalar_one()
            rows = await connection.execute(
                text(
                    "SELECT table_name, column_name, column_type FROM information_schema.columns"
                    " WHERE table_schema = DATABASE() AND column_name IN ('id', 'mentor_id',"
                    " 'hero_id') AND table_name IN ('hero', 'hero_power') ORDER BY 1, 2"
                )
            )
            types = {(table, column): kind for table, column, kind in rows.all()}
    finally:
        await engine.dispose()
    native = "MariaDB" in version and tuple(map(int, version.split(".")[:2])) >= (10, 7)
    expected = "uuid" if native else "char(32)"
    assert types == {
        ("hero", "id"): expected,
        ("hero", "mentor_id"): expected,
        ("hero_power", "hero_id"): expected,
    }


async def test_a_mysql_schema_on_mariadb_needs_its_uuid_columns_converted(
    backend: Backend, url: str
) -> None:
    """CHAR(32) UUID columns (the DDL MySQL gets) used from MariaDB >= 10.7: SQLAlchemy binds the
    36-character form, which does not fit."""
    engine = create_engine(backend.settings(), url)
    try:
        async with engine.begin() as connection:
            version = (await connection.execute(text("SELECT VERSION()"))).scalar_one()
            if not connection.dialect.supports_native_uuid:
                pytest.skip(f"{version}: CHAR(32) is what this server gets anyway")
            for table in SQLModel.metadata.sorted_tables:  # as created on MySQL
                ddl = str(CreateTable(table).compile(dialect=mysql.dialect()))
                await connection.exec_driver_sql(ddl)
        async with create_session_factory(engine)() as session:
            session.add(Hero(name="Deadpond", secret_name="Dive Wilson"))
            with pytest.raises(DataError, match="1406, \"Data too long for column 'id'"):
                await session.commit()
        async with engine.begin() as connection:  # the fix: convert the columns (data too)
            for statement in (
                "ALTER TABLE hero_power DROP FOREIGN KEY fk_hero_power_hero_id_hero",
                "ALTER TABLE hero DROP FOREIGN KEY fk_hero_mentor_id_hero",
                "ALTER TABLE hero MODIFY id UUID NOT NULL, MODIFY mentor_id UUID NULL",
                "ALTER TABLE hero_power MODIFY hero_id UUID NOT NULL",
                "ALTER TABLE hero ADD CONSTRAINT fk_hero_mentor_id_hero FOREIGN KEY (mentor_id)"
                " REFERENCES hero (id) ON DELETE SET NULL",
                "ALTER TABLE hero_power ADD CONSTRAINT fk_hero_power_hero_id_hero"
                " FOREIGN KEY (hero_id) REFERENCES hero (id) ON DELETE CASCADE",
            ):
                await connection.exec_driver_sql(statement)
        async with create_session_factory(engine)() as session:
            hero = Hero(name="Deadpond", secret_name="Dive Wilson")
            session.add(hero)
            await session.commit()
            assert (await session.get_one(Hero, hero.id)).name == "Deadpond"
    finally:
        await engine.dispose()
