"""tests/conftest.py for a one-database project (rename the app imports; testing.py is
tests/support.py). TEST_DATABASE_URL names the server: each run gets its own database."""

import os
from collections.abc import AsyncIterator

import pytest_asyncio
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.api.deps import get_session_factory
from examples.app.db import create_engine
from examples.app.main import create_app
from examples.app.migrate import upgrade
from examples.app.settings import Settings
from examples.testing import app_client, database_per_run, rolled_back_session


# --8<-- [start:conftest]
@pytest_asyncio.fixture(scope="session")
async def settings() -> AsyncIterator[Settings]:
    """This run's database, dropped at the end; the schema comes from the revisions."""
    async with database_per_run(os.environ["TEST_DATABASE_URL"]) as url:
        database_url = url.render_as_string(hide_password=False)
        await upgrade(database_url)
        yield Settings(database_url=database_url, cursor_secret="a test secret, 32 characters long")


@pytest_asyncio.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings)
    yield engine
    await engine.dispose()


@pytest_asyncio.fixture
async def session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with rolled_back_session(engine) as session:
        yield session


@pytest_asyncio.fixture
async def client(settings: Settings, session: AsyncSession) -> AsyncIterator[AsyncClient]:
    async with app_client(create_app(settings), session, get_session_factory) as client:
        yield client


# --8<-- [end:conftest]
