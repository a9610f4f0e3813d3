"""The job queue in the database: claims never overlap, failures retry, workers stop cleanly."""

import asyncio
import os
import re
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import exists, text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlmodel import SQLModel, col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.db import create_engine, create_session_factory
from examples.app.jobs import (
    HANDLERS,
    any_job_in,
    claim,
    enqueue,
    reclaim_stale,
    run_in_its_own_loop,
    run_job,
    work,
)
from examples.app.models import Hero, Job, JobStatus
from examples.app.settings import Settings
from examples.servicebase.transactions import unit_of_work
from tests.conftest import Backend

ROOT = Path(__file__).parents[1]


@pytest_asyncio.fixture
async def jobs_factory(
    empty_database_url: str,
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(Settings(database_url=empty_database_url))
    async with engine.begin() as connection:
        await connection.run_sync(SQLModel.metadata.create_all)
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


async def add_jobs(factory: async_sessionmaker[AsyncSession], count: int) -> None:
    async with unit_of_work(factory) as session:
        for number in range(count):
            await enqueue(session, "record", {"n": number})


async def jobs(factory: async_sessionmaker[AsyncSession]) -> list[Job]:
    async with factory() as session:
        return list((await session.exec(select(Job).order_by(col(Job.id)))).all())


async def test_concurrent_workers_never_take_the_same_job(
    backend: Backend, jobs_factory: async_sessionmaker[AsyncSession]
) -> None:
    await add_jobs(jobs_factory, 200)
    seen: list[tuple[str, int]] = []

    def recorder(name: str) -> Any:
        async def record(_session: AsyncSession, payload: dict[str, Any]) -> None:
            seen.append((name, payload["n"]))
            await asyncio.sleep(0)  # let the other workers claim meanwhile

        return {"record": record}

    async def worker(name: str) -> int:
        stop = asyncio.Event()
        factory = jobs_factory

        async def stop_when_empty() -> None:
            while True:
                await asyncio.sleep(0.05)
                async with factory() as session:
                    left = await session.exec(
                        select(Job.id).where(col(Job.status) != JobStatus.DONE).limit(1)
                    )
                    if left.first() is None:
                        stop.set()
                        return

        watcher = asyncio.create_task(stop_when_empty())
        try:
            return await work(factory, recorder(name), stop, name=name, idle_seconds=0.05)
        finally:
            watcher.cancel()

    counts = await asyncio.gather(*(worker(f"w{i}") for i in range(4)))
    numbers = Counter(n for _, n in seen)
    assert sorted(numbers) == list(range(200))
    assert set(numbers.values()) == {1}  # each job ran exactly once
    assert sum(counts) == 200
    assert sum(1 for c in counts if c > 0) >= 2, counts  # the work was really shared
    stored = await jobs(jobs_factory)
    assert {job.status for job in stored} == {JobStatus.DONE}
    assert {job.attempts for job in stored} == {1}


@pytest.mark.backends("postgresql", "mysql")
async def test_skip_locked_passes_over_rows_another_worker_is_claiming(
    jobs_factory: async_sessionmaker[AsyncSession],
) -> None:
    await add_jobs(jobs_factory, 20)
    async with jobs_factory() as holder, holder.begin():
        held = (
            await holder.exec(
                select(Job).order_by(col(Job.id)).limit(5).with_for_update(skip_locked=True)
            )
        ).all()
        # Without SKIP LOCKED this claim would wait for the holder's transaction to end.
        claimed = await asyncio.wait_for(claim(jobs_factory, "other", limit=10), 5)
        assert [job.id for job in claimed] == [job.id for job in (await jobs(jobs_factory))[5:15]]
        assert {job.id for job in held}.isdisjoint(job.id for job in claimed)


async def test_a_failing_job_is_retried_then_marked_failed_and_its_writes_roll_back(
    jobs_factory: async_sessionmaker[AsyncSession],
) -> None:
    async with unit_of_work(jobs_factory) as session:
        hero = Hero(name="Rusty", secret_name="r")
        session.add(hero)
        await enqueue(session, "break", {"hero_id": str(hero.id)})

    async def breaks(session: AsyncSession, payload: dict[str, Any]) -> None:
        broken = await session.get_one(Hero, uuid.UUID(payload["hero_id"]))
        broken.age = 99  # rolled back with the failure
        await session.flush()
        raise ValueError("the mail server said no")

    outcomes = []
    for _ in range(3):
        async with unit_of_work(jobs_factory) as session:  # due now: skip the backoff wait
            await session.exec(update(Job).values(run_after=datetime.now(UTC)))
        (job,) = await claim(jobs_factory, "w")
        outcomes.append(
            await run_job(
                jobs_factory, {"break": breaks}, job, max_attempts=3, backoff=timedelta(0)
            )
        )
    assert outcomes == [JobStatus.QUEUED, JobStatus.QUEUED, JobStatus.FAILED]
    (stored,) = await jobs(jobs_factory)
    assert (stored.status, stored.attempts) == (JobStatus.FAILED, 3)
    assert stored.last_error == "ValueError: the mail server said no"
    assert await claim(jobs_factory, "w") == []
    async with jobs_factory() as session:
        assert (await session.get_one(Hero, hero.id)).age is None


async def test_a_job_exists_only_if_its_unit_of_work_commits(
    jobs_factory: async_sessionmaker[AsyncSession],
) -> None:
    async def fails_after_enqueueing() -> None:
        async with unit_of_work(jobs_factory) as session:
            await enqueue(session, "welcome_hero", {"hero_id": "x"})
            raise RuntimeError("the write that needed the job failed")

    with pytest.raises(RuntimeError):
        await fails_after_enqueueing()
    assert await jobs(jobs_factory) == []


async def test_jobs_of_a_dead_worker_are_reclaimed(
    jobs_factory: async_sessionmaker[AsyncSession],
) -> None:
    await add_jobs(jobs_factory, 2)
    await claim(jobs_factory, "died", limit=1)
    assert await reclaim_stale(jobs_factory, older_than=timedelta(minutes=5)) == 0
    assert await reclaim_stale(jobs_factory, older_than=timedelta(0)) == 1
    assert {job.status for job in await jobs(jobs_factory)} == {JobStatus.QUEUED}


@pytest.mark.backends("postgresql", "psycopg", "mysql")
async def test_a_job_being_run_is_never_reclaimed(
    jobs_factory: async_sessionmaker[AsyncSession],
) -> None:
    """However long it runs: its worker holds the row lock, and reclaim skips locked rows."""
    await add_jobs(jobs_factory, 1)
    (job,) = await claim(jobs_factory, "slow worker")
    running, finish = asyncio.Event(), asyncio.Event()

    async def slow(_session: AsyncSession, _payload: dict[str, Any]) -> None:
        running.set()
        await finish.wait()

    task = asyncio.create_task(run_job(jobs_factory, {"record": slow}, job))
    await asyncio.wait_for(running.wait(), 5)
    assert await reclaim_stale(jobs_factory, older_than=timedelta(0)) == 0
    finish.set()
    assert await task is JobStatus.DONE
    (stored,) = await jobs(jobs_factory)
    assert (stored.status, stored.attempts) == (JobStatus.DONE, 1)


async def test_a_reclaimed_job_is_not_run_by_its_old_worker(
    jobs_factory: async_sessionmaker[AsyncSession],
) -> None:
    """A worker that stalled past the grace period finds its job taken by another: it skips."""
    await add_jobs(jobs_factory, 1)
    (stalled,) = await claim(jobs_factory, "stalled")
    assert await reclaim_stale(jobs_factory, older_than=timedelta(0)) == 1
    (taken,) = await claim(jobs_factory, "other")
    ran: list[str] = []

    async def record(_session: AsyncSession, _payload: dict[str, Any]) -> None:
        ran.append("ran")

    assert await run_job(jobs_factory, {"record": record}, stalled) is None
    assert await run_job(jobs_factory, {"record": record}, taken) is JobStatus.DONE
    assert ran == ["ran"]


async def test_worker_processes_share_the_queue_and_stop_on_sigterm(
    backend: Backend, empty_database_url: str, jobs_factory: async_sessionmaker[AsyncSession]
) -> None:
    """Two `python -m examples.app.jobs` processes, each with its own engine."""
    async with unit_of_work(jobs_factory) as session:
        heroes = [Hero(name=f"h{i}", secret_name=f"s{i}") for i in range(40)]
        session.add_all(heroes)
        await session.flush()
        for hero in heroes:
            await enqueue(session, "welcome_hero", {"hero_id": str(hero.id)})
    assert "welcome_hero" in HANDLERS
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": empty_database_url}
    workers = [
        subprocess.Popen(  # noqa: ASYNC220 - started once, then polled without blocking
            [sys.executable, "-m", "examples.app.jobs"],
            cwd=ROOT,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for _ in range(300):
            if {job.status for job in await jobs(jobs_factory)} == {JobStatus.DONE}:
                break
            await asyncio.sleep(0.1)
    finally:
        for process in workers:
            process.send_signal(signal.SIGTERM)
        logs = [process.communicate(timeout=30)[1] for process in workers]
    assert [process.returncode for process in workers] == [0, 0], logs
    assert all("stopped after" in log for log in logs), logs
    async with jobs_factory() as session:
        welcomed = (await session.exec(select(Hero))).all()
    assert all(hero.attributes == {"welcomed": True} for hero in welcomed)
    done = [job.locked_by for job in await jobs(jobs_factory)]
    assert len(done) == 40


def hero_in(url: str) -> str:
    async def add() -> str:
        engine = create_engine(Settings(database_url=url))
        try:
            async with unit_of_work(create_session_factory(engine)) as session:
                hero = Hero(name="Loop", secret_name="loop")
                session.add(hero)
            return str(hero.id)
        finally:
            await engine.dispose()

    return asyncio.run(add())


SHARED_ENGINE = """
import asyncio, sys
from examples.app.db import create_engine
from examples.app.settings import Settings

shared = create_engine(Settings(database_url=sys.argv[1]))  # made once, "at import"


async def count() -> int:
    async with shared.connect() as connection:
        return int((await connection.exec_driver_sql("SELECT count(*) FROM hero")).scalar_one())


print("first loop:", asyncio.run(count()), flush=True)
try:
    asyncio.run(count())
except RuntimeError as error:
    print("second loop:", error, flush=True)
"""


@pytest.mark.backends("postgresql", "mysql")
def test_sync_code_runs_each_job_in_its_own_loop(empty_database_url: str) -> None:
    """What a Celery task does: asyncio.run per call. The engine made inside works every time;
    one engine shared by two loops fails on the second (in a process of its own: the failed
    loop's connection leaves garbage behind)."""
    url = empty_database_url
    settings = Settings(database_url=url)

    async def schema() -> None:
        engine = create_engine(settings)
        async with engine.begin() as connection:
            await connection.run_sync(SQLModel.metadata.create_all)
        await engine.dispose()

    asyncio.run(schema())
    hero_id = hero_in(url)
    for _ in range(2):
        run_in_its_own_loop("welcome_hero", {"hero_id": hero_id}, settings)

    async def welcomed() -> dict[str, Any]:
        engine = create_engine(settings)
        try:
            async with create_session_factory(engine)() as session:
                return (await session.get_one(Hero, uuid.UUID(hero_id))).attributes
        finally:
            await engine.dispose()

    assert asyncio.run(welcomed()) == {"welcomed": True}
    result = subprocess.run(
        [sys.executable, "-c", SHARED_ENGINE, url],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "first loop: 1" in result.stdout, result.stderr
    assert re.search(
        r"second loop: .*(attached to a different loop|Event loop is closed)", result.stdout
    ), result.stdout + result.stderr


SKEWED_JOBS = """
INSERT INTO job (kind, payload, status, attempts, run_after)
SELECT 'report', '{}', CASE WHEN i > 99980 THEN 'failed' ELSE 'done' END, 1, now()
FROM generate_series(1, 100000) AS i
"""
PLANS = text(
    "SELECT name, generic_plans, custom_plans FROM pg_prepared_statements"
    " WHERE statement LIKE 'SELECT EXISTS (SELECT job.id ' || '%'"
)


async def plans_after_skewed_reads(
    factory: async_sessionmaker[AsyncSession], read: Any, common: int = 5
) -> tuple[int, int, str]:
    """`common` reads of the common status, then the rare one, on one connection: how the rare
    one was planned (generic, custom) and the plan that connection's cached statement has."""
    engine: Any = factory.kw["bind"]
    await engine.dispose()  # a new connection: no statement cached yet
    async with engine.connect() as connection:
        session = AsyncSession(bind=connection, expire_on_commit=False)
        for status in [JobStatus.DONE] * common + [JobStatus.FAILED]:
            async with session.begin():
                await read(session, status)
        name, generic, custom = (await connection.execute(PLANS)).one()
        explained = await connection.exec_driver_sql(f"EXPLAIN EXECUTE {name}('failed')")
        plan = "\n".join(row[0] for row in explained)
        await connection.rollback()
    return generic, custom, plan


@pytest.mark.backends("postgresql", "psycopg")
async def test_the_generic_plan_trap_and_its_fix(
    backend: Backend, jobs_factory: async_sessionmaker[AsyncSession]
) -> None:
    """asyncpg prepares every statement; psycopg after five runs (prepare_threshold), so its
    trap needs five more before PostgreSQL's own five."""
    common = 5 if backend.driver == "asyncpg" else 10
    async with unit_of_work(jobs_factory) as session:
        connection = await session.connection()
        await connection.exec_driver_sql(SKEWED_JOBS)
    engine: Any = jobs_factory.kw["bind"]
    async with engine.connect() as connection:
        await connection.exec_driver_sql("ANALYZE job")
        await connection.commit()

    async def plain(session: AsyncSession, status: JobStatus) -> bool:
        match = select(Job.id).where(col(Job.status) == status)
        return bool((await session.exec(select(exists(match)))).one())

    generic, _, plan = await plans_after_skewed_reads(jobs_factory, plain, common)
    assert generic >= 1  # the rare status ran on the plan made for "any status"
    assert "Seq Scan on job" in plan, plan  # reads until a match: all of it for FAILED

    generic, custom, _ = await plans_after_skewed_reads(jobs_factory, any_job_in, common)
    assert (generic, custom) == (0, 6)

    # For every query: a startup parameter, or the role's setting in this database.
    startup: dict[str, Any] = (
        {"server_settings": {"plan_cache_mode": "force_custom_plan"}}
        if backend.driver == "asyncpg"
        else {"options": "-c plan_cache_mode=force_custom_plan"}
    )
    forced = create_async_engine(engine.url, connect_args=startup)
    try:
        forced_factory = create_session_factory(forced)
        generic, custom, _ = await plans_after_skewed_reads(forced_factory, plain, common)
        assert (generic, custom) == (0, 6)
    finally:
        await forced.dispose()
    async with engine.connect() as connection:
        database = engine.url.database
        await connection.exec_driver_sql(
            f'ALTER ROLE CURRENT_USER IN DATABASE "{database}"'
            " SET plan_cache_mode = force_custom_plan"
        )
        await connection.commit()
    generic, custom, _ = await plans_after_skewed_reads(jobs_factory, plain, common)
    assert (generic, custom) == (0, 6)
    async with jobs_factory() as session, session.begin():
        assert await any_job_in(session, JobStatus.FAILED)
        assert not await any_job_in(session, JobStatus.RUNNING)
