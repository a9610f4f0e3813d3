"""asyncpg against psycopg 3 on the same PostgreSQL, the same data and the same app code.

Each workload runs through the app's own engine factory (db.create_engine) once per driver,
interleaved round by round:
  page      ServiceBase.page: an indexed filter, 50 rows and the total (one SELECT)
  get       ServiceBase.get by primary key with its team joined
  insert    create_many of 100 heroes in one transaction (rolled back)
  update    one atomic UPDATE ... RETURNING (celebrate_birthday) in its own transaction
Ratios are psycopg / asyncpg: above 1, psycopg is slower.
"""

import itertools
from collections.abc import Awaitable, Callable
from typing import Any

from sqlmodel import select

from benchmarks.common import interleaved, report, save, scratch_database
from benchmarks.page_with_total import SECRET, load_rows
from examples.app.db import create_engine, create_session_factory
from examples.app.models import Hero
from examples.app.schemas import HeroCreate
from examples.app.services import HeroService
from examples.app.settings import Settings
from examples.servicebase.transactions import unit_of_work

DRIVERS = ("asyncpg", "psycopg")


async def main(rows: int, repetitions: int, *, save_results: bool = True) -> dict[str, Any]:
    results: dict[str, Any] = {"rows": rows, "repetitions": repetitions}
    async with scratch_database("postgresql") as url:
        engines = {
            driver: create_engine(
                Settings(
                    database_url=url.set(drivername=f"postgresql+{driver}").render_as_string(
                        hide_password=False
                    )
                )
            )
            for driver in DRIVERS
        }
        try:
            await load_rows(engines["asyncpg"], rows)
            async with create_session_factory(engines["asyncpg"])() as session:
                ids = (await session.exec(select(Hero.id).limit(200))).all()
            for workload in ("page", "get", "insert", "update"):
                variants = {
                    driver: variant(workload, engine, list(ids))
                    for driver, engine in engines.items()
                }
                timings = await interleaved(variants, repetitions)
                results[workload] = report(f"{workload}: psycopg / asyncpg", timings, "asyncpg")
        finally:
            for engine in engines.values():
                await engine.dispose()
    if save_results:
        print(f"saved {save('drivers', 'postgresql', results)}")
    return results


def variant(workload: str, engine: Any, ids: list[Any]) -> Callable[[], Awaitable[object]]:
    factory = create_session_factory(engine)
    next_id = itertools.cycle(ids).__next__
    batch = itertools.count()

    async def page() -> object:
        async with factory() as session:
            heroes = HeroService(session, cursor_secret=SECRET)
            return (await heroes.page({"field": "age", "op": "eq", "value": 42}, limit=50)).total

    async def get() -> object:
        async with factory() as session:
            return await HeroService(session, cursor_secret=SECRET).get(next_id(), load=["team"])

    async def insert() -> object:
        number = next(batch)
        async with factory() as session, session.begin():
            items = [
                HeroCreate(name=f"bench {number} {i}", secret_name=f"bench {number} {i}")
                for i in range(100)
            ]
            created = await HeroService(session, cursor_secret=SECRET).create_many(items)
            await session.rollback()
            return len(created)

    async def update() -> object:
        async with unit_of_work(factory) as session:
            hero = await HeroService(session, cursor_secret=SECRET).celebrate_birthday(next_id())
            return hero.age

    return {"page": page, "get": get, "insert": insert, "update": update}[workload]
