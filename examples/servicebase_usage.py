"""Using the services: filters, pages, cursors, versions, soft delete, upserts.

Run: `python -m examples.servicebase_usage` (in-memory SQLite; prints each step).
"""

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from sqlmodel import SQLModel

from examples.app.db import create_engine, create_session_factory
from examples.app.models import Hero
from examples.app.schemas import HeroCreate, HeroUpdate, TeamCreate
from examples.app.services import HeroService, TeamService
from examples.app.settings import Settings
from examples.servicebase.cursors import CursorPage
from examples.servicebase.pagination import Page
from examples.servicebase.transactions import unit_of_work

CURSOR_SECRET = b"change-me: at least 16 random bytes from settings"


# --8<-- [start:search]
async def adults_in_team(heroes: HeroService, team: str, offset: int = 0) -> Page[Hero]:
    # The filter is data (e.g. a client's JSON); the service checks it against its allowlist.
    adults_of_team = {
        "and": [
            {"field": "age", "op": "gte", "value": 18},
            {"field": "team.name", "op": "eq", "value": team},
        ]
    }
    return await heroes.page(
        adults_of_team, sort="-age,name", limit=20, offset=offset, load=["team"]
    )


# --8<-- [end:search]


# --8<-- [start:cursor_walk]
async def every_hero_by_age(heroes: HeroService) -> list[str]:
    seen: list[str] = []
    page: CursorPage[Hero] = await heroes.page_by_cursor(sort="age:nulls_first", limit=50)
    while True:
        seen += [hero.name for hero in page.items]
        if page.next_cursor is None:
            return seen
        page = await heroes.page_by_cursor(
            sort="age:nulls_first", limit=50, cursor=page.next_cursor
        )


# --8<-- [end:cursor_walk]


# --8<-- [start:versioned_update]
async def birthday(heroes: HeroService, hero_id: uuid.UUID, seen_version: int) -> Hero:
    # The client sends back the version it read (an ETag): a stale one raises StaleVersion.
    hero = await heroes.get(hero_id)
    patch = HeroUpdate(age=(hero.age or 0) + 1)
    return await heroes.update(hero_id, patch, expected_version=seen_version)


# --8<-- [end:versioned_update]


# --8<-- [start:bulk]
async def import_heroes(heroes: HeroService, rows: Sequence[dict[str, Any]]) -> None:
    # Validate every row first (HeroCreate), then one INSERT ... ON CONFLICT per chunk:
    # a bad row fails the whole import before anything is written.
    items = [HeroCreate.model_validate(row) for row in rows]
    await heroes.upsert_many(items, conflict=["secret_name"])


# --8<-- [end:bulk]


async def main() -> None:
    engine = create_engine(Settings(database_url="sqlite+aiosqlite:///:memory:"))
    async with engine.begin() as conn:
        await conn.run_sync(SQLModel.metadata.create_all)
    session_factory = create_session_factory(engine)
    # --8<-- [start:unit_of_work_usage]
    async with unit_of_work(session_factory) as session:  # commit on success, else rollback
        teams = TeamService(session)
        heroes = HeroService(session, cursor_secret=CURSOR_SECRET)
        team, _ = await teams.get_or_create(
            TeamCreate(name="Preventers", headquarters="Sharp Tower"), keys=["name"]
        )
        await import_heroes(
            heroes,
            [
                {"name": "Rusty-Man", "secret_name": "Tommy Sharp", "age": 48, "team_id": team.id},
                {"name": "Deadpond", "secret_name": "Dive Wilson", "team_id": team.id},
            ],
        )
    # --8<-- [end:unit_of_work_usage]
    async with unit_of_work(session_factory) as session:
        heroes = HeroService(session, cursor_secret=CURSOR_SECRET)
        page = await adults_in_team(heroes, "Preventers")
        print(page.total, [(h.name, h.team.name if h.team else None) for h in page.items])
        print(await every_hero_by_age(heroes))
        older = await birthday(heroes, page.items[0].id, seen_version=page.items[0].version)
        print(older.name, older.age, "version", older.version)
        await heroes.delete(older.id)
        print("after soft delete:", await heroes.count(), "visible")
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
