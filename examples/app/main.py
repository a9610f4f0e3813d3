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
from examples.app.db import (
    check_connection_budget,
    create_engine,
    create_session_factory,
    log_slow_queries,
    trace_with_opentelemetry,
)
from examples.app.middleware import CancelOnDisconnect
from examples.app.settings import Settings
from examples.servicebase.web import add_error_handlers

logger = logging.getLogger(__name__)


# --8<-- [start:lifespan]
class AppState(TypedDict):
    settings: Settings
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    read_session_factory: async_sessionmaker[AsyncSession]  # the replica's, or the primary's


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[AppState]:
        cursor_secret(settings)  # no CURSOR_SECRET: refuse to start (cursors must outlive us)
        engine = create_engine(settings)
        replica_url = settings.read_replica_url
        replica = create_engine(settings, replica_url.get_secret_value()) if replica_url else None
        try:
            try:
                # Bounded: a host that never answers would hold startup for the driver's own
                # connect timeout (asyncpg: 60 s).
                async with asyncio.timeout(settings.connect_timeout):
                    await check_connection_budget(engine, settings)
            except (OSError, DBAPIError, TimeoutError):
                # Start anyway: /health/ready reports 503 until the database is back.
                logger.warning("database unreachable at startup", exc_info=True)
            log_slow_queries(engine, settings.slow_query_ms)
            if settings.opentelemetry:
                trace_with_opentelemetry(engine)
            # Lifespan state: each request sees it as request.state.session_factory.
            yield {
                "settings": settings,
                "engine": engine,
                "session_factory": create_session_factory(engine),
                "read_session_factory": create_session_factory(replica or engine),
            }
        finally:
            await engine.dispose()  # close pooled connections while the loop still runs
            if replica is not None:
                await replica.dispose()

    app = FastAPI(title="async-sqlmodel reference app", lifespan=lifespan)
    for router in (teams.router, heroes.router, powers.router, health.router, admin.router):
        app.include_router(router)
    add_error_handlers(app)
    app.add_middleware(CancelOnDisconnect)  # a client that went away cancels its handler
    return app


# --8<-- [end:lifespan]
