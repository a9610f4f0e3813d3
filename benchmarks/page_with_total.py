"""A filtered, sorted 50-row page with its total: ServiceBase against the alternatives.

Variants, measured interleaved in one run on the same data:
  raw asyncpg        the exact SQL ServiceBase sends, one fetch on a raw connection (the floor)
  ServiceBase.page   filter parsed and validated, the total a scalar subquery, ORM objects
  hand-written       SQLModel select + a separate COUNT, ORM objects
  advanced-alchemy   repository.get_many_and_count (window count)
  FastCRUD           get_multi(return_total_count=True)
  page_rows          row_pages.page_rows: the same filter, sort and total, HeroPublic from rows
                     (no ORM objects), in a default session and in an AUTOCOMMIT one; and
                     into HeroPublic's plain Pydantic twin (no SQLModel __init__ per item)
  layers             raw asyncpg running page_rows' SQL; + building HeroPublic from its rows
                     (or a plain Pydantic model with the same fields); SQLAlchemy Core running
                     page_rows' statement on a held connection; + a connection from the pool
                     per page (checkout, ping); + a session around it; + the statement run
                     through the session (ORM execute: its events, as page_rows runs it); +
                     HeroPublic built from its rows and validated: what is left to page_rows
                     is its own work (the WHERE clause, the kept statement, the page)
The first five are the table against ServiceBase.page; all are timed in the same rounds; the
row pages' table compares them against page_rows in an AUTOCOMMIT session, the layers' table
against raw asyncpg running page_rows' SQL.
Workloads: an indexed equality filter (overhead-bound) and a non-indexed icontains (database-bound).
"""

import json
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from advanced_alchemy.filters import LimitOffset, OrderBy, SearchFilter
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from fastcrud import FastCRUD
from pydantic import BaseModel, TypeAdapter, create_model
from sqlalchemy import event, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker
from sqlmodel import SQLModel, col, func, select

from benchmarks.common import Timings, interleaved, report, save, scratch_database
from examples.app.db import create_engine, create_session_factory
from examples.app.models import Hero, HeroStatus
from examples.app.schemas import HeroPublic
from examples.app.services import HeroService
from examples.app.settings import Settings
from examples.servicebase.row_pages import page_rows, plan

SECRET = b"benchmark-cursor-secret-0123456789"
WORDS = [
    "storm",
    "iron",
    "shadow",
    "blade",
    "night",
    "star",
    "fire",
    "frost",
    "dead",
    "pond",
    "rusty",
    "spider",
    "wonder",
    "bat",
    "ant",
    "hawk",
    "eagle",
    "tiger",
    "wolf",
    "abyss",
]


ROW_PAGE = "page_rows"
ROW_PAGE_AUTOCOMMIT = "page_rows, AUTOCOMMIT"
ROW_PAGE_TWIN = "page_rows, AUTOCOMMIT, into the twin"
# Between raw asyncpg and page_rows, each adding one layer: where the difference goes.
LAYERS = (
    "asyncpg, page_rows' SQL",
    "  + HeroPublic from the rows",
    "  + its Pydantic BaseModel twin instead",
    "SQLAlchemy Core, held connection",
    "  + pool checkout and ping",
    "  + an AsyncSession around it",
    "  + through the session's ORM execute",
    "  + HeroPublic built from its rows",
    ROW_PAGE_AUTOCOMMIT,
    ROW_PAGE_TWIN,
)
# These return rows, the total last.
ROW_LAYERS = (LAYERS[0], LAYERS[3], LAYERS[4], LAYERS[5], LAYERS[6])
ORM_VARIANTS = (
    "raw asyncpg (same SQL)",
    "ServiceBase.page",
    "hand-written SQLModel",
    "advanced-alchemy",
    "FastCRUD",
)


class HeroRepository(SQLAlchemyAsyncRepository[Hero]):  # type: ignore[type-var]
    model_type = Hero


async def load_rows(engine: AsyncEngine, rows: int) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(SQLModel.metadata.create_all)
    generator = random.Random(42)
    statuses = list(HeroStatus)
    batch: list[dict[str, Any]] = []
    for i in range(rows):
        name = f"{generator.choice(WORDS)}-{generator.choice(WORDS)}-{i}"
        batch.append(
            {
                "id": uuid.UUID(
                    int=generator.getrandbits(128), version=4
                ),  # MariaDB's UUID type too
                "name": name,
                "secret_name": f"secret-{i}",
                "age": None if i % 20 == 0 else generator.randrange(1000),
                "status": generator.choice(statuses),
                "attributes": {},
                "version": 1,
            }
        )
        if len(batch) == 5000 or i == rows - 1:
            async with engine.begin() as conn:
                await conn.execute(insert(Hero), batch)
            batch = []
    async with engine.begin() as conn:  # ANALYZE is transactional on PostgreSQL: commit it
        if engine.dialect.name == "postgresql":
            await conn.exec_driver_sql("ANALYZE hero")
        else:
            await conn.exec_driver_sql("ANALYZE TABLE hero")


def capture_sql(engine: AsyncEngine) -> tuple[list[tuple[str, Any]], Callable[[], None]]:
    seen: list[tuple[str, Any]] = []

    def record(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: bool) -> None:
        seen.append((statement, params))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    return seen, lambda: event.remove(engine.sync_engine, "before_cursor_execute", record)


def capture_statement(engine: AsyncEngine) -> tuple[list[Any], Callable[[], None]]:
    """(statement, parameters) as each execute() got them."""
    seen: list[Any] = []

    def record(_conn: Any, clause: Any, multiparams: Any, params: Any, _options: Any) -> None:
        seen.append((clause, multiparams[0] if multiparams else params))

    event.listen(engine.sync_engine, "before_execute", record)
    return seen, lambda: event.remove(engine.sync_engine, "before_execute", record)


async def workload_variants(
    engine: AsyncEngine, raw: asyncpg.Connection, held: AsyncConnection, workload: str
) -> dict[str, Callable[[], Awaitable[object]]]:
    session_factory = create_session_factory(engine)
    # The libraries call session.execute(): give them SQLAlchemy's own AsyncSession, as their
    # users do (SQLModel's deprecates execute()).
    plain_session_factory = async_sessionmaker(engine, expire_on_commit=False)
    crud: Any = FastCRUD(Hero)
    not_deleted = col(Hero.deleted_at).is_(None)
    if workload == "indexed":
        service_filter: dict[str, Any] = {"field": "age", "op": "eq", "value": 42}
        where: Any = col(Hero.age) == 42
        aa_filter: Any = col(Hero.age) == 42
        fastcrud_filter: dict[str, Any] = {"age": 42}
    else:
        service_filter = {"field": "name", "op": "icontains", "value": "ABY"}
        where = col(Hero.name).icontains("ABY", autoescape=True)
        aa_filter = SearchFilter(field_name="name", value="ABY", ignore_case=True)
        fastcrud_filter = {"name__ilike": "%ABY%"}

    def row_page(schema: Any = HeroPublic, **options: Any) -> Callable[[], Awaitable[object]]:
        async def run() -> object:
            async with session_factory(execution_options=options) as session:
                service = HeroService(session, cursor_secret=SECRET)
                page = await page_rows(service, schema, service_filter, limit=50)
                return page.items, page.total

        return run

    async def service_page() -> object:
        async with session_factory() as session:
            page = await HeroService(session, cursor_secret=SECRET).page(service_filter, limit=50)
            return page.items, page.total

    # The raw variant replays exactly what ServiceBase sent.
    seen, stop = capture_sql(engine)
    await service_page()
    stop()
    (sql, params), *_ = [s for s in seen if s[0].lstrip().upper().startswith("SELECT")]

    async def raw_asyncpg() -> object:
        return await raw.fetch(sql, *params)

    async def hand_written() -> object:
        async with session_factory() as session:
            rows = await session.exec(
                select(Hero)
                .where(not_deleted, where)
                .order_by(col(Hero.name), col(Hero.id))
                .limit(50)
            )
            total = await session.exec(
                select(func.count()).select_from(Hero).where(not_deleted, where)
            )
            return rows.all(), total.one()

    async def advanced_alchemy() -> object:
        async with plain_session_factory() as session:
            repository = HeroRepository(session=session)
            return await repository.get_many_and_count(
                not_deleted,
                aa_filter,
                LimitOffset(limit=50, offset=0),
                OrderBy(field_name="name", sort_order="asc"),
            )

    async def fastcrud() -> object:
        async with plain_session_factory() as session:
            return await crud.get_multi(
                session,
                offset=0,
                limit=50,
                sort_columns=["name"],
                sort_orders=["asc"],
                return_total_count=True,
                deleted_at=None,
                **fastcrud_filter,
            )

    # The layers replay what page_rows sent: its SQL on asyncpg, its statement on SQLAlchemy.
    seen, stop = capture_sql(engine)
    statements, stop_statements = capture_statement(engine)
    await row_page()()
    stop()
    stop_statements()
    rows_sql, rows_params = seen[0]
    statement, parameters = statements[0]
    fields = {name: (info.annotation, info) for name, info in HeroPublic.model_fields.items()}
    twin = create_model("HeroPublicTwin", __base__=BaseModel, **fields)  # type: ignore[call-overload]

    def validated(adapter: TypeAdapter[Any]) -> Callable[[], Awaitable[object]]:
        async def run() -> object:
            rows = await raw.fetch(rows_sql, *rows_params)
            items = [{f: row[f] for f in fields} for row in rows]
            for item in items:  # raw asyncpg returns jsonb as text (SQLAlchemy sets a codec)
                item["attributes"] = json.loads(item["attributes"])
            return adapter.validate_python(items)

        return run

    async def asyncpg_rows() -> object:
        return await raw.fetch(rows_sql, *rows_params)

    async def core_held() -> object:
        return (await held.execute(statement, parameters)).all()

    async def core_checkout() -> object:
        async with engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            return (await connection.execute(statement, parameters)).all()

    async def core_in_session() -> object:
        async with session_factory(execution_options={"isolation_level": "AUTOCOMMIT"}) as session:
            connection = await session.connection()
            return (await connection.execute(statement, parameters)).all()

    async def orm_in_session() -> object:
        async with session_factory(execution_options={"isolation_level": "AUTOCOMMIT"}) as session:
            return (await session.exec(statement, params=parameters)).all()

    shape, adapter = plan(Hero, HeroPublic)

    async def built_in_session() -> object:
        async with session_factory(execution_options={"isolation_level": "AUTOCOMMIT"}) as session:
            rows = (await session.exec(statement, params=parameters)).all()
            return adapter.validate_python([shape.build(row)[0] for row in rows])

    return {
        LAYERS[0]: asyncpg_rows,
        LAYERS[1]: validated(TypeAdapter(list[HeroPublic])),
        LAYERS[2]: validated(TypeAdapter(list[twin])),
        LAYERS[3]: core_held,
        LAYERS[4]: core_checkout,
        LAYERS[5]: core_in_session,
        LAYERS[6]: orm_in_session,
        LAYERS[7]: built_in_session,
        "raw asyncpg (same SQL)": raw_asyncpg,
        "ServiceBase.page": service_page,
        "hand-written SQLModel": hand_written,
        "advanced-alchemy": advanced_alchemy,
        "FastCRUD": fastcrud,
        ROW_PAGE: row_page(),
        ROW_PAGE_AUTOCOMMIT: row_page(isolation_level="AUTOCOMMIT"),
        ROW_PAGE_TWIN: row_page(twin, isolation_level="AUTOCOMMIT"),
    }


async def main(rows: int, repetitions: int, *, save_results: bool = True) -> dict[str, Any]:
    results: dict[str, Any] = {"rows": rows, "repetitions": repetitions}
    async with scratch_database("postgresql") as url:
        engine = create_engine(Settings(database_url=url.render_as_string(hide_password=False)))
        print(f"loading {rows:,} heroes ...")
        await load_rows(engine, rows)
        raw = await asyncpg.connect(
            url.set(drivername="postgresql").render_as_string(hide_password=False)
        )
        held = await engine.connect()
        await held.execution_options(isolation_level="AUTOCOMMIT")
        try:
            for workload, reps in (
                ("indexed", repetitions),
                ("icontains", max(5, repetitions // 5)),
            ):
                variants = await workload_variants(engine, raw, held, workload)
                await check_same_answers(variants)
                print(f"workload {workload}: {reps} interleaved rounds")
                timings = await interleaved(variants, reps)
                title = f"{workload} filter, 50-row page + total"
                orm = Timings({name: timings.samples[name] for name in ORM_VARIANTS})
                results[workload] = report(title, orm, baseline="ServiceBase.page")
                pages = Timings({n: v for n, v in timings.samples.items() if n not in LAYERS[:-2]})
                results[f"{workload} row pages"] = report(
                    f"{title}, the same rounds", pages, baseline=ROW_PAGE_AUTOCOMMIT
                )
                layers = Timings({name: timings.samples[name] for name in LAYERS})
                results[f"{workload} layers"] = report(
                    f"{title}, raw asyncpg to page_rows", layers, baseline=LAYERS[0]
                )
        finally:
            await held.close()
            await raw.close()
            await engine.dispose()
    if save_results:
        print(f"saved {save('page_with_total', 'postgresql', results)}")
    return results


async def check_same_answers(variants: dict[str, Callable[[], Awaitable[object]]]) -> None:
    """Every variant must return the same page and total, or the timing means nothing."""
    service: Any = await variants["ServiceBase.page"]()
    service_items, service_total = service
    expected = [hero.name for hero in service_items]
    hand: Any = await variants["hand-written SQLModel"]()
    hand_items, hand_total = hand
    aa: Any = await variants["advanced-alchemy"]()
    aa_items, aa_total = aa
    crud_result: Any = await variants["FastCRUD"]()
    raw_rows: Any = await variants["raw asyncpg (same SQL)"]()
    rows: Any = await variants[ROW_PAGE]()
    rows_autocommit: Any = await variants[ROW_PAGE_AUTOCOMMIT]()
    rows_twin: Any = await variants[ROW_PAGE_TWIN]()
    answers = {
        "hand-written SQLModel": ([h.name for h in hand_items], hand_total),
        "advanced-alchemy": ([h.name for h in aa_items], aa_total),
        "FastCRUD": ([r["name"] for r in crud_result["data"]], crud_result["total_count"]),
        "raw asyncpg (same SQL)": (
            [r["name"] for r in raw_rows],
            raw_rows[0]["total"] if raw_rows else 0,
        ),
        ROW_PAGE: ([h.name for h in rows[0]], rows[1]),
        ROW_PAGE_AUTOCOMMIT: ([h.name for h in rows_autocommit[0]], rows_autocommit[1]),
        ROW_PAGE_TWIN: ([h.name for h in rows_twin[0]], rows_twin[1]),
    }
    for layer in (LAYERS[1], LAYERS[2], LAYERS[7]):
        validated: Any = await variants[layer]()
        answers[layer] = ([hero.name for hero in validated], service_total)
    for layer in ROW_LAYERS:
        found: Any = await variants[layer]()
        names = [row["name"] if layer == LAYERS[0] else row.name for row in found]
        answers[layer] = (names, found[0][-1] if found else 0)
    for name, answer in answers.items():
        if answer != (expected, service_total):
            raise SystemExit(f"{name} returned a different page or total than ServiceBase")
