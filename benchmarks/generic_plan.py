"""PostgreSQL's generic-plan trap on skewed data, and plan_cache_mode = force_custom_plan.

jobs: nearly all DONE, the last few FAILED. "Is any job FAILED?" (EXISTS) on a connection whose
cached statement has run five times for DONE: PostgreSQL then uses its generic plan, a
sequential scan that stops at the first match, which reads the whole table for FAILED.
Variants, each on its own held connection, interleaved:
  rare, custom plan      examples.app.jobs.any_job_in (SET LOCAL force_custom_plan)
  rare, generic plan     the same EXISTS without it
  common, custom plan    any_job_in for DONE: what planning every run costs the common case
  common, generic plan   the same without it
"""

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import exists
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from benchmarks.common import interleaved, report, save, scratch_database
from examples.app.db import create_engine
from examples.app.jobs import any_job_in
from examples.app.models import Job, JobStatus
from examples.app.settings import Settings

RARE = 20


async def plain(session: AsyncSession, status: JobStatus) -> bool:
    match = select(Job.id).where(col(Job.status) == status)
    return bool((await session.exec(select(exists(match)))).one())


async def main(rows: int, repetitions: int, *, save_results: bool = True) -> dict[str, Any]:
    async with scratch_database("postgresql") as url:
        engine = create_engine(Settings(database_url=url.render_as_string(hide_password=False)))
        try:
            async with engine.begin() as connection:
                await connection.run_sync(SQLModel.metadata.create_all)
                await connection.exec_driver_sql(
                    "INSERT INTO job (kind, payload, status, attempts, run_after)"
                    f" SELECT 'report', '{{}}', CASE WHEN i > {rows - RARE} THEN 'failed'"
                    f" ELSE 'done' END, 1, now() FROM generate_series(1, {rows}) AS i"
                )
            async with engine.connect() as connection:
                await connection.exec_driver_sql("ANALYZE job")
                await connection.commit()
            results = await compare(engine, repetitions)
        finally:
            await engine.dispose()
    if save_results:
        print(f"saved {save('generic-plan', 'postgresql', results)}")
    return results


async def compare(engine: Any, repetitions: int) -> dict[str, Any]:
    custom_connection = await engine.connect()
    generic_connection = await engine.connect()
    custom = AsyncSession(bind=custom_connection, expire_on_commit=False)
    generic = AsyncSession(bind=generic_connection, expire_on_commit=False)

    def call(
        session: AsyncSession, read: Callable[[AsyncSession, JobStatus], Awaitable[bool]], s: Any
    ) -> Callable[[], Awaitable[bool]]:
        async def run() -> bool:
            async with session.begin():
                return await read(session, s)

        return run

    try:
        for session, read in ((custom, any_job_in), (generic, plain)):
            for _ in range(5):  # the common value first, as an app's traffic would
                await call(session, read, JobStatus.DONE)()
            assert await call(session, read, JobStatus.FAILED)()
        timings = await interleaved(
            {
                "rare, custom plan": call(custom, any_job_in, JobStatus.FAILED),
                "rare, generic plan": call(generic, plain, JobStatus.FAILED),
                "common, custom plan": call(custom, any_job_in, JobStatus.DONE),
                "common, generic plan": call(generic, plain, JobStatus.DONE),
            },
            repetitions,
        )
        plans = await generic_connection.exec_driver_sql(
            "SELECT generic_plans FROM pg_prepared_statements"
            " WHERE statement LIKE 'SELECT EXISTS (SELECT job.id %'"
        )
        generic_plans = plans.scalar_one()
    finally:
        await custom_connection.close()
        await generic_connection.close()
    table = report("generic plan on skewed data", timings, "rare, custom plan")
    return {"timings": table, "generic_plans_used": generic_plans}
