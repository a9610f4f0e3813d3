"""Demo: `python -m examples.app` creates and seeds a SQLite database, then serves /docs.

Production never calls create_all: Alembic migrations own the schema there.
"""

import asyncio

import uvicorn
from sqlmodel import SQLModel, select

from examples.app.db import create_engine, create_session_factory
from examples.app.main import create_app
from examples.app.models import Hero, Power, Team
from examples.app.settings import Settings


async def create_demo_database(settings: Settings) -> None:
    engine = create_engine(settings)
    async with engine.begin() as conn:
        await conn.run_sync(SQLModel.metadata.create_all)
    async with create_session_factory(engine)() as session:
        if (await session.exec(select(Team).limit(1))).first() is None:
            preventers = Team(name="Preventers", headquarters="Sharp Tower")
            z_force = Team(name="Z-Force", headquarters="Sister Margaret's Bar")
            rusty = Hero(name="Rusty-Man", secret_name="Tommy Sharp", age=48, team=preventers)
            session.add_all(
                [
                    rusty,
                    Hero(name="Deadpond", secret_name="Dive Wilson", team=z_force, mentor=rusty),
                    Hero(name="Spider-Boy", secret_name="Pedro Parqueador", age=16),
                    Power(name="Flight", description="Leaves the ground"),
                ]
            )
            await session.commit()
    await engine.dispose()


def main() -> None:
    settings = Settings()
    asyncio.run(create_demo_database(settings))
    uvicorn.run(create_app(settings), host="127.0.0.1", port=8000)


if __name__ == "__main__":
    main()
