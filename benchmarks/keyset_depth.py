"""Keyset page 1000 against page 1 (`python -m benchmarks keyset-depth`).

50-row pages of heroes sorted by name (indexed, NOT NULL), through HeroService.page_by_cursor.
Keyset pages 1, 2, 100 and 1000 are timed in one group and offset pages in another, and each
round starts at the next variant (rotated): in `benchmarks orm` keyset page 1000 always ran
right after offset page 1000, which reads 50,000 index entries, and inherited its cold caches
(1.3x page 1; 1.0x when measured like this). On PostgreSQL the plan of the page-1000 query is
recorded (plan_deepest): an index range scan that reads ~51 rows, whatever the depth.
"""

import json
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlmodel import col, select

from benchmarks.common import report, save, scratch_database
from benchmarks.page_with_total import SECRET, capture_sql, load_rows
from benchmarks.round_trips import rotated
from examples.app.db import create_engine, create_session_factory
from examples.app.models import Hero
from examples.app.services import HeroService
from examples.app.settings import Settings

LIMIT, SORT = 50, "name"
Variant = Callable[[], Awaitable[object]]


async def main(
    backend: str = "postgresql",
    rows: int = 100_000,
    repetitions: int = 60,
    pages: tuple[int, ...] = (1, 2, 100, 1000),
    *,
    save_results: bool = True,
) -> dict[str, Any]:
    results: dict[str, Any] = {"backend": backend, "rows": rows, "repetitions": repetitions}
    async with scratch_database(backend) as url:
        engine = create_engine(Settings(database_url=url.render_as_string(hide_password=False)))
        try:
            print(f"loading {rows:,} heroes ...")
            await load_rows(engine, rows)
            factory = create_session_factory(engine)
            cursors: dict[int, str | None] = {1: None}
            names: dict[int, list[str]] = {}
            async with factory() as session:  # walk once: each page's cursor and rows
                service = HeroService(session, cursor_secret=SECRET)
                cursor = None
                for page in range(1, max(pages) + 1):
                    cursors[page] = cursor
                    result = await service.page_by_cursor(sort=SORT, limit=LIMIT, cursor=cursor)
                    names[page] = [hero.name for hero in result.items]
                    cursor = result.next_cursor
                    session.expunge_all()

            def keyset(page: int) -> Variant:
                async def call() -> list[str]:
                    async with factory() as session:
                        service = HeroService(session, cursor_secret=SECRET)
                        found = await service.page_by_cursor(
                            sort=SORT, limit=LIMIT, cursor=cursors[page]
                        )
                        return [hero.name for hero in found.items]

                return call

            def offset(page: int) -> Variant:
                async def call() -> list[str]:
                    async with factory() as session:
                        statement = (
                            select(Hero)
                            .where(col(Hero.deleted_at).is_(None))
                            .order_by(col(Hero.name), col(Hero.id))
                            .offset((page - 1) * LIMIT)
                            .limit(LIMIT)
                        )
                        return [hero.name for hero in (await session.exec(statement)).all()]

                return call

            keysets = {f"keyset, page {p}": keyset(p) for p in pages}
            offsets = {f"offset, page {p}": offset(p) for p in pages if p != 2}
            for page in pages:  # both strategies return the same rows as the walk
                same = await keyset(page)() == names[page]
                if not same or (page != 2 and await offset(page)() != names[page]):
                    raise SystemExit(f"page {page}: keyset and offset returned different rows")
            if backend == "postgresql":
                results["plan_deepest"] = await explain(engine, url, keyset(max(pages)))
            timings = await rotated(keysets, repetitions)
            results["keyset"] = report("keyset pages (rotated order)", timings, "keyset, page 1")
            timings = await rotated(offsets, max(5, repetitions // 4))
            results["offset"] = report("offset pages (rotated order)", timings, "offset, page 1")
        finally:
            await engine.dispose()
    if save_results:
        print(f"saved {save('keyset_depth', backend, results)}")
    return results


async def explain(engine: Any, url: Any, call: Variant) -> dict[str, Any]:
    """EXPLAIN ANALYZE of the SQL the call sends: scan type, index condition, rows read."""
    seen, stop = capture_sql(engine)
    await call()
    stop()
    sql, params = next(s for s in seen if s[0].lstrip().upper().startswith("SELECT"))
    raw = await asyncpg.connect(
        url.set(drivername="postgresql").render_as_string(hide_password=False)
    )
    try:
        plan = json.loads(
            await raw.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *params)
        )
    finally:
        await raw.close()
    node = plan[0]["Plan"]
    while "Plans" in node and node["Node Type"] != "Index Scan":
        node = node["Plans"][0]
    summary = {
        "scan": node["Node Type"],
        "index": node.get("Index Name"),
        "index_cond": node.get("Index Cond"),
        "rows_read": node["Actual Rows"] + node.get("Rows Removed by Filter", 0),
        "buffers": node.get("Shared Hit Blocks", 0) + node.get("Shared Read Blocks", 0),
        "execution_ms": plan[0]["Execution Time"],
    }
    print(f"plan of the deepest page: {summary}")
    return summary
