"""The reference app under several uvicorn worker processes, directly and behind PgBouncer.

WEB_CONCURRENCY sets both uvicorn's worker count and the app's `workers` setting, so the
connection budget each worker checks at startup ((workers + 1) x (pool_size + max_overflow)
within the server's max_connections minus reserved ones: a restart runs one replacement beside
the old workers) counts the processes that really run. While
concurrent clients load the app, the server's connections to this database are sampled every
50 ms; halfway through, SIGHUP makes uvicorn restart every worker (each finishes its in-flight
requests). Reports requests, errors, the peak connection count against the budget, and the
worker pids before and after the restart.
"""

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from benchmarks.common import save, scratch_database
from benchmarks.load import drive, free_port, graceful_shutdown, seed, wait_until_healthy

ROOT = Path(__file__).parents[1]
WORKERS, POOL_SIZE, MAX_OVERFLOW = 3, 3, 2
PGBOUNCER_POOL_SIZE = 5  # default_pool_size in .ci/pgbouncer: its server connections per database


async def main(
    clients: int = 40,
    seconds: float = 6.0,
    *,
    pgbouncer_url: str | None = None,
    keepalive: bool = False,
    save_results: bool = True,
) -> dict[str, Any]:
    async with scratch_database("postgresql") as url:
        database_url = url.render_as_string(hide_password=False)
        await seed(database_url, heroes=300)
        app_url = database_url
        if pgbouncer_url:
            app_url = (
                make_url(pgbouncer_url)
                .set(database=url.database)
                .render_as_string(hide_password=False)
            )
        results = await run(
            url, app_url, clients, seconds, pgbouncer=bool(pgbouncer_url), keepalive=keepalive
        )
    name = "workers-pgbouncer" if pgbouncer_url else "workers"
    print({key: value for key, value in results.items() if key != "first_errors"})
    if save_results:
        print(f"saved {save(name, 'postgresql', results)}")
    return results


async def run(
    url: URL, app_url: str, clients: int, seconds: float, *, pgbouncer: bool, keepalive: bool
) -> dict[str, Any]:
    port = free_port()
    environment = {
        **os.environ,
        "DATABASE_URL": app_url,
        "WEB_CONCURRENCY": str(WORKERS),
        "POOL_SIZE": str(POOL_SIZE),
        "MAX_OVERFLOW": str(MAX_OVERFLOW),
        "PGBOUNCER": "true" if pgbouncer else "false",
        "CURSOR_SECRET": "workers-benchmark-secret-0123456789",
    }
    command = [sys.executable, "-m", "uvicorn", "--factory", "examples.app.main:create_app"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    command += ["--timeout-graceful-shutdown", "10"]
    server = await asyncio.create_subprocess_exec(
        *command, cwd=ROOT, env=environment, stderr=asyncio.subprocess.PIPE
    )
    base_url = f"http://127.0.0.1:{port}"
    observer = create_async_engine(url.set(database="postgres"), poolclass=NullPool)
    # The locker and the sampler name themselves: only the app's connections are counted.
    locker = create_async_engine(
        url, poolclass=NullPool, connect_args={"server_settings": {"application_name": "locker"}}
    )
    peak = 0
    sampling = True

    async def sample() -> None:
        nonlocal peak
        async with observer.connect() as connection:
            while sampling:
                count = await connection.exec_driver_sql(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1"
                    " AND backend_type = 'client backend' AND application_name <> 'locker'",
                    (url.database,),
                )
                peak = max(peak, int(count.scalar_one()))
                await connection.commit()  # pg_stat_activity is a snapshot per transaction
                await asyncio.sleep(0.05)

    async def hold_every_hero(after: float, hold: float) -> None:
        """Requests that write a hero wait for this lock, holding their connections: the pools
        fill up to their limit, and the rest of the requests wait for a free connection."""
        await asyncio.sleep(after)
        async with locker.connect() as connection:
            await connection.exec_driver_sql("SELECT id FROM hero FOR UPDATE")
            await asyncio.sleep(hold)
            await connection.rollback()

    try:
        async with httpx.AsyncClient(base_url=base_url) as probe:
            await wait_until_healthy(probe, server)
        before = worker_pids(server.pid)
        sampler = asyncio.create_task(sample())

        async def restart_halfway() -> tuple[list[int], dict[str, Any]]:
            await asyncio.sleep(seconds / 2)
            # SIGHUP: uvicorn restarts every worker, one by one, while exports are streaming.
            in_flight = await graceful_shutdown(base_url, server, signal.SIGHUP)
            for _ in range(200):
                after = worker_pids(server.pid)
                if len(after) == WORKERS and not set(after) & set(before):
                    break
                await asyncio.sleep(0.05)
            return after, in_flight

        # A new connection per request: a request sent on a kept-alive connection just as its
        # worker closes it (idle, at shutdown) gets a reset, which no server can prevent.
        load, (after, in_flight), _ = await asyncio.gather(
            drive(base_url, clients, seconds, keepalive=keepalive),
            restart_halfway(),
            hold_every_hero(seconds / 8, 1.0),
        )
        sampling = False
        await sampler
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(server.communicate(), timeout=30)
        await observer.dispose()
        await locker.dispose()
    log = stderr.decode(errors="replace")
    return {
        **load,
        "failed": load["errors"] - load["dropped_unread"],
        "restart_in_flight": in_flight,
        "workers": WORKERS,
        # Directly: every worker's pool, plus the replacement a restart runs beside the old
        # worker. Behind PgBouncer the app has no pool (NullPool) and PgBouncer's own pool is
        # the limit, however many workers and clients there are.
        "budget": PGBOUNCER_POOL_SIZE if pgbouncer else (WORKERS + 1) * (POOL_SIZE + MAX_OVERFLOW),
        "peak_connections": peak,
        "pids_before": before,
        "pids_after": after,
        "keepalive": keepalive,
        "clean_log": "Traceback" not in log,
    }


def worker_pids(parent: int) -> list[int]:
    """The uvicorn supervisor's worker processes (from /proc: no extra dependency)."""
    children = Path(f"/proc/{parent}/task/{parent}/children")
    pids = [int(pid) for pid in children.read_text().split()] if children.exists() else []
    return sorted(pid for pid in pids if b"spawn_main" in command_line(pid))


def command_line(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # gone meanwhile
        return b""
