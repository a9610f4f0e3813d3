"""Demo: `python -m examples.app` creates and seeds a SQLite database, then serves /docs.

Production never calls create_all: Alembic migrations own the schema there.
"""

import asyncio

import uvicorn
from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource
from sqlmodel import SQLModel, select

from examples.app.db import create_engine, create_session_factory
from examples.app.main import create_app
from examples.app.models import Hero, Power, Team
from examples.app.settings import Settings

# The demo's explicit defaults. Production has none: Settings() fails without DATABASE_URL and
# the app without CURSOR_SECRET.
DEMO_DEFAULTS = {
    "database_url": "sqlite+aiosqlite:///./app.db",
    "cursor_secret": "demo-only-cursor-secret: never use in production",
}


class DemoSettings(Settings):
    """Settings with the demo's defaults last: the environment and .env still win."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        demo = InitSettingsSource(settings_cls, init_kwargs=DEMO_DEFAULTS)
        return init_settings, env_settings, dotenv_settings, file_secret_settings, demo


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
    settings = DemoSettings()
    asyncio.run(create_demo_database(settings))
    uvicorn.run(create_app(settings), host="127.0.0.1", port=8000)


if __name__ == "__main__":
    main()
