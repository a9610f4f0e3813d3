"""references/models.md#soft-delete-and-unique-columns: a partial unique index (PostgreSQL,
SQLite), what MariaDB does with it, and the ON CONFLICT it needs. The marker column the
reference app uses runs on every backend in tests/test_api.py and tests/test_servicebase.py."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.servicebase.errors import DatabaseError, classify
from examples.soft_delete_unique import Coupon, CouponBase, upsert_coupon
from tests.conftest import Backend


@pytest_asyncio.fixture
async def coupons(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with engine.begin() as connection:
        await connection.run_sync(CouponBase.metadata.create_all)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session:
            yield session
    finally:
        async with engine.begin() as connection:
            await connection.run_sync(CouponBase.metadata.drop_all)


async def add(session: AsyncSession, code: str, *, deleted: bool = False) -> None:
    session.add(Coupon(code=code, deleted_at=datetime.now(UTC) if deleted else None))
    await session.commit()


@pytest.mark.backends("sqlite", "postgresql", "psycopg")
async def test_a_partial_unique_index_frees_a_deleted_code(coupons: AsyncSession) -> None:
    await add(coupons, "SAVE10", deleted=True)
    await add(coupons, "SAVE10", deleted=True)  # any number of deleted rows
    await add(coupons, "SAVE10")  # and one live one
    with pytest.raises(IntegrityError) as taken:
        await add(coupons, "SAVE10")
    assert classify(taken.value) is DatabaseError.UNIQUE_VIOLATION
    await coupons.rollback()
    assert len((await coupons.exec(select(Coupon))).all()) == 3


@pytest.mark.backends("mysql")
async def test_mariadb_ignores_the_where_and_a_deleted_code_stays_taken(
    coupons: AsyncSession,
) -> None:
    await add(coupons, "SAVE10", deleted=True)
    with pytest.raises(IntegrityError) as taken:  # what the marker column in models.py avoids
        await add(coupons, "SAVE10")
    assert classify(taken.value) is DatabaseError.UNIQUE_VIOLATION


@pytest.mark.backends("sqlite", "postgresql", "psycopg")
async def test_on_conflict_needs_the_index_where(backend: Backend, coupons: AsyncSession) -> None:
    await add(coupons, "SAVE10", deleted=True)
    await add(coupons, "SAVE10")
    plain = sqlite.insert(Coupon) if backend.name == "sqlite" else None
    statement: Any = plain if plain is not None else sa.dialects.postgresql.insert(Coupon)
    statement = statement.values(code="SAVE10", percent=5).on_conflict_do_update(
        index_elements=[Coupon.code], set_={"percent": 5}
    )
    with pytest.raises(DBAPIError) as no_arbiter:
        await coupons.exec(statement)
    message = {
        "sqlite": "ON CONFLICT clause does not match any PRIMARY KEY or UNIQUE constraint",
        "postgresql": "there is no unique or exclusion constraint matching the ON CONFLICT",
    }[backend.name]
    assert message in str(no_arbiter.value.orig)
    await coupons.rollback()
    await upsert_coupon(coupons, "SAVE10", 20)
    await upsert_coupon(coupons, "NEW", 30)
    await coupons.commit()
    rows = await coupons.exec(select(Coupon.code, Coupon.percent, Coupon.deleted_at))
    assert sorted((code, percent, deleted is None) for code, percent, deleted in rows) == [
        ("NEW", 30, True),
        ("SAVE10", 0, False),  # the deleted row is left alone
        ("SAVE10", 20, True),
    ]


@pytest.mark.backends("sqlite", "postgresql", "psycopg")
async def test_autogenerate_sees_no_difference_for_the_partial_index(
    coupons: AsyncSession,
) -> None:
    def only_coupon(name: str | None, kind: str, parent: Any) -> bool:
        return kind != "table" or name == "coupon"  # the app's tables share the database

    def compare(connection: sa.Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"include_name": only_coupon})
        return list(compare_metadata(context, CouponBase.metadata))

    connection = await coupons.connection()
    assert await connection.run_sync(compare) == []


@pytest.mark.backends("sqlite")
async def test_the_walkthrough_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from examples.soft_delete_unique import main

    await main()
    assert capsys.readouterr().out.strip() == "[10, 20]"
