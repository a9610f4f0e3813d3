"""SQLite: BEGIN IMMEDIATE for every unit versus only for units that may write.

python -m benchmarks sqlite-locking

1. Concurrent read transactions, each holding its transaction for `hold` seconds: wall time when
   every unit begins IMMEDIATE (readers queue for the write lock) and when readers begin DEFERRED
   (db.READ_ONLY). Reported as a ratio.
2. Concurrent read-then-write units (SELECT a counter, then UPDATE it): how many fail with
   "database is locked" when they begin DEFERRED, and when they begin IMMEDIATE.
"""

import asyncio
import time
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from benchmarks.common import scratch_database
from examples.app.db import READ_ONLY, create_engine
from examples.app.settings import Settings

IMMEDIATE: dict[str, Any] = {}  # the default: configure_sqlite begins IMMEDIATE
DEFERRED: dict[str, Any] = {"sqlite_begin": "DEFERRED"}  # READ_ONLY's BEGIN, writes allowed


async def concurrent_reads(
    engine: AsyncEngine, options: dict[str, Any], readers: int, hold: float
) -> float:
    async def read() -> None:
        async with engine.connect() as connection:
            await connection.execution_options(**options)
            await connection.execute(text("SELECT count(*) FROM counter"))
            await asyncio.sleep(hold)  # a slow read: the transaction stays open
            await connection.rollback()

    started = time.perf_counter()
    await asyncio.gather(*(read() for _ in range(readers)))
    return time.perf_counter() - started


async def read_then_write(
    engine: AsyncEngine, options: dict[str, Any], units: int
) -> dict[str, int]:
    async def unit() -> bool:
        try:
            async with engine.connect() as connection:
                await connection.execution_options(**options)
                value = (await connection.execute(text("SELECT n FROM counter"))).scalar_one()
                await asyncio.sleep(0.001)  # the app does something with what it read
                await connection.execute(text("UPDATE counter SET n = :n"), {"n": value + 1})
                await connection.commit()
            return True
        except OperationalError as error:
            if "database is locked" not in str(error):
                raise
            return False

    async with engine.begin() as connection:
        await connection.execute(text("UPDATE counter SET n = 0"))
    outcomes = await asyncio.gather(*(unit() for _ in range(units)))
    async with engine.connect() as connection:
        final = (await connection.execute(text("SELECT n FROM counter"))).scalar_one()
    failed = outcomes.count(False)
    return {"units": units, "failed": failed, "final_counter": final}


async def main(*, readers: int = 3, hold: float = 1.0, units: int = 50) -> dict[str, Any]:
    async with scratch_database("sqlite") as url:
        settings = Settings(database_url=url.render_as_string(hide_password=False), pool_size=units)
        engine = create_engine(settings)
        try:
            async with engine.begin() as connection:
                await connection.execute(text("CREATE TABLE counter (n INTEGER NOT NULL)"))
                await connection.execute(text("INSERT INTO counter VALUES (0)"))
            immediate = await concurrent_reads(engine, IMMEDIATE, readers, hold)
            deferred = await concurrent_reads(engine, READ_ONLY, readers, hold)
            results: dict[str, Any] = {
                "reads": {
                    "readers": readers,
                    "hold_s": hold,
                    "all IMMEDIATE (s)": round(immediate, 3),
                    "readers DEFERRED (s)": round(deferred, 3),
                    "ratio": round(immediate / deferred, 2),
                },
                "read_then_write": {
                    "DEFERRED": await read_then_write(engine, DEFERRED, units),
                    "IMMEDIATE": await read_then_write(engine, IMMEDIATE, units),
                },
            }
        finally:
            await engine.dispose()
    reads = results["reads"]
    print(
        f"{readers} read transactions of {hold} s: all IMMEDIATE {reads['all IMMEDIATE (s)']} s, "
        f"readers DEFERRED {reads['readers DEFERRED (s)']} s (ratio {reads['ratio']})"
    )
    for mode, outcome in results["read_then_write"].items():
        print(
            f"{units} concurrent read-then-write units, BEGIN {mode}: {outcome['failed']} failed "
            f"with 'database is locked', counter ended at {outcome['final_counter']}"
        )
    return results
