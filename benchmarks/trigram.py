"""ServiceBase.page with icontains on hero.name, without and with a pg_trgm GIN index.

Two databases with the same heroes (page_with_total's loader and its "icontains" workload: a
50-row page sorted by name, with its total); one also gets the trigram index of
examples/app/migrations/recipes/hero_name_trigram.py. The same HeroService.page runs on each,
interleaved, for a 3-letter search (page_with_total's "ABY", about one hero in ten), a rare
one, and a 2-letter one: no trigram to look up, so the index can't narrow anything. A third
variant runs on the indexed database with plan_cache_mode = force_custom_plan: after five runs
asyncpg's cached statement may get a generic plan, which uses the index for any pattern (each
search starts on new connections, so its own runs decide).
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from benchmarks.common import interleaved, report, save, scratch_database
from benchmarks.page_with_total import SECRET, capture_sql, load_rows
from examples.app.db import create_engine, create_session_factory
from examples.app.migrations.recipes import hero_name_trigram
from examples.app.services import HeroService
from examples.app.settings import Settings

SEARCHES = {"3 letters": "ABY", "rare": "4242", "2 letters": "AB"}
WITHOUT, WITH, CUSTOM = "no index", "pg_trgm GIN index", "index, force_custom_plan"
INDEX = "ix_hero_name_trgm"


def add_trigram_index(connection: Connection) -> None:
    with Operations.context(MigrationContext.configure(connection)):
        hero_name_trigram.upgrade()


@asynccontextmanager
async def heroes(rows: int, *, indexed: bool) -> AsyncIterator[AsyncEngine]:
    async with scratch_database("postgresql") as url:
        engine = create_engine(Settings(database_url=url.render_as_string(hide_password=False)))
        try:
            await load_rows(engine, rows)
            if indexed:
                async with engine.begin() as connection:
                    await connection.run_sync(add_trigram_index)
                async with engine.begin() as connection:  # statistics on lower(name) too
                    await connection.exec_driver_sql("ANALYZE hero")
            yield engine
        finally:
            await engine.dispose()


def custom_plans_only(engine: AsyncEngine) -> AsyncEngine:
    """Another engine on the same database whose connections plan every execution."""
    url = engine.url.render_as_string(hide_password=False)
    custom = create_engine(Settings(database_url=url))

    @event.listens_for(custom.sync_engine, "do_connect")
    def force_custom_plan(_dialect: Any, _record: Any, _args: Any, params: dict[str, Any]) -> None:
        # A startup setting (asyncpg's server_settings): a SET on the new connection would run
        # in the driver's implicit transaction and be rolled back with it.
        params.setdefault("server_settings", {})["plan_cache_mode"] = "force_custom_plan"

    return custom


def page_on(engine: AsyncEngine, search: str) -> Callable[[], Awaitable[tuple[list[str], int]]]:
    session_factory = create_session_factory(engine)

    async def page() -> tuple[list[str], int]:
        async with session_factory() as session:
            service = HeroService(session, cursor_secret=SECRET)
            result = await service.page(
                {"field": "name", "op": "icontains", "value": search}, limit=50
            )
            return [hero.name for hero in result.items], result.total

    return page


async def plan(engine: AsyncEngine, page: Callable[[], Awaitable[tuple[list[str], int]]]) -> str:
    """EXPLAIN of the SELECT that ServiceBase.page sends, with its parameters."""
    seen, stop = capture_sql(engine)
    try:
        await page()
    finally:
        stop()
    (sql, params), *_ = [s for s in seen if s[0].lstrip().upper().startswith("SELECT")]
    async with engine.connect() as connection:
        explained = await connection.exec_driver_sql("EXPLAIN " + sql, params)
        return "\n".join(explained.scalars())


async def main(rows: int, repetitions: int, *, save_results: bool = True) -> dict[str, Any]:
    results: dict[str, Any] = {"rows": rows, "repetitions": repetitions, "index_used": {}}
    async with AsyncExitStack() as stack:
        print(f"loading {rows:,} heroes twice ...")
        bare = await stack.enter_async_context(heroes(rows, indexed=False))
        indexed = await stack.enter_async_context(heroes(rows, indexed=True))
        custom = custom_plans_only(indexed)
        stack.push_async_callback(custom.dispose)
        for label, search in SEARCHES.items():
            for engine in (bare, indexed, custom):  # new connections: no cached statements
                await engine.dispose()
            variants = {
                WITHOUT: page_on(bare, search),
                WITH: page_on(indexed, search),
                CUSTOM: page_on(custom, search),
            }
            answers = [await variant() for variant in variants.values()]
            if any(answer != answers[0] for answer in answers):
                raise SystemExit(f"{label}: the indexed database returned another page or total")
            results["index_used"][label] = INDEX in await plan(indexed, variants[WITH])
            print(f"search {search!r}: {repetitions} interleaved rounds")
            timings = await interleaved(variants, repetitions)
            title = f"icontains {search!r} ({label}), 50-row page + total"
            results[label] = report(title, timings, baseline=WITH)
            results[label]["matches"] = answers[0][1]
    print(f"  index used: {results['index_used']}")
    if save_results:
        print(f"saved {save('trigram', 'postgresql', results)}")
    return results
