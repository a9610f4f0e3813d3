"""The shape most existing apps start from (the SQLModel tutorial's): engine and session factory
created at import. Nothing disposes the engine, so `scripts/check_async_sqlmodel.py` reports
ASM026 here; db.py is the same module moved into the lifespan."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

# --8<-- [start:engine_at_import]
engine = create_async_engine("sqlite+aiosqlite:///notes.db")
SessionLocal = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


async def get_session() -> AsyncIterator[AsyncSession]:
    async with SessionLocal() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
# --8<-- [end:engine_at_import]
