"""Random (uuid4) against time-ordered (uuid7) primary keys: inserting into a growing index.

Two tables, the same rows, 1,000 per INSERT, alternating batches: a random key lands on any page
of the primary-key index (page splits, the whole index hot in memory); a uuid7 lands at its end.
Reports the insert time and the index size at the end, as ratios uuid4 / uuid7.
"""

import statistics
import time
import uuid
from typing import Any

import sqlalchemy as sa

from benchmarks.common import save, scratch_database
from examples.app.db import create_engine
from examples.app.settings import Settings
from examples.app.types import uuid7

METADATA = sa.MetaData()
TABLES = {
    name: sa.Table(
        f"keys_{name}",
        METADATA,
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("payload", sa.String(100), nullable=False),
    )
    for name in ("uuid4", "uuid7")
}
MAKERS = {"uuid4": uuid.uuid4, "uuid7": uuid7}


async def main(rows: int, *, save_results: bool = True) -> dict[str, Any]:
    async with scratch_database("postgresql") as url:
        engine = create_engine(Settings(database_url=url.render_as_string(hide_password=False)))
        try:
            async with engine.begin() as connection:
                await connection.run_sync(METADATA.create_all)
            seconds: dict[str, list[float]] = {name: [] for name in TABLES}
            for _ in range(rows // 1000):
                for name, table in TABLES.items():
                    batch = [{"id": MAKERS[name](), "payload": "x" * 100} for _ in range(1000)]
                    started = time.perf_counter()
                    async with engine.begin() as connection:
                        await connection.execute(table.insert(), batch)
                    seconds[name].append(time.perf_counter() - started)
            sizes = {}
            async with engine.connect() as connection:
                for name, table in TABLES.items():
                    size = await connection.execute(
                        sa.text("SELECT pg_relation_size(:index)"), {"index": f"{table.name}_pkey"}
                    )
                    sizes[name] = int(size.scalar_one())
        finally:
            await engine.dispose()
    results = {
        "rows": rows,
        "insert_ms_per_1000": {
            n: round(statistics.median(s) * 1000, 2) for n, s in seconds.items()
        },
        "index_bytes": sizes,
    }
    results["insert_ratio_uuid4_over_uuid7"] = round(
        statistics.median(seconds["uuid4"]) / statistics.median(seconds["uuid7"]), 2
    )
    results["index_size_ratio_uuid4_over_uuid7"] = round(sizes["uuid4"] / sizes["uuid7"], 2)
    for key, value in results.items():
        print(f"  {key:<34} {value}")
    if save_results:
        print(f"saved {save('uuid-keys', 'postgresql', results)}")
    return results
