"""The engine moves into the lifespan; SessionLocal stays where every module imports it from."""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

# --8<-- [start:lifespan]
# Unbound at import: `from .db import SessionLocal` keeps working everywhere, nothing connects.
SessionLocal = async_sessionmaker(class_=AsyncSession, expire_on_commit=False)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    engine = create_async_engine(os.environ["DATABASE_URL"], pool_pre_ping=True)
    SessionLocal.configure(bind=engine)  # sessions made from now on use this engine
    try:
        yield
    finally:
        await engine.dispose()  # close pooled connections while the event loop still runs


# --8<-- [end:lifespan]


# --8<-- [start:dependencies]
async def get_session_factory() -> async_sessionmaker[AsyncSession]:
    # What testing.md's app_client replaces: every request's session comes from it.
    return SessionLocal


SessionFactory = Annotated[async_sessionmaker[AsyncSession], Depends(get_session_factory)]


async def get_session(factory: SessionFactory) -> AsyncIterator[AsyncSession]:
    # The tutorial's: endpoints commit themselves.
    async with factory() as session:
        yield session


async def get_transaction(factory: SessionFactory) -> AsyncIterator[AsyncSession]:
    # The skill's: one transaction per request, committed here; endpoints only flush.
    async with factory() as session, session.begin():
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
# scope="function": the commit runs before the response is sent, not after the client got a 2xx.
TransactionDep = Annotated[AsyncSession, Depends(get_transaction, scope="function")]
# --8<-- [end:dependencies]
