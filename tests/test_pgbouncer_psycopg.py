"""psycopg 3 through the real transaction-mode PgBouncer (`.ci/pgbouncer`)."""

import pytest
import pytest_asyncio
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from examples.app.db import create_engine
from tests.conftest import Backend

pytestmark = pytest.mark.backends("psycopg")

QUERY = text("SELECT count(*) FROM pg_class WHERE relname = :name")


@pytest_asyncio.fixture
async def psycopg_pgbouncer_url(pgbouncer_url: str) -> str:
    return (
        make_url(pgbouncer_url)
        .set(drivername="postgresql+psycopg")
        .render_as_string(hide_password=False)
    )


async def runs_after_another_client_took_its_server_connection(engine: AsyncEngine) -> None:
    """Six runs of one query, then a seventh while another client holds the server connection
    the first six ran on (PgBouncer hands out the last used one first): the seventh runs on
    another server connection."""
    holder_engine = create_async_engine(engine.url, poolclass=NullPool)
    try:
        async with engine.connect() as client:
            for _ in range(6):
                async with client.begin():
                    await client.execute(QUERY, {"name": "pg_class"})
            async with holder_engine.connect() as holder, holder.begin():
                await holder.execute(text("SELECT 1"))  # holds that server connection
                async with client.begin():
                    await client.execute(QUERY, {"name": "pg_class"})
    finally:
        await holder_engine.dispose()


async def test_psycopgs_default_prepared_statements_break_behind_pgbouncer(
    psycopg_pgbouncer_url: str,
) -> None:
    engine = create_async_engine(psycopg_pgbouncer_url, poolclass=NullPool)  # prepare_threshold 5
    try:
        with pytest.raises(DBAPIError, match=r'prepared statement "_pg3_\d+" does not exist'):
            await runs_after_another_client_took_its_server_connection(engine)
    finally:
        await engine.dispose()


async def test_the_apps_psycopg_engine_never_prepares_behind_pgbouncer(
    backend: Backend, psycopg_pgbouncer_url: str
) -> None:
    settings = backend.settings().model_copy(
        update={"pgbouncer": True, "database_url": SecretStr(psycopg_pgbouncer_url)}
    )
    engine = create_engine(settings)
    try:
        await runs_after_another_client_took_its_server_connection(engine)
        async with engine.connect() as connection, connection.begin():
            timeout = (await connection.execute(text("SHOW statement_timeout"))).scalar_one()
        assert timeout == "15s"  # SET LOCAL in the transaction: not a startup option here
    finally:
        await engine.dispose()
