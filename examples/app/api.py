"""HTTP routes. Each request gets its own AsyncSession from the lifespan's session factory."""

from collections.abc import AsyncIterator, Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.models import Team
from examples.app.schemas import TeamPublic


# --8<-- [start:get_session]
async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    session_factory: async_sessionmaker[AsyncSession] = request.state.session_factory
    async with session_factory() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
# --8<-- [end:get_session]

router = APIRouter()


@router.get("/teams", response_model=list[TeamPublic])
async def list_teams(session: SessionDep) -> Sequence[Team]:
    result = await session.exec(select(Team).order_by(col(Team.id)).limit(100))
    return result.all()
