"""The FastAPI application: the lifespan owns the engine and disposes it at shutdown."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

from fastapi import FastAPI
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.api import admin, health, heroes, powers, teams
from examples.app.api.deps import cursor_secret
from examples.app.api.health import failure
from examples.app.db import (
    check_connection_budget,
    create_engine,
    create_session_factory,
    log_slow_queries,
    stop_tracing,
    trace_with_opentelemetry,
)
from examples.app.middleware import CancelOnDisconnect
from examples.app.replicas import ReplicaReads
from examples.app.settings import Settings
from examples.servicebase.web import add_error_handlers

logger = logging.getLogger(__name__)


# --8<-- [start:lifespan]
class AppState(TypedDict):
    settings: Settings
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    replica_engine: AsyncEngine | None
    reads: ReplicaReads  # read-only endpoints' sessions (replica, else primary)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[AppState]:
        cursor_secret(settings)  # no CURSOR_SECRET: refuse to start (cursors must outlive us)
        engine = create_engine(settings)
        replica_url = settings.read_replica_url
        replica = create_engine(settings, replica_url.get_secret_value()) if replica_url else None
        engines = [engine] if replica is None else [engine, replica]
        if settings.opentelemetry:
            trace_with_opentelemetry(*engines)  # all of them: the replica too
        try:
            try:
                # Bounded: a silent host would hold startup for asyncpg's own 60 s.
                async with asyncio.timeout(settings.connect_timeout):
                    await check_connection_budget(engine, settings)
            except (OSError, DBAPIError, TimeoutError) as error:
                # Start anyway: /health/ready says 503 until the database answers; the log why.
                logger.warning("database unavailable at startup: %s", failure(error), exc_info=True)
            for each in engines:
                log_slow_queries(each, settings.slow_query_ms)
            # Lifespan state: each request sees it as request.state.session_factory.
            yield {
                "settings": settings,
                "engine": engine,
                "session_factory": create_session_factory(engine),
                "replica_engine": replica,
                "reads": ReplicaReads(create_session_factory(replica) if replica else None),
            }
        finally:
            if settings.opentelemetry:
                stop_tracing(*engines)  # a later app in this process instruments its own
            for each in engines:
                await each.dispose()  # close pooled connections while the loop still runs

    app = FastAPI(title="async-sqlmodel reference app", lifespan=lifespan)
    for router in (teams.router, heroes.router, powers.router, health.router, admin.router):
        app.include_router(router)
    add_error_handlers(app)
    app.add_middleware(CancelOnDisconnect)  # a client that went away cancels its handler
    return app


# --8<-- [end:lifespan]
