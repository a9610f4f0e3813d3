"""How long a commit on the primary takes to become visible on the hot standby.

Each round commits one row on the primary, then reads the standby until the row is there (a
tight loop of single-row SELECTs). Baseline: one SELECT round trip on the primary, measured in
the same rounds. Needs TEST_POSTGRES_URL and TEST_REPLICA_URL (`.ci/replica` starts a standby).
"""

import asyncio
import os
import statistics
import time
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlmodel import SQLModel, col, select

from benchmarks.common import save, scratch_database
from examples.app.db import create_engine, create_session_factory
from examples.app.models import Team
from examples.app.settings import Settings
from examples.servicebase.transactions import unit_of_work


async def main(rounds: int, *, save_results: bool = True) -> dict[str, Any]:
    raw_replica = os.environ.get("TEST_REPLICA_URL")
    if not raw_replica:
        raise SystemExit("set TEST_REPLICA_URL to the standby (bash .ci/replica starts one)")
    async with scratch_database("postgresql") as url:
        settings = Settings(database_url=url.render_as_string(hide_password=False))
        replica_url = make_url(raw_replica).set(database=url.database)
        primary = create_engine(settings)
        replica = create_engine(settings, replica_url.render_as_string(hide_password=False))
        try:
            async with primary.begin() as connection:
                await connection.run_sync(SQLModel.metadata.create_all)
            await replicated(replica)
            results = await measure(primary, replica, rounds)
        finally:
            await primary.dispose()
            await replica.dispose()
    if save_results:
        print(f"saved {save('replica-lag', 'postgresql', results)}")
    return results


async def replicated(replica: Any) -> None:
    """Wait until the new database and its tables have reached the standby."""
    for _ in range(300):
        try:
            async with replica.connect() as connection:
                await connection.exec_driver_sql("SELECT 1 FROM team LIMIT 1")
            return
        except DBAPIError:  # database "..." does not exist, relation "team" does not exist
            await asyncio.sleep(0.1)
    raise SystemExit("the standby never received the benchmark's database")


async def measure(primary: Any, replica: Any, rounds: int) -> dict[str, Any]:
    writes, reads = create_session_factory(primary), create_session_factory(replica)
    lags, round_trips, polls = [], [], []
    async with reads() as standby:
        for number in range(rounds):
            started = time.perf_counter()
            async with writes() as session:
                await session.exec(select(1))
            round_trips.append(time.perf_counter() - started)
            name = f"lag-{number}"
            async with unit_of_work(writes) as session:
                session.add(Team(name=name, headquarters="x"))
            committed = time.perf_counter()
            count = 0
            while True:
                count += 1
                found = await standby.exec(select(Team.id).where(col(Team.name) == name))
                await standby.rollback()  # a new snapshot for the next read
                if found.first() is not None:
                    break
            lags.append(time.perf_counter() - committed)
            polls.append(count)
    lag_ms = statistics.median(lags) * 1000
    trip_ms = statistics.median(round_trips) * 1000
    results = {
        "rounds": rounds,
        "lag_median_ms": round(lag_ms, 3),
        "lag_p99_ms": round(sorted(lags)[int(len(lags) * 0.99) - 1] * 1000, 3),
        "lag_max_ms": round(max(lags) * 1000, 3),
        "primary_round_trip_median_ms": round(trip_ms, 3),
        "lag_in_round_trips": round(lag_ms / trip_ms, 1),
        "reads_until_visible_median": statistics.median(polls),
    }
    for key, value in results.items():
        print(f"  {key:<32} {value}")
    return results
