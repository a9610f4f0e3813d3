"""references/testing.md: examples/testing.py works when copied into another project."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI
from httpx import AsyncClient
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.db import configure_sqlite, create_session_factory
from examples.app.models import Team
from examples.servicebase.transactions import unit_of_work
from examples.testing import app_client, rolled_back_session, run_database_url
from tests.conftest import Backend

ROOT = Path(__file__).parents[1]

TINY_APP = '''
"""A user's app: its own package, its own names, nothing from examples/."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession


class Item(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=50)


def make_engine(url: str) -> AsyncEngine:
    engine = create_async_engine(url)
    if engine.dialect.name == "sqlite":  # database-setup.md: SQLAlchemy emits BEGIN itself
        sync = engine.sync_engine
        event.listen(sync, "connect", lambda c, _r: setattr(c, "isolation_level", None))
        event.listen(sync, "begin", lambda c: c.exec_driver_sql("BEGIN"))
    return engine


def build(url: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, object]]:
        engine = make_engine(url)
        yield {"factory": async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)}
        await engine.dispose()

    def sessions(request: Request) -> async_sessionmaker[AsyncSession]:
        return request.state.factory  # type: ignore[no-any-return]

    async def session(
        factory: Annotated[async_sessionmaker[AsyncSession], Depends(sessions)],
    ) -> AsyncIterator[AsyncSession]:
        async with factory() as s, s.begin():
            yield s

    app = FastAPI(lifespan=lifespan)
    app.state.sessions = sessions

    @app.post("/items", status_code=201)
    async def add(
        name: str, s: Annotated[AsyncSession, Depends(session, scope="function")]
    ) -> dict[str, str]:
        s.add(Item(name=name))
        return {"name": name}

    @app.get("/items")
    async def items(s: Annotated[AsyncSession, Depends(session)]) -> list[str]:
        return list((await s.exec(select(Item.name).order_by(Item.name))).all())

    return app
'''

SCRIPT = """
import asyncio, os, sys

sys.modules["examples"] = None  # type: ignore[assignment]  # any import of examples.* fails

from sqlalchemy import text
from sqlmodel import SQLModel

from myproject.app import build, make_engine
from myproject.tests.support import (
    app_client, counting_statements, database_per_run, rolled_back_session,
)


async def main(url: str) -> None:
    async with database_per_run(url) as test_url:
        print("DATABASE", test_url.database, "PID", os.getpid())
        engine = make_engine(test_url.render_as_string(hide_password=False))
        async with engine.begin() as conn:
            await conn.run_sync(SQLModel.metadata.create_all)
        app = build(test_url.render_as_string(hide_password=False))
        for _ in range(2):  # the second run sees nothing of the first
            async with rolled_back_session(engine) as session:
                async with app_client(app, session, app.state.sessions) as client:
                    assert (await client.post("/items", params={"name": "a"})).status_code == 201
                    with counting_statements(engine) as log:
                        assert (await client.get("/items")).json() == ["a"]
                    assert log.count == 1, log.statements
        await engine.dispose()
    print("DROPPED")


asyncio.run(main(sys.argv[1]))
"""


def test_testing_py_copied_into_another_package_works_unchanged(
    backend: Backend, tmp_path: Path
) -> None:
    package = tmp_path / "myproject"
    (package / "tests").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "tests" / "__init__.py").write_text("")
    (package / "app.py").write_text(textwrap.dedent(TINY_APP))
    shutil.copy(ROOT / "examples" / "testing.py", package / "tests" / "support.py")
    (tmp_path / "run.py").write_text(textwrap.dedent(SCRIPT))
    if backend.server_url is None:
        url = f"sqlite+aiosqlite:///{tmp_path}/myapp.db"
    else:
        url = backend.server_url.set(database="myapp").render_as_string(hide_password=False)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "run.py", url],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "DROPPED" in result.stdout
    name = result.stdout.split("DATABASE ", 1)[1].split()[0]
    assert Path(name).name.startswith(f"myapp_test_{result.stdout.split('PID ')[1].split()[0]}_")
    if backend.server_url is None:
        assert name.endswith(".db")
        assert not list(tmp_path.glob("myapp_test_*")), "the SQLite file was not removed"


def test_run_database_url_keeps_server_and_derives_the_name() -> None:
    url = run_database_url("postgresql+asyncpg://u:p@db.example:5433/shop?ssl=require")
    assert (url.host, url.port, url.username, url.query) == (
        "db.example",
        5433,
        "u",
        {"ssl": "require"},
    )
    assert url.database is not None
    assert url.database.startswith(f"shop_test_{os.getpid()}_")
    sqlite = run_database_url("sqlite+aiosqlite:////srv/data/shop.db").database
    assert sqlite is not None
    assert sqlite.startswith("/srv/data/shop_test_")
    assert sqlite.endswith(".db")


async def test_health_ready_answers_while_the_test_session_holds_the_write_lock(
    client: AsyncClient,
) -> None:
    created = await client.post("/heroes", json={"name": "Locker", "secret_name": "s"})
    assert created.status_code == 201
    ready = await client.get("/health/ready")
    assert ready.status_code == 200, ready.text


@pytest.mark.backends("sqlite")
async def test_own_session_write_waits_for_the_test_session_on_sqlite(
    engine: AsyncEngine,
) -> None:
    """Code that opens its own session on the app's engine can't write under the test session."""
    other = create_async_engine(engine.url)
    configure_sqlite(other, busy_timeout_ms=50)
    try:
        async with rolled_back_session(engine) as session:
            session.add(Team(name="held", headquarters="x"))
            await session.flush()
            with pytest.raises(OperationalError, match="database is locked"):
                async with unit_of_work(create_session_factory(other)) as own:
                    own.add(Team(name="own", headquarters="y"))
    finally:
        await other.dispose()


async def test_a_sqlite_engine_without_the_begin_handling_is_refused(tmp_path: Path) -> None:
    """Without it the driver defers BEGIN, savepoints don't roll back and a test's rows stay."""
    plain = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'plain.db'}")
    try:
        with pytest.raises(RuntimeError, match="Add the BEGIN handling"):
            async with rolled_back_session(plain):
                pass
    finally:
        await plain.dispose()


USER_TESTS = """
from sqlmodel import select

from examples.app.models import Team


async def test_a_request_and_the_session_see_the_same_transaction(client, session):
    created = await client.post("/teams", json={"name": "Kit", "headquarters": "HQ"})
    assert created.status_code == 201, created.text
    assert (await session.exec(select(Team.name))).all() == ["Kit"]


async def test_the_previous_test_left_nothing(session):
    assert (await session.exec(select(Team))).all() == []
"""

PYTEST_INI = """[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = session
asyncio_default_test_loop_scope = session
filterwarnings = error
"""


def test_the_one_database_conftest_runs_as_a_conftest(backend: Backend, tmp_path: Path) -> None:
    """examples/testing_conftest.py copied to tests/conftest.py of a scratch project, run by a
    pytest of its own against this backend's server: migrated database, rollback per test."""
    tests = tmp_path / "tests"
    tests.mkdir()
    shutil.copy(ROOT / "examples" / "testing_conftest.py", tests / "conftest.py")
    (tests / "test_user.py").write_text(USER_TESTS)
    (tmp_path / "pytest.ini").write_text(PYTEST_INI)
    if backend.server_url is None:
        url = f"sqlite+aiosqlite:///{tmp_path}/kit.db"
    else:
        url = backend.server_url.set(database="kit").render_as_string(hide_password=False)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TEST_DATABASE_URL": url,
        "ALEMBIC_CONFIG": str(ROOT / "alembic.ini"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:pytest_alembic"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def app_sessions() -> async_sessionmaker[AsyncSession]:
    raise AssertionError("overridden by app_client")


info_app = FastAPI()


@info_app.get("/info")
async def session_info(
    sessions: Annotated[async_sessionmaker[AsyncSession], Depends(app_sessions)],
) -> dict[str, int]:
    async with sessions() as inner:
        return {"tenant": inner.info["tenant"]}


@pytest.mark.backends("sqlite")
async def test_app_client_keeps_the_apps_own_session_factory_options(session: AsyncSession) -> None:
    # A tenant-scoped app's factory (sync_session_class, info): the override must keep them, or
    # the app's tests run without its scoping and prove nothing.
    async with app_client(info_app, session, app_sessions, info={"tenant": 7}) as client:
        assert (await client.get("/info")).json() == {"tenant": 7}
