"""Unique among live rows with a partial unique index (PostgreSQL and SQLite only).

The reference app's Hero uses a stored marker column instead (examples/app/models.py), which
works on MySQL/MariaDB too. Run on SQLite: python -m examples.soft_delete_unique
"""

import asyncio
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.types import UTCDateTime


class CouponBase(SQLModel, registry=registry(metadata=sa.MetaData())):
    """Its own metadata: these tables stay out of the reference app's migrations."""


# --8<-- [start:partial_unique]
LIVE = sa.text("deleted_at IS NULL")


class Coupon(CouponBase, table=True):
    # Unique among live rows: a deleted row leaves the index, its code can be taken again.
    # MySQL/MariaDB have no partial indexes and ignore *_where: a plain unique index results.
    __table_args__ = (
        sa.Index(
            "uq_coupon_code_live", "code", unique=True, postgresql_where=LIVE, sqlite_where=LIVE
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=20)
    percent: int = Field(default=0)
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


# --8<-- [end:partial_unique]


# --8<-- [start:upsert_partial]
async def upsert_coupon(session: AsyncSession, code: str, percent: int) -> None:
    """ON CONFLICT must name the index's WHERE too (index_where), or the database finds no
    unique index to arbitrate: a partial index only covers the rows its WHERE admits."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(Coupon).values(code=code, percent=percent)
    statement = statement.on_conflict_do_update(
        index_elements=[Coupon.code],
        index_where=col(Coupon.deleted_at).is_(None),
        set_={"percent": statement.excluded.percent},
    )
    await session.exec(statement)


# --8<-- [end:upsert_partial]


async def main(engine: AsyncEngine | None = None) -> None:
    engine = engine or create_async_engine("sqlite+aiosqlite://")
    async with engine.begin() as connection:
        await connection.run_sync(CouponBase.metadata.create_all)
    async with AsyncSession(engine, expire_on_commit=False) as session:
        old = Coupon(code="SAVE10", percent=10, deleted_at=datetime.now(UTC))
        session.add_all([old, Coupon(code="SAVE10", percent=15)])  # one deleted, one live
        await upsert_coupon(session, "SAVE10", 20)  # updates the live one
        await session.commit()
        rows = await session.exec(select(Coupon.percent).order_by(col(Coupon.percent)))
        print(rows.all())
    async with engine.begin() as connection:
        await connection.run_sync(CouponBase.metadata.drop_all)
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
