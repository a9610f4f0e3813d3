"""Loading and changing relationships in async code, with every relationship lazy="raise".

Run: `python -m examples.relationships` (an in-memory SQLite database, prints what it loads).
"""

import asyncio
import uuid
from collections.abc import Sequence

from sqlalchemy.orm import contains_eager, joinedload, selectinload
from sqlmodel import SQLModel, col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.db import create_engine, create_session_factory
from examples.app.models import Hero, HeroPower, Power, Team
from examples.app.settings import Settings
from examples.servicebase.service import rel


# --8<-- [start:selectinload]
async def teams_with_heroes(session: AsyncSession) -> Sequence[Team]:
    # Collections: selectinload = one extra SELECT ... WHERE team_id IN (...) per 500 teams.
    statement = select(Team).options(selectinload(rel(Team.heroes))).order_by(col(Team.id))
    return (await session.exec(statement)).all()


# --8<-- [end:selectinload]


# --8<-- [start:joinedload]
async def heroes_with_team(session: AsyncSession, limit: int) -> Sequence[Hero]:
    # Many-to-one: joinedload adds a LEFT OUTER JOIN to the same query; LIMIT stays correct.
    statement = select(Hero).options(joinedload(rel(Hero.team))).order_by(Hero.name).limit(limit)
    return (await session.exec(statement)).all()


# --8<-- [end:joinedload]


# --8<-- [start:joinedload_collection]
async def first_teams_with_heroes(session: AsyncSession, limit: int) -> Sequence[Team]:
    # joinedload on a collection with LIMIT: SQLAlchemy limits the teams in a subquery, then
    # joins the heroes, so each team comes complete. The rows repeat per hero: unique() is required.
    statement = (
        select(Team).options(joinedload(rel(Team.heroes))).order_by(col(Team.id)).limit(limit)
    )
    return (await session.exec(statement)).unique().all()


# --8<-- [end:joinedload_collection]


# --8<-- [start:chained]
async def hero_with_powers(session: AsyncSession, hero_id: uuid.UUID) -> Hero:
    # Depth: chain the options along the path, hero -> links -> power.
    statement = (
        select(Hero)
        .where(Hero.id == hero_id)
        .options(selectinload(rel(Hero.power_links)).joinedload(rel(HeroPower.power)))
    )
    return (await session.exec(statement)).one()


# --8<-- [end:chained]


# --8<-- [start:contains_eager]
async def heroes_in_team(session: AsyncSession, team_name: str) -> Sequence[Hero]:
    # Filtering on the joined table: join once, and fill Hero.team from that same join.
    statement = (
        select(Hero)
        .join(rel(Hero.team))
        .where(Team.name == team_name)
        .options(contains_eager(rel(Hero.team)))
        .order_by(Hero.name)
    )
    return (await session.exec(statement)).all()


# --8<-- [end:contains_eager]


# --8<-- [start:bounded_depth]
async def hero_with_apprentices(session: AsyncSession, hero_id: uuid.UUID, depth: int) -> Hero:
    # Self-referential trees: load a fixed number of levels; deeper access raises, never queries.
    option = selectinload(rel(Hero.apprentices))
    for _ in range(depth - 1):
        option = option.selectinload(rel(Hero.apprentices))
    statement = select(Hero).where(Hero.id == hero_id).options(option)
    return (await session.exec(statement)).one()


# --8<-- [end:bounded_depth]


# --8<-- [start:refresh]
async def load_heroes_later(session: AsyncSession, team: Team) -> list[Hero]:
    # On demand, for an object already in the session: refresh loads the named relationship.
    await session.refresh(team, ["heroes"])
    return team.heroes


# --8<-- [end:refresh]


# --8<-- [start:link_rows]
async def grant_power(
    session: AsyncSession, hero_id: uuid.UUID, power_id: int, level: int
) -> HeroPower:
    # Add a many-to-many link with its extra column by creating the link row itself.
    link = HeroPower(hero_id=hero_id, power_id=power_id, level=level)
    session.add(link)
    await session.flush()
    return link


async def change_power_level(
    session: AsyncSession, hero_id: uuid.UUID, power_id: int, level: int
) -> None:
    link = await session.get_one(HeroPower, (hero_id, power_id))
    link.level = level
    await session.flush()


async def revoke_power(session: AsyncSession, hero_id: uuid.UUID, power_id: int) -> None:
    # Remove a link without loading either side.
    await session.exec(
        delete(HeroPower).where(
            col(HeroPower.hero_id) == hero_id, col(HeroPower.power_id) == power_id
        )
    )


# --8<-- [end:link_rows]


async def main() -> None:
    engine = create_engine(Settings(database_url="sqlite+aiosqlite:///:memory:"))
    async with engine.begin() as conn:
        await conn.run_sync(SQLModel.metadata.create_all)
    async with create_session_factory(engine)() as session:
        team = Team(name="Preventers", headquarters="Sharp Tower")
        mentor = Hero(name="Rusty-Man", secret_name="Tommy Sharp", team=team)
        apprentice = Hero(name="Deadpond", secret_name="Dive Wilson", team=team, mentor=mentor)
        flight = Power(name="Flight")
        session.add_all([team, mentor, apprentice, flight])
        await session.flush()
        await grant_power(session, mentor.id, flight.id or 0, level=7)
        await session.commit()

        for loaded in await teams_with_heroes(session):
            print(loaded.name, [hero.name for hero in loaded.heroes])
        hero = await hero_with_powers(session, mentor.id)
        print(hero.name, [(link.power.name, link.level) for link in hero.power_links])
        root = await hero_with_apprentices(session, mentor.id, depth=2)
        print(root.name, "teaches", [a.name for a in root.apprentices])
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
