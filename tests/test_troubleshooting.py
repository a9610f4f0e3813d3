"""Reproductions for references/troubleshooting.md entries not covered by other tests."""

import gc
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, Optional

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.util import CommandError
from fastapi import FastAPI, Request
from httpx import ASGITransport, AsyncClient
from sqlalchemy import event
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import registry
from sqlmodel import Field, Relationship, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.migrate import migration_engine
from examples.app.models import Hero
from tests.support import alembic_config


async def test_asyncclient_app_argument_is_gone() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'app'"):
        AsyncClient(app=FastAPI())  # type: ignore[call-arg]


def test_event_listeners_on_the_async_engine_fail() -> None:
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    with pytest.raises(NotImplementedError, match="asynchronous events are not implemented"):
        event.listen(engine, "connect", lambda *args: None)


async def test_without_the_lifespan_there_is_no_state() -> None:
    app = FastAPI(lifespan=None)

    @app.get("/")
    async def read(request: Request) -> Any:
        return request.state.session_factory

    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client:
        with pytest.raises(AttributeError, match="'State' object has no attribute"):
            await client.get("/")


def test_statikpool_memory_database_takes_no_pool_size() -> None:
    with pytest.raises(TypeError, match="Invalid argument\\(s\\) 'pool_size'"):
        create_async_engine("sqlite+aiosqlite:///:memory:", pool_size=5)


def test_a_percent_in_the_url_breaks_alembic_config() -> None:
    config = alembic_config()
    with pytest.raises(ValueError, match="invalid interpolation syntax"):
        config.set_main_option("sqlalchemy.url", "postgresql+asyncpg://app:p%40ss@db/app")


async def test_alembic_check_needs_a_database_at_head(empty_database_url: str) -> None:
    engine = migration_engine(empty_database_url)
    try:
        async with engine.connect() as connection:

            def check(sync_connection: sa.Connection) -> None:
                command.check(alembic_config(connection=sync_connection))

            with pytest.raises(CommandError, match="Target database is not up to date"):
                await connection.run_sync(check)
    finally:
        await engine.dispose()


# env.py's un-run coroutine is collected here, where the warning belongs.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
async def test_alembic_commands_cannot_start_their_own_loop_inside_one() -> None:
    config = alembic_config(database_url="sqlite+aiosqlite:///:memory:")
    with pytest.raises(RuntimeError, match="cannot be called from a running event loop"):
        command.upgrade(config, "head")
    gc.collect()


def test_a_quoted_union_annotation_is_not_resolved() -> None:
    isolated = registry(metadata=sa.MetaData())

    class Base(SQLModel, registry=isolated):
        pass

    class Node(Base, table=True):
        id: int | None = Field(default=None, primary_key=True)
        parent_id: int | None = Field(default=None, foreign_key="node.id")
        parent: "Node | None" = Relationship(  # the pitfall; Optional["Node"] resolves
            sa_relationship_kwargs={"remote_side": "Node.id"}
        )

    with pytest.raises(InvalidRequestError, match="failed to locate a name"):
        isolated.configure()


FUTURE_ANNOTATIONS_MODEL = """
from __future__ import annotations

class Node(Base, table=True):
    id: int | None = Field(default=None, primary_key=True)
    parent_id: int | None = Field(default=None, foreign_key="node.id")
    parent: {annotation} = Relationship(sa_relationship_kwargs={{"remote_side": "Node.id"}})
"""


@pytest.mark.parametrize(
    ("annotation", "error"),
    [
        ("Node | None", r"expression 'Node \| None' failed to locate a name"),
        ("Optional[Node]", "seems to be using a generic class as the argument to relationship"),
        ("list[Node]", "seems to be using a generic class as the argument to relationship"),
    ],
)
def test_future_annotations_break_relationships(annotation: str, error: str) -> None:
    """Under `from __future__ import annotations` every annotation is a string: SQLModel
    resolves a bare class name, no union or generic."""
    isolated = registry(metadata=sa.MetaData())

    class Base(SQLModel, registry=isolated):
        pass

    namespace: dict[str, Any] = {
        "Base": Base,
        "Field": Field,
        "Relationship": Relationship,
        "Optional": Optional,
        "__name__": "models_with_future_annotations",
    }
    exec(FUTURE_ANNOTATIONS_MODEL.format(annotation=annotation), namespace)
    with pytest.raises(InvalidRequestError, match=error):
        isolated.configure()


async def test_session_execute_is_deprecated_on_sqlmodel_sessions(session: AsyncSession) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await session.execute(select(Hero))  # the SQLAlchemy API; SQLModel wants exec()
    assert any(issubclass(w.category, DeprecationWarning) for w in caught)


def test_without_greenlet_importing_the_asyncio_extension_fails() -> None:
    """The ImportError comes at `import sqlalchemy.ext.asyncio`, not at the first query.

    The message quoted in references/troubleshooting.md is the one the import raises.
    """
    program = (
        "import sys\n"
        "sys.modules['greenlet'] = None  # as if greenlet were not installed\n"
        "import sqlalchemy, sqlmodel  # the sync parts import fine\n"
        "print('sync ok', flush=True)\n"
        "import sqlalchemy.ext.asyncio\n"
        "print('asyncio extension imported')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert result.stdout == "sync ok\n"
    raised = result.stderr.strip().splitlines()[-1]
    assert raised.startswith("ImportError: The SQLAlchemy asyncio module requires")
    reference = (Path(__file__).parents[1] / "references" / "troubleshooting.md").read_text()
    assert f"**`{raised}`**" in reference
