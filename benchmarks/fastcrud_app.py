"""The same heroes table served by FastCRUD's generated endpoints, for the HTTP comparison.

Run: uvicorn --factory benchmarks.fastcrud_app:create_app (DATABASE_URL from the environment).
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastcrud import crud_router
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from examples.app.db import create_engine
from examples.app.models import Hero
from examples.app.schemas import HeroCreate, HeroPublic, HeroUpdate
from examples.app.settings import Settings


def create_app() -> FastAPI:
    settings = Settings()
    engine = create_engine(settings)
    # FastCRUD calls session.execute(): SQLAlchemy's own AsyncSession, as its users have.
    session_factory = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)

    async def get_session() -> AsyncIterator[AsyncSession]:
        async with session_factory() as session:
            yield session

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)
    router: Any = crud_router(
        session=get_session,
        model=Hero,
        create_schema=HeroCreate,
        update_schema=HeroUpdate,
        select_schema=HeroPublic,  # the public columns, as the reference app's: no secret_name
        path="/heroes",
        tags=["heroes"],
        included_methods=["read_multi"],
    )
    app.include_router(router)

    @app.get("/health/ready")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
