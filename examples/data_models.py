"""Table models vs data models: validate input, apply partial updates, shape output.

Run: `python -m examples.data_models`.
"""

import asyncio
from typing import Annotated

from pydantic import Field as PydanticField
from pydantic import StringConstraints
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.db import create_engine, create_session_factory
from examples.app.models import Hero
from examples.app.schemas import HeroCreate, HeroPublic, HeroUpdate
from examples.app.settings import Settings


# --8<-- [start:create_from_data_model]
async def create_hero(session: AsyncSession, data: HeroCreate) -> Hero:
    # data was validated when HeroCreate was built; model_validate copies it into the table model.
    hero = Hero.model_validate(data)
    session.add(hero)
    await session.flush()  # INSERT now: id, created_at and version are set from here on
    return hero


# --8<-- [end:create_from_data_model]


# --8<-- [start:partial_update]
async def update_hero(session: AsyncSession, hero: Hero, patch: HeroUpdate) -> Hero:
    # exclude_unset: only fields the client sent. {"age": null} clears age; {} changes nothing.
    hero.sqlmodel_update(patch.model_dump(exclude_unset=True))
    await session.flush()
    return hero


# --8<-- [end:partial_update]


# --8<-- [start:strict_data_model]
VillainCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]


class VillainRegister(SQLModel):
    # Unknown keys are refused. In model_config, not as a class keyword (SQLModel drops that);
    # a dict literal type-checks under mypy --strict, ConfigDict(...) doesn't.
    model_config = {"extra": "forbid"}

    # Patterns go in the type: SQLModel's Field has no pattern= and ignores regex=.
    code: VillainCode = Field(max_length=3)
    lair: Annotated[str, PydanticField(pattern=r"^[^\x00]*$")] = Field(default="", max_length=100)


# --8<-- [end:strict_data_model]


async def main() -> None:
    engine = create_engine(Settings(database_url="sqlite+aiosqlite:///:memory:"))
    async with engine.begin() as conn:
        await conn.run_sync(SQLModel.metadata.create_all)
    async with create_session_factory(engine)() as session:
        hero = await create_hero(session, HeroCreate(name="Deadpond", secret_name="Dive Wilson"))
        await update_hero(session, hero, HeroUpdate.model_validate({"age": 48}))
        await session.commit()
        print(HeroPublic.model_validate(hero).model_dump_json(indent=2))
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
