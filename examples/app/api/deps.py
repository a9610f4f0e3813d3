"""Dependencies: one session per request, committed before the response is sent."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.db import READ_ONLY
from examples.app.middleware import finish_even_if_disconnected
from examples.app.replicas import ReplicaReads
from examples.app.services import HeroService, PowerService, TeamService
from examples.app.settings import Settings


# --8<-- [start:session_dependency]
async def get_session_factory(request: Request) -> async_sessionmaker[AsyncSession]:
    session_factory: async_sessionmaker[AsyncSession] = request.state.session_factory
    return session_factory


SessionFactoryDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_session_factory)]


async def get_session(
    request: Request, session_factory: SessionFactoryDep
) -> AsyncIterator[AsyncSession]:
    # GET only reads: on SQLite it begins DEFERRED, so reads don't wait for each other.
    options = READ_ONLY if request.method in ("GET", "HEAD") else {}
    async with session_factory(execution_options=options) as session, session.begin():
        yield session  # commits after the endpoint (and serialisation); rolls back on error
        # COMMIT next: a client leaving now no longer cancels it (a cancelled COMMIT may land).
        finish_even_if_disconnected(request.scope)


# scope="function": the commit runs before the response is sent, so a failed commit becomes
# an error response. With the default scope it would run after the client already got a 2xx.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
# --8<-- [end:session_dependency]


# --8<-- [start:read_session_dependency]
async def get_read_session(
    request: Request, primary: SessionFactoryDep
) -> AsyncIterator[AsyncSession]:
    """For endpoints that only read: the replica when there is one and it answers."""
    reads: ReplicaReads = request.state.reads
    async with await reads.session(primary, execution_options=READ_ONLY) as session:
        yield session  # nothing to commit: closing rolls the read-only transaction back


ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session)]
# --8<-- [end:read_session_dependency]


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


# --8<-- [start:service_dependencies]
def cursor_secret(settings: Settings) -> bytes:
    """The lifespan calls this at startup: a missing secret stops the app before it serves."""
    secret = settings.cursor_secret.get_secret_value().encode() if settings.cursor_secret else b""
    if len(secret) < 16:
        raise RuntimeError(
            "CURSOR_SECRET is not set (or shorter than 16 bytes): set the same random value"
            " on every worker, e.g. python -c 'import secrets; print(secrets.token_hex(32))'"
        )
    return secret


async def get_hero_service(session: SessionDep, settings: SettingsDep) -> HeroService:
    return HeroService(session, cursor_secret=cursor_secret(settings))


async def get_team_service(session: SessionDep) -> TeamService:
    return TeamService(session)  # no keyset pages: no cursor secret


async def get_power_service(session: SessionDep) -> PowerService:
    return PowerService(session)


async def get_read_hero_service(session: ReadSessionDep, settings: SettingsDep) -> HeroService:
    return HeroService(session, cursor_secret=cursor_secret(settings))


HeroServiceDep = Annotated[HeroService, Depends(get_hero_service)]
ReadHeroServiceDep = Annotated[HeroService, Depends(get_read_hero_service)]  # list endpoints
PowerServiceDep = Annotated[PowerService, Depends(get_power_service)]
TeamServiceDep = Annotated[TeamService, Depends(get_team_service)]
# --8<-- [end:service_dependencies]
