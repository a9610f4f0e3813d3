"""Relationship loading, bulk inserts, pagination depth and count strategies, per backend.

Each scenario builds its own data in a scratch database and times its variants interleaved.
"""

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncAttrs, AsyncEngine, async_sessionmaker
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    joinedload,
    mapped_column,
    relationship,
    selectinload,
    subqueryload,
)
from sqlmodel import col, select

from benchmarks.common import interleaved, report
from examples.app.db import create_engine, create_session_factory
from examples.app.models import Hero
from examples.app.services import HeroService
from examples.app.settings import Settings
from examples.testing import counting_statements

SECRET = b"benchmark-cursor-secret-0123456789"


class Base(AsyncAttrs, DeclarativeBase):
    """Benchmark-only tables, with the default lazy="select" so N+1 can be measured."""


class Parent(Base):
    __tablename__ = "bench_parent"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(50))
    # The default lazy="select", on purpose: the N+1 variant needs it.
    children: Mapped[list["Child"]] = relationship(back_populates="parent")  # check: ignore[ASM006]


class Child(Base):
    __tablename__ = "bench_child"
    id: Mapped[int] = mapped_column(primary_key=True)
    parent_id: Mapped[int] = mapped_column(sa.ForeignKey("bench_parent.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(50))
    parent: Mapped[Parent] = relationship(back_populates="children")  # check: ignore[ASM006]


Variant = Callable[[], Awaitable[object]]


async def statements_of(engine: AsyncEngine, call: Variant) -> int:
    with counting_statements(engine) as log:
        await call()
    return log.count


# ---------------------------------------------------------------- 1. relationship loading


async def relationship_loading(engine: AsyncEngine, parents: int, children: int, reps: int) -> Any:
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
        await connection.execute(
            sa.insert(Parent), [{"id": p, "name": f"p{p}"} for p in range(1, parents + 1)]
        )
        await connection.execute(
            sa.insert(Child),
            [
                {"parent_id": p, "name": f"c{c}"}
                for p in range(1, parents + 1)
                for c in range(children)
            ],
        )
    factory = async_sessionmaker(engine, expire_on_commit=False)

    def with_option(option: Any) -> Variant:
        async def load() -> int:
            async with factory() as session:
                result = await session.scalars(sa.select(Parent).options(option))
                return sum(len(parent.children) for parent in result.unique())

        return load

    async def lazy_awaitable_attrs() -> int:  # the N+1 shape: one query per parent
        async with factory() as session:
            loaded = (await session.scalars(sa.select(Parent))).all()
            return sum([len(await parent.awaitable_attrs.children) for parent in loaded])

    variants: dict[str, Variant] = {
        "selectinload": with_option(selectinload(Parent.children)),
        "joinedload": with_option(joinedload(Parent.children)),
        "subqueryload": with_option(subqueryload(Parent.children)),
        "lazy (awaitable_attrs, N+1)": lazy_awaitable_attrs,
    }
    for name, call in variants.items():
        if await call() != parents * children:
            raise SystemExit(f"{name} loaded the wrong number of children")
    counts = {name: await statements_of(engine, call) for name, call in variants.items()}
    timings = await interleaved(variants, reps)
    rows = report(f"{parents} parents x {children} children", timings, "selectinload")
    for name in rows:
        rows[name]["statements"] = counts[name]
    return rows


# ---------------------------------------------------------------- 2. bulk insert


def hero_rows(count: int, tag: str) -> list[dict[str, Any]]:
    return [
        {
            "id": uuid.uuid4(),
            "name": f"{tag}-{i}",
            "secret_name": f"{tag}-secret-{i}",
            "age": i % 90,
            "status": "active",
            "attributes": {},
            "version": 1,
        }
        for i in range(count)
    ]


async def bulk_insert(engine: AsyncEngine, rows: int, url: str) -> Any:
    factory = create_session_factory(engine)

    async def add_all_flush(tag: str) -> None:
        async with factory() as session, session.begin():
            session.add_all(Hero(**row) for row in hero_rows(rows, tag))

    async def orm_bulk_insert(tag: str) -> None:
        async with factory() as session, session.begin():
            await session.exec(sa.insert(Hero), params=hero_rows(rows, tag))

    async def multi_values(tag: str) -> None:
        data = hero_rows(rows, tag)
        async with engine.begin() as connection:
            for start in range(0, rows, 2000):
                await connection.execute(sa.insert(Hero).values(data[start : start + 2000]))

    variants: dict[str, Callable[[str], Awaitable[None]]] = {
        "add_all + flush": add_all_flush,
        "ORM bulk insert(), list of dicts": orm_bulk_insert,
        "Core multi-VALUES, 2000 per statement": multi_values,
    }
    if engine.dialect.name == "postgresql":
        import asyncpg  # type: ignore[import-untyped]

        raw_url = sa.engine.make_url(url).set(drivername="postgresql")

        async def copy(tag: str) -> None:
            connection = await asyncpg.connect(raw_url.render_as_string(hide_password=False))
            try:
                data = hero_rows(rows, tag)
                columns = list(data[0])
                records = [
                    tuple("{}" if key == "attributes" else row[key] for key in columns)
                    for row in data
                ]
                await connection.copy_records_to_table("hero", records=records, columns=columns)
            finally:
                await connection.close()

        variants["asyncpg COPY (ceiling)"] = copy

    results: dict[str, dict[str, float]] = {}
    for name, insert in variants.items():
        started = time.perf_counter()
        await insert(f"t{len(results)}")
        elapsed = time.perf_counter() - started
        results[name] = {"seconds": round(elapsed, 2), "rows_per_second": round(rows / elapsed)}
    base = results["add_all + flush"]["rows_per_second"]
    print(f"\nbulk insert of {rows:,} rows  (speed-up = rows/s / rows/s of add_all + flush)")
    for name, row in results.items():
        row["speedup"] = round(row["rows_per_second"] / base, 2)
        print(f"  {name:<40} {row['rows_per_second']:>10,} rows/s {row['speedup']:>7.2f}x")
    return results


# ---------------------------------------------------------------- 3. pagination depth


async def pagination_depth(engine: AsyncEngine, reps: int, pages: tuple[int, ...]) -> Any:
    factory = create_session_factory(engine)
    limit, sort = 50, "name"  # indexed and NOT NULL: both strategies can walk the index
    cursors: dict[int, str | None] = {1: None}
    async with factory() as session:  # walk once to find each page's cursor
        service = HeroService(session, cursor_secret=SECRET)
        cursor = None
        for page in range(2, max(pages) + 1):
            cursor = (
                await service.page_by_cursor(sort=sort, limit=limit, cursor=cursor)
            ).next_cursor
            cursors[page] = cursor
            session.expunge_all()

    variants: dict[str, Variant] = {}
    for page in pages:

        async def by_offset(offset: int = (page - 1) * limit) -> object:
            # The page alone (ServiceBase.page adds a total, which costs the same on every page).
            async with factory() as session:
                statement = (
                    select(Hero).order_by(col(Hero.name), col(Hero.id)).offset(offset).limit(limit)
                )
                return (await session.exec(statement)).all()

        async def by_keyset(cursor: str | None = cursors[page]) -> object:
            async with factory() as session:
                service = HeroService(session, cursor_secret=SECRET)
                return await service.page_by_cursor(sort=sort, limit=limit, cursor=cursor)

        variants[f"offset, page {page}"] = by_offset
        variants[f"keyset, page {page}"] = by_keyset
    timings = await interleaved(variants, reps)
    return report(f"50-row pages sorted by {sort} (indexed)", timings, f"keyset, page {pages[0]}")


# ---------------------------------------------------------------- 4. count strategies


async def count_strategies(engine: AsyncEngine, reps: int) -> Any:
    """Core statements on a connection: the cost of each way to get a total."""
    results = {}
    hero = Hero.__table__  # type: ignore[attr-defined]  # Core: columns, not model attributes
    cases = (("small result (age = 42)", hero.c.age == 42), ("large result (all rows)", sa.true()))
    for label, where in cases:
        count = sa.select(sa.func.count()).select_from(hero).where(where)
        statements: dict[str, Any] = {
            "separate COUNT(*)": count,
            "COUNT(*) OVER ()": sa.select(hero.c.id, sa.func.count().over()).where(where).limit(50),
            "scalar subquery": sa.select(hero.c.id, count.scalar_subquery()).where(where).limit(50),
        }
        if engine.dialect.name == "postgresql":
            statements["estimate: pg_class.reltuples (whole table)"] = sa.text(
                "SELECT reltuples::bigint FROM pg_class WHERE relname = 'hero'"
            )

        def run(statement: Any) -> Variant:
            async def call() -> object:
                async with engine.connect() as connection:
                    return (await connection.execute(statement)).all()

            return call

        timings = await interleaved({name: run(s) for name, s in statements.items()}, reps)
        results[label] = report(f"count: {label}", timings, "separate COUNT(*)")
    return results


async def run_all(backend: str, url: str, *, quick: bool) -> dict[str, Any]:
    settings = Settings(database_url=url, pool_size=5)
    engine = create_engine(settings)
    try:
        from sqlmodel import SQLModel

        async with engine.begin() as connection:
            await connection.run_sync(SQLModel.metadata.create_all)
        results: dict[str, Any] = {"backend": backend}
        parents, children = (20, 5) if quick else (200, 50)
        results["relationships"] = await relationship_loading(
            engine, parents, children, 3 if quick else 20
        )
        rows = 2_000 if quick else 100_000
        results["bulk_insert"] = await bulk_insert(engine, rows, url)
        async with engine.begin() as connection:
            await connection.exec_driver_sql(
                "ANALYZE hero"
                if backend == "postgresql"
                else ("ANALYZE TABLE hero" if backend == "mysql" else "ANALYZE")
            )
        pages = (1, 10, 20) if quick else (1, 100, 1000)
        results["pagination"] = await pagination_depth(engine, 3 if quick else 30, pages)
        results["count"] = await count_strategies(engine, 3 if quick else 30)
        return results
    finally:
        await engine.dispose()
