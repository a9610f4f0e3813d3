"""Probes: /health/live (the process answers) and /health/ready (the database answers too)."""

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine

from examples.app.db import READ_ONLY
from examples.app.settings import Settings

router = APIRouter(tags=["health"])


# --8<-- [start:health]
def pool_metrics(engine: AsyncEngine) -> dict[str, Any]:
    pool: Any = engine.pool
    metrics: dict[str, Any] = {"class": type(pool).__name__}
    for name in ("size", "checkedout", "overflow", "checkedin"):
        if hasattr(pool, name):  # NullPool and StaticPool have fewer counters
            metrics[name] = getattr(pool, name)()
    return metrics


def failure(error: BaseException) -> str:
    """The driver error's class (and code), never its text: that names hosts and databases."""
    if isinstance(error, DBAPIError) and error.orig is not None:
        error = error.orig.__cause__ or error.orig  # asyncpg's own class, under SQLAlchemy's
    code = error.args[0] if error.args and isinstance(error.args[0], int) else None
    return type(error).__name__ if code is None else f"{type(error).__name__} {code}"


@router.get("/health/live")
async def live() -> dict[str, str]:
    # Liveness never touches the database: a database outage must not restart every pod.
    return {"status": "ok"}


@router.get("/health/ready", responses={503: {"description": "Database unavailable or pool full"}})
async def ready(request: Request) -> JSONResponse:
    # Readiness: while it says 503, the orchestrator sends this pod no traffic.
    engine: AsyncEngine = request.state.engine
    settings: Settings = request.state.settings
    pool = pool_metrics(engine)  # before our own checkout
    database = await answers(engine, settings.health_timeout)
    body: dict[str, Any] = {"database": database, "pool": pool}
    replica: AsyncEngine | None = getattr(request.state, "replica_engine", None)
    if replica is not None:  # not decisive: reads fall back to the primary
        body["replica"] = await answers(replica, settings.health_timeout)
    if database != "ok":
        body = {"status": "unavailable", **body}
        return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})
    return JSONResponse({"status": "ok", **body})


async def answers(engine: AsyncEngine, seconds: float) -> str:
    """ "ok", or the kind of failure (down, no answer, pool full, wrong database or password)."""
    try:
        # Shorter than pool_timeout: a full pool or a dead server answers 503 in seconds.
        async with asyncio.timeout(seconds), engine.connect() as connection:
            await connection.execution_options(**READ_ONLY)  # SQLite: don't wait for writers
            await connection.execute(text("SELECT 1"))
    except (TimeoutError, PoolTimeoutError, DBAPIError, OSError) as error:
        return failure(error)
    return "ok"


# --8<-- [end:health]
