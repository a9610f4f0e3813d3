"""Test helpers shared by conftest.py and the tests that exercise them directly."""

import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.db import create_engine
from examples.app.migrate import ALEMBIC_INI, migration_engine
from examples.app.settings import Settings

ROOT = Path(__file__).parents[1]


async def raw_rows(session: AsyncSession, sql: str, **params: Any) -> list[Any]:
    """Plain SQL on the session's own connection and transaction (typed, unlike exec(text))."""
    connection = await session.connection()
    result = await connection.execute(text(sql), params)
    return list(result.all())


def alembic_config(**attributes: Any) -> Config:
    """The project's alembic.ini, with config.attributes (connection, target_metadata, ...)."""
    config = Config(ALEMBIC_INI)
    config.attributes.update(attributes)
    return config


async def migrate_with(url: str, name: str, *args: Any, **attributes: Any) -> None:
    """An Alembic command through the app's migration engine, with extra config attributes
    (e.g. lock_timeout) that examples.app.migrate.run does not take."""
    engine = migration_engine(url)
    try:
        async with engine.connect() as connection:

            def run_command(sync_connection: Connection) -> None:
                config = alembic_config(connection=sync_connection, **attributes)
                getattr(command, name)(config, *args)

            await connection.run_sync(run_command)
    finally:
        await engine.dispose()


def scripts_copy(tmp_path: Path) -> Path:
    """The app's migrations folder, copied: tests add revisions there, never to the real one."""
    scripts = tmp_path / "migrations"
    shutil.copytree(
        ROOT / "examples/app/migrations", scripts, ignore=shutil.ignore_patterns("__pycache__")
    )
    return scripts


async def run_in(scripts: Path, url: str, name: str, *args: Any, **options: Any) -> None:
    """An Alembic command against a copied scripts folder (migrate.run, another location)."""
    engine = migration_engine(url)
    try:
        async with engine.connect() as connection:

            def run_command(sync_connection: Connection) -> None:
                config = alembic_config(
                    connection=sync_connection, target_metadata=options.pop("metadata", None)
                )
                config.set_main_option("script_location", str(scripts))
                getattr(command, name)(config, *args, **options)

            await connection.run_sync(run_command)
    finally:
        await engine.dispose()


@asynccontextmanager
async def a_session_on_fresh_tables(url: str) -> AsyncIterator[AsyncSession]:
    """A session on a new database with the app's tables, none of their rows ever updated. An
    index a test creates on the run's shared tables can be unusable in the creating transaction:
    other tests' updates left HOT chains that an open snapshot still sees, so CREATE INDEX sets
    pg_index.indcheckxmin (reproduced: the plan is a seq scan even with enable_seqscan off)."""
    engine = create_engine(Settings(database_url=url))
    try:
        async with engine.begin() as connection:
            await connection.run_sync(SQLModel.metadata.create_all)
        async with AsyncSession(engine, expire_on_commit=False) as session:
            yield session
    finally:
        await engine.dispose()


@contextmanager
def captured(engine: sa.Engine) -> Iterator[list[tuple[str, Any]]]:
    """The SELECTs sent through `engine`, with their parameters as the driver gets them."""
    seen: list[tuple[str, Any]] = []

    def record(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, params))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def plan_of(session: AsyncSession, query: Callable[[], Awaitable[object]]) -> str:
    """EXPLAIN of the SQL `query` sends, sequential scans priced out (tables here are tiny)."""
    connection = await session.connection()
    await connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
    with captured(connection.sync_engine) as seen:
        await query()
    (statement, params), *_ = seen
    plan = await connection.exec_driver_sql("EXPLAIN " + statement, params)
    return "\n".join(plan.scalars())
