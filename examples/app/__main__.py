"""Demo: `python -m examples.app` creates and seeds a SQLite database, then serves /docs.

Production never calls create_all: Alembic migrations own the schema there.
"""

import asyncio

import uvicorn
from sqlmodel import SQLModel, select

from examples.app.db import create_engine, create_session_factory
from examples.app.main import create_app
from examples.app.models import Team
from examples.app.settings import Settings


async def create_demo_database(settings: Settings) -> None:
    engine = create_engine(settings)
    async with engine.begin() as conn:
        await conn.run_sync(SQLModel.metadata.create_all)
    async with create_session_factory(engine)() as session:
        if (await session.exec(select(Team).limit(1))).first() is None:
            session.add(Team(name="Preventers", headquarters="Sharp Tower"))
            session.add(Team(name="Z-Force", headquarters="Sister Margaret's Bar"))
            await session.commit()
    await engine.dispose()


def main() -> None:
    settings = Settings()
    asyncio.run(create_demo_database(settings))
    uvicorn.run(create_app(settings), host="127.0.0.1", port=8000)


if __name__ == "__main__":
    main()
