"""examples/servicebase is copied into users' packages: it must work under another name.

The copy runs in a subprocess that can't import `examples` at all, against a model of its own.
"""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import Backend

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "examples" / "servicebase"

MODELS = """
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import declared_attr
from sqlmodel import Field, SQLModel


class Gadget(SQLModel, table=True):
    __tablename__ = "copy_gadget"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=50, unique=True)
    price: int


class GadgetCreate(SQLModel):
    name: str
    price: int


class GadgetUpdate(SQLModel):
    name: str | None = None
    price: int | None = None


class Memo(SQLModel, table=True):  # for the soft-delete and versioning pieces
    __tablename__ = "copy_memo"
    id: int | None = Field(default=None, primary_key=True)
    text: str = Field(max_length=50)
    deleted_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    version: int = Field(default=1)

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        return {"version_id_col": cls.__table__.c.version}


class MemoCreate(SQLModel):
    text: str


class MemoUpdate(SQLModel):
    text: str | None = None
"""

SCRIPT = """
import asyncio
import os
import sys

sys.modules["examples"] = None  # the copy must not reach back into this repository

from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from shop.crud.errors import Conflict, NotFound
from shop.crud.filters import COMPARISON, TEXT, FilterField, FilterSpec
from shop.crud.service import ServiceBase
from shop.crud.transactions import unit_of_work
from shop.models import Gadget, GadgetCreate, GadgetUpdate, Memo, MemoCreate, MemoUpdate


class GadgetService(ServiceBase[Gadget, GadgetCreate, GadgetUpdate]):
    model = Gadget
    filters = FilterSpec(
        {
            "name": FilterField(Gadget.name, COMPARISON | TEXT, sortable=True),
            "price": FilterField(Gadget.price, COMPARISON, sortable=True),
        }
    )
    default_sort = "name"


async def main() -> None:
    engine = create_async_engine(os.environ["COPY_DATABASE_URL"])
    sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
    async with engine.begin() as conn:
        await conn.run_sync(SQLModel.metadata.drop_all)
        await conn.run_sync(SQLModel.metadata.create_all)
    try:
        async with unit_of_work(sessions) as session:
            gadgets = GadgetService(session)
            for name, price in [("a", 1), ("b", 5), ("c", 9), ("d", 12)]:
                await gadgets.create(GadgetCreate(name=name, price=price))
        async with unit_of_work(sessions) as session:
            gadgets = GadgetService(session)
            page = await gadgets.page(
                {"field": "price", "op": "gte", "value": 5}, sort="name", limit=2, offset=1
            )
            assert [g.name for g in page.items] == ["c", "d"], page
            assert page.total == 3, page
            c = page.items[0]
            assert (await gadgets.get(c.id)).price == 9
            updated = await gadgets.update(c.id, GadgetUpdate(price=10))
            assert updated.price == 10
        try:
            async with unit_of_work(sessions) as session:
                await GadgetService(session).create(GadgetCreate(name="a", price=0))
        except Conflict:
            pass
        else:
            raise AssertionError("duplicate name was not a Conflict")
        async with unit_of_work(sessions) as session:
            gadgets = GadgetService(session)
            c = await gadgets.get_one_or_none({"field": "name", "op": "eq", "value": "c"})
            assert c is not None and c.price == 10
            await gadgets.delete(c.id)
        async with unit_of_work(sessions) as session:
            gadgets = GadgetService(session)
            try:
                await gadgets.get(c.id)
            except NotFound:
                pass
            else:
                raise AssertionError("deleted gadget still found")
            assert await gadgets.count() == 3
{extra}    finally:
        async with engine.begin() as conn:
            await conn.run_sync(SQLModel.metadata.drop_all)
        await engine.dispose()
    print("COPY OK")


asyncio.run(main())
"""


def run_copy(backend: Backend, tmp_path: Path, keep: list[str] | None, extra: str = "") -> None:
    shop = tmp_path / "shop"
    shop.mkdir()
    (shop / "__init__.py").write_text("")
    ignore = None
    if keep is not None:
        wanted = {f"{name}.py" for name in keep} | {"__init__.py"}

        def ignore(directory: str, names: list[str]) -> set[str]:
            return {name for name in names if name.endswith(".py") and name not in wanted} | {
                name for name in names if name == "__pycache__"
            }

    shutil.copytree(PACKAGE, shop / "crud", ignore=ignore)
    (shop / "models.py").write_text(textwrap.dedent(MODELS))
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.replace("{extra}", extra))
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(tmp_path),  # not the repository
        "COPY_DATABASE_URL": backend.url_string,
    }
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "COPY OK" in result.stdout


CURSOR_WALK = """
            from shop.crud.cursors import CursorPages

            class FeedService(CursorPages[Gadget, GadgetCreate, GadgetUpdate], GadgetService):
                pass

            feed = FeedService(session, cursor_secret=b"copy-test-secret-0123456789")
            first = await feed.page_by_cursor(sort="price", limit=2)
            assert [g.name for g in first.items] == ["a", "b"], first
            rest = await feed.page_by_cursor(sort="price", limit=2, cursor=first.next_cursor)
            assert [g.name for g in rest.items] == ["d"], rest
"""


def test_the_whole_package_works_under_another_name(backend: Backend, tmp_path: Path) -> None:
    run_copy(backend, tmp_path, None, CURSOR_WALK)


CORE = ["errors", "filters", "pagination", "service", "transactions"]


def copied_modules(tmp_path: Path) -> list[str]:
    return sorted(p.stem for p in (tmp_path / "shop" / "crud").glob("*.py"))


def test_the_core_alone_works_without_a_cursor_secret(backend: Backend, tmp_path: Path) -> None:
    """Only the core modules copied: CRUD, filters, sorting, offset pages, errors."""
    run_copy(backend, tmp_path, CORE)
    assert copied_modules(tmp_path) == sorted([*CORE, "__init__"])


SOFT_DELETE = """
            from shop.crud.soft_delete import SoftDelete

            class MemoService(SoftDelete[Memo, MemoCreate, MemoUpdate]):
                model = Memo
                filters = FilterSpec({"text": FilterField(Memo.text, COMPARISON)})

            memos = MemoService(session)
            kept, gone = await memos.create_many([MemoCreate(text="kept"), MemoCreate(text="gone")])
            await memos.delete(gone.id)
            assert gone.deleted_at is not None
            assert [m.text for m in (await memos.page()).items] == ["kept"]
            assert await memos.count(include_deleted=True) == 2
            assert (await memos.restore(gone.id)).deleted_at is None
            await memos.delete(gone.id, hard=True)
            assert await memos.count(include_deleted=True) == 1
"""

VERSIONING = """
            from shop.crud.errors import StaleVersion
            from shop.crud.versioning import Versioned, etag, if_match_versions

            class MemoService(Versioned[Memo, MemoCreate, MemoUpdate]):
                model = Memo
                filters = FilterSpec({"text": FilterField(Memo.text, COMPARISON)})

            memos = MemoService(session)
            memo = await memos.create(MemoCreate(text="v1"))
            seen = if_match_versions(etag(memo.version))
            memo = await memos.update(memo.id, MemoUpdate(text="v2"), expected_version=seen)
            assert memo.version == 2
            try:
                await memos.update(memo.id, MemoUpdate(text="v3"), expected_version=seen)
            except StaleVersion:
                pass
            else:
                raise AssertionError("a stale version was overwritten")
"""

QUERY_PARAMS = """
            from shop.crud.query_params import filter_from_query, list_query_model

            Query = list_query_model("GadgetQuery", GadgetService.filters)
            query = Query.model_validate({"price__gte": "5", "sort": "-price"})
            page = await GadgetService(session).page(filter_from_query(query), sort=query.sort)
            assert [g.name for g in page.items] == ["d", "b"], page
"""

UPSERTS = """
            from shop.crud.upserts import Upserts

            class UpsertingGadgets(Upserts[Gadget, GadgetCreate, GadgetUpdate], GadgetService):
                pass

            gadgets = UpsertingGadgets(session)
            await gadgets.upsert(GadgetCreate(name="b", price=6), conflict=["name"])
            b = await gadgets.get_one_or_none({"field": "name", "op": "eq", "value": "b"})
            assert b is not None and b.price == 6
"""


@pytest.mark.parametrize(
    ("piece", "script"),
    [
        ("soft_delete", SOFT_DELETE),
        ("versioning", VERSIONING),
        ("query_params", QUERY_PARAMS),
        ("upserts", UPSERTS),
        ("web", "            from shop.crud.web import add_error_handlers  # noqa: F401\n"),
    ],
)
def test_each_opt_in_piece_works_on_the_core_alone(
    backend: Backend, tmp_path: Path, piece: str, script: str
) -> None:
    """The core plus one piece, nothing else: each adds to the core without edits."""
    run_copy(backend, tmp_path, [*CORE, piece], script)
    assert copied_modules(tmp_path) == sorted([*CORE, piece, "__init__"])
