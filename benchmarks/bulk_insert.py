"""Inserting 10,000 heroes: the ORM's unit of work against bulk statements and COPY
(`python -m benchmarks bulk-insert`).

Variants, interleaved (each round inserts a fresh batch per variant, one transaction each):
  add_all + flush          Hero objects through the unit of work (batched INSERT ... RETURNING)
  ServiceBase.create_many  validated HeroCreate items -> Hero objects -> add_all + flush
  ORM bulk insert()        session.execute(insert(Hero), list of dicts): insertmanyvalues, no
                           objects, no RETURNING
  asyncpg COPY             copy_records_to_table on the same connection (PostgreSQL; the ceiling)
Inputs are built before the clock starts: dicts, validated HeroCreate items (an API validates
the request whatever inserts it), COPY records; add_all's Hero objects are built on the clock.
The "gc" column is the time CPython's cyclic garbage collector ran inside each variant.
"""

import gc
import time
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from benchmarks.common import interleaved, report, save, scratch_database
from benchmarks.page_with_total import SECRET
from benchmarks.scenarios import hero_rows
from examples.app.db import create_engine, create_session_factory
from examples.app.models import Hero
from examples.app.schemas import HeroCreate
from examples.app.services import HeroService
from examples.app.settings import Settings

COLUMNS = ("id", "name", "secret_name", "age", "status", "attributes", "version")


class GcClock:
    """Seconds the cyclic GC ran since `reset()`."""

    def __init__(self) -> None:
        self.total = 0.0
        self._started = 0.0

    def __enter__(self) -> "GcClock":
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *_: object) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.total += time.perf_counter() - self._started


def with_gc_time(
    variants: dict[str, Callable[[], Awaitable[object]]], clock: GcClock
) -> tuple[dict[str, Callable[[], Awaitable[object]]], dict[str, list[float]]]:
    """The variants, each also recording how long the GC ran inside it."""
    samples: dict[str, list[float]] = {name: [] for name in variants}

    def wrap(name: str, call: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[object]]:
        async def timed() -> object:
            before = clock.total
            result = await call()
            samples[name].append(clock.total - before)
            return result

        return timed

    return {name: wrap(name, call) for name, call in variants.items()}, samples


def bulk_variants(
    engine: AsyncEngine, rows: int, batches: dict[str, list[list[dict[str, Any]]]]
) -> dict[str, Callable[[], Awaitable[object]]]:
    """Each call inserts the next prepared batch of its variant."""
    factory = create_session_factory(engine)
    prepared: dict[str, list[Any]] = {
        "add_all + flush": batches["add_all + flush"],
        "ServiceBase.create_many": [
            [HeroCreate.model_validate(row) for row in batch]
            for batch in batches["ServiceBase.create_many"]
        ],
        "ORM bulk insert(), list of dicts": batches["ORM bulk insert(), list of dicts"],
    }

    def take(name: str) -> Any:
        return prepared[name].pop()

    async def add_all() -> int:
        objects = [Hero(**row) for row in take("add_all + flush")]  # the ORM path needs them
        async with factory() as session, session.begin():
            session.add_all(objects)
            await session.flush()
        return len(objects)

    async def create_many() -> int:
        items = take("ServiceBase.create_many")
        async with factory() as session, session.begin():
            return len(await HeroService(session, cursor_secret=SECRET).create_many(items))

    async def orm_bulk() -> int:
        data = take("ORM bulk insert(), list of dicts")
        async with factory() as session, session.begin():
            await session.exec(sa.insert(Hero), params=data)
        return len(data)

    variants: dict[str, Callable[[], Awaitable[object]]] = {
        "add_all + flush": add_all,
        "ServiceBase.create_many": create_many,
        "ORM bulk insert(), list of dicts": orm_bulk,
    }
    if engine.dialect.name == "postgresql":
        import json

        prepared["asyncpg COPY"] = [
            [
                tuple(json.dumps(row[c]) if c == "attributes" else row[c] for c in COLUMNS)
                for row in batch
            ]
            for batch in batches["asyncpg COPY"]
        ]

        async def copy() -> int:
            records = take("asyncpg COPY")
            async with engine.begin() as connection:
                raw = await connection.get_raw_connection()
                driver: Any = raw.driver_connection
                await driver.copy_records_to_table("hero", records=records, columns=COLUMNS)
            return len(records)

        variants["asyncpg COPY"] = copy
    return variants


async def main(
    backend: str = "postgresql",
    rows: int = 10_000,
    repetitions: int = 7,
    *,
    save_results: bool = True,
) -> dict[str, Any]:
    results: dict[str, Any] = {"backend": backend, "rows": rows, "repetitions": repetitions}
    names = ["add_all + flush", "ServiceBase.create_many", "ORM bulk insert(), list of dicts"]
    if backend == "postgresql":
        names.append("asyncpg COPY")
    warmup = 1
    batches = {
        name: [hero_rows(rows, f"v{v}r{r}") for r in range(repetitions + warmup)]
        for v, name in enumerate(names)
    }
    async with scratch_database(backend) as url:
        engine = create_engine(Settings(database_url=url.render_as_string(hide_password=False)))
        try:
            async with engine.begin() as connection:
                await connection.run_sync(SQLModel.metadata.create_all)
            variants = bulk_variants(engine, rows, batches)
            with GcClock() as clock:
                timed, gc_samples = with_gc_time(variants, clock)
                timings = await interleaved(timed, repetitions, warmup=warmup)
            table = report(f"insert {rows:,} heroes", timings, "add_all + flush")
            base = timings.median_ms("add_all + flush")
            print(f"  {'variant':<34} {'rows/s':>10} {'speed-up':>9} {'gc ms':>7}")
            for name, row in table.items():
                median = timings.median_ms(name)
                gc_ms = sorted(gc_samples[name])[len(gc_samples[name]) // 2] * 1000
                row |= {
                    "rows_per_second": round(rows / median * 1000),
                    "speedup": round(base / median, 2),
                    "gc_ms": round(gc_ms, 1),
                }
                print(
                    f"  {name:<34} {row['rows_per_second']:>10,} {row['speedup']:>8.2f}x"
                    f" {gc_ms:>7.1f}"
                )
            results["variants"] = table
            async with engine.connect() as connection:
                stored = (await connection.execute(sa.text("SELECT count(*) FROM hero"))).scalar()
            if stored != rows * len(names) * (repetitions + warmup):
                raise SystemExit(f"expected {rows * len(names) * (repetitions + warmup)} rows")
            results["stored_rows"] = stored
        finally:
            await engine.dispose()
    if save_results:
        print(f"saved {save('bulk_insert', backend, results)}")
    return results
