"""Test helpers shared by conftest.py and the tests that exercise them directly."""

from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.migrate import ALEMBIC_INI, migration_engine


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
