"""A job queue in the database, and the worker process that runs it: `python -m examples.app.jobs`.

Enqueue in the same transaction as the write that needs the job: both commit or neither does
(a BackgroundTask or a message broker can lose the job, or run it for a write that rolled back).
Workers claim due jobs with SELECT ... FOR UPDATE SKIP LOCKED, so several workers, in one process
or many, never take the same job; each job's effects and its DONE mark commit together.
"""

import asyncio
import contextlib
import logging
import os
import signal
import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import exists
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.pool import NullPool
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.db import create_engine, create_session_factory
from examples.app.models import Hero, Job, JobStatus
from examples.app.settings import Settings
from examples.servicebase.transactions import unit_of_work

log = logging.getLogger(__name__)

Handler = Callable[[AsyncSession, dict[str, Any]], Awaitable[None]]


# --8<-- [start:enqueue]
async def enqueue(session: AsyncSession, kind: str, payload: dict[str, Any]) -> Job:
    """Add a job to the caller's unit of work: it exists only if that unit commits."""
    job = Job(kind=kind, payload=payload)
    session.add(job)
    await session.flush()
    return job


# --8<-- [end:enqueue]


# --8<-- [start:claim]
async def claim(
    session_factory: async_sessionmaker[AsyncSession], worker: str, limit: int = 10
) -> list[Job]:
    """Up to `limit` due jobs, marked RUNNING for this worker, in their own short transaction.

    SKIP LOCKED passes over rows another worker is claiming right now instead of waiting for
    them (tested on PostgreSQL and MariaDB 10.11; MySQL has it from 8.0). SQLite has no row
    locks: its BEGIN IMMEDIATE makes claims take turns, with the same result.
    """
    async with unit_of_work(session_factory) as session:
        due = (
            select(Job)
            .where(col(Job.status) == JobStatus.QUEUED, col(Job.run_after) <= datetime.now(UTC))
            .order_by(col(Job.run_after), col(Job.id))
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        jobs = list((await session.exec(due)).all())
        now = datetime.now(UTC)
        for job in jobs:
            job.status, job.locked_by, job.locked_at = JobStatus.RUNNING, worker, now
            job.attempts += 1
    return jobs


# --8<-- [end:claim]


# --8<-- [start:run_job]
async def run_job(
    session_factory: async_sessionmaker[AsyncSession],
    handlers: Mapping[str, Handler],
    job: Job,
    *,
    max_attempts: int = 5,
    backoff: timedelta = timedelta(seconds=2),
) -> JobStatus | None:
    """Run one claimed job, holding its row lock until the outcome commits: reclaim_stale
    passes over it while this worker lives. The handler's writes and the DONE mark commit
    together; a crash before that commit leaves neither, and the job runs again (handlers must
    tolerate a re-run: an email may go twice). None: reclaimed and taken by another worker."""
    async with unit_of_work(session_factory) as session:
        mine = select(Job).where(
            col(Job.id) == job.id,
            col(Job.status) == JobStatus.RUNNING,
            col(Job.locked_by) == job.locked_by,
        )
        locked = (await session.exec(mine.with_for_update())).first()
        if locked is None:
            return None
        try:
            async with session.begin_nested():  # a failure undoes the handler's writes only
                await handlers[locked.kind](session, locked.payload)
        except Exception as error:  # record it and retry later (or give up)
            log.warning("job %s (%s) failed: %r", locked.id, locked.kind, error)
            retry = locked.attempts < max_attempts
            locked.status = JobStatus.QUEUED if retry else JobStatus.FAILED
            locked.run_after = datetime.now(UTC) + backoff * 2 ** (locked.attempts - 1)
            locked.locked_by = None
            locked.last_error = f"{type(error).__name__}: {error}"[:1000]
        else:
            locked.status = JobStatus.DONE
        return locked.status


async def reclaim_stale(
    session_factory: async_sessionmaker[AsyncSession], older_than: timedelta
) -> int:
    """Put back RUNNING jobs whose worker died: claimed longer ago than older_than and not
    locked (a live worker holds its job's row lock while it runs it)."""
    cutoff = datetime.now(UTC) - older_than
    async with unit_of_work(session_factory) as session:
        orphans = (
            select(Job.id)
            .where(col(Job.status) == JobStatus.RUNNING, col(Job.locked_at) < cutoff)
            .with_for_update(skip_locked=True)
        )
        ids = list((await session.exec(orphans)).all())
        if ids:
            await session.exec(
                update(Job)
                .where(col(Job.id).in_(ids))
                .values(status=JobStatus.QUEUED, locked_by=None)
            )
        return len(ids)


# --8<-- [end:run_job]


# --8<-- [start:worker]
async def work(
    session_factory: async_sessionmaker[AsyncSession],
    handlers: Mapping[str, Handler],
    stop: asyncio.Event,
    *,
    name: str,
    idle_seconds: float = 0.5,
    orphaned_after: timedelta = timedelta(minutes=1),
) -> int:
    """Claim and run jobs one at a time until `stop` is set; the job in hand is finished first.
    When idle, requeue the jobs of workers that died. Returns the number of jobs run."""
    done = 0
    while not stop.is_set():
        jobs = await claim(session_factory, name, limit=1)  # one: its lock is taken at once
        for job in jobs:
            if await run_job(session_factory, handlers, job) is not None:
                done += 1
        if not jobs:  # nothing due: reclaim orphans, then wait, but wake at once on stop
            await reclaim_stale(session_factory, orphaned_after)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), idle_seconds)
    return done


async def welcome_hero(session: AsyncSession, payload: dict[str, Any]) -> None:
    hero = await session.get_one(Hero, uuid.UUID(payload["hero_id"]))
    hero.attributes = {**hero.attributes, "welcomed": True}


HANDLERS: dict[str, Handler] = {"welcome_hero": welcome_hero}


async def main() -> None:
    """One engine per worker process, created in its event loop and disposed at exit."""
    settings = Settings()
    engine = create_engine(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)  # finish the job in hand, then exit
    name = f"{socket.gethostname()}:{os.getpid()}"
    try:
        done = await work(create_session_factory(engine), HANDLERS, stop, name=name)
        log.info("worker %s stopped after %d jobs", name, done)
    finally:
        await engine.dispose()


# --8<-- [end:worker]


# --8<-- [start:custom_plan]
async def any_job_in(session: AsyncSession, status: JobStatus) -> bool:
    """Is any job in this status? Nearly all are DONE, a few FAILED: skewed data.

    asyncpg prepares and caches each statement, and after five runs PostgreSQL may switch it to
    a generic plan, made for "some status". Chosen while DONE was asked for, that plan is a
    sequential scan that stops at the first match; for FAILED it reads the whole table.
    SET LOCAL keeps this transaction on plans made for the value asked (planned each run).
    """
    connection = await session.connection()  # the session's transaction
    if connection.dialect.name == "postgresql":
        await connection.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")
    match = select(Job.id).where(col(Job.status) == status)
    return bool((await session.exec(select(exists(match)))).one())


# --8<-- [end:custom_plan]


# --8<-- [start:loop_per_task]
def run_in_its_own_loop(kind: str, payload: dict[str, Any], settings: Settings) -> None:
    """One job from sync code (a Celery or RQ task, a cron script): asyncio.run per call.

    An engine's connections belong to the event loop that opened them: an engine made at import
    and reused by the next asyncio.run fails. So the engine lives inside the call; NullPool,
    as nothing outlives the loop to reuse a connection.
    """

    async def main() -> None:
        engine = create_engine(settings, poolclass=NullPool)
        try:
            async with unit_of_work(create_session_factory(engine)) as session:
                await HANDLERS[kind](session, payload)
        finally:
            await engine.dispose()

    asyncio.run(main())


# --8<-- [end:loop_per_task]


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    asyncio.run(main())
