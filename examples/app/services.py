"""The reference app's services: ServiceBase plus each model's filter allowlist and loaders."""

import uuid
from collections.abc import Sequence

from sqlalchemy.orm import joinedload, selectinload
from sqlmodel import col, func, select, update

from examples.app.models import Hero, HeroPower, Power, Team
from examples.app.schemas import (
    HeroCreate,
    HeroPowerCreate,
    HeroPowerGrant,
    HeroUpdate,
    PowerCreate,
    TeamCreate,
    TeamUpdate,
)
from examples.servicebase.cursors import CursorPages
from examples.servicebase.errors import NotFound
from examples.servicebase.filters import (
    COMPARISON,
    EQUALITY,
    NULLABLE,
    TEXT,
    FilterField,
    FilterSpec,
)
from examples.servicebase.service import ServiceBase, rel
from examples.servicebase.soft_delete import SoftDelete
from examples.servicebase.upserts import Upserts
from examples.servicebase.versioning import Versioned


# --8<-- [start:team_service]
class TeamService(Upserts[Team, TeamCreate, TeamUpdate]):
    model = Team
    filters = FilterSpec(
        {
            "name": FilterField(Team.name, COMPARISON | TEXT, sortable=True),
            "headquarters": FilterField(Team.headquarters, EQUALITY | TEXT),
            "created_at": FilterField(Team.created_at, COMPARISON, sortable=True),
        }
    )
    loaders = {"heroes": lambda: selectinload(rel(Team.heroes))}
    default_sort = "name"


# --8<-- [end:team_service]


# --8<-- [start:hero_service]
class HeroService(
    CursorPages[Hero, HeroCreate, HeroUpdate],
    Upserts[Hero, HeroCreate, HeroUpdate],
    SoftDelete[Hero, HeroCreate, HeroUpdate],
    Versioned[Hero, HeroCreate, HeroUpdate],
):
    model = Hero
    live_column = "live"  # unique keys hold among live rows
    filters = FilterSpec(
        {
            "name": FilterField(Hero.name, COMPARISON | TEXT, sortable=True),
            "age": FilterField(Hero.age, COMPARISON | NULLABLE, sortable=True),
            "status": FilterField(Hero.status, EQUALITY, sortable=True),
            "team_id": FilterField(Hero.team_id, EQUALITY | NULLABLE),
            "created_at": FilterField(Hero.created_at, COMPARISON, sortable=True),
            # Related columns: compiled to EXISTS, so a hero with two matches appears once.
            "team.name": FilterField(Team.name, EQUALITY | TEXT, path=(Hero.team,)),
            "power.name": FilterField(
                Power.name, EQUALITY | TEXT, path=(Hero.power_links, HeroPower.power)
            ),
            "power.level": FilterField(HeroPower.level, COMPARISON, path=(Hero.power_links,)),
        }
    )
    loaders = {
        "team": lambda: joinedload(rel(Hero.team)),
        "powers": lambda: selectinload(rel(Hero.power_links)).joinedload(rel(HeroPower.power)),
    }
    default_sort = "name"

    async def apprentices_of(self, mentor_id: uuid.UUID) -> Sequence[Hero]:
        """A model-specific query: the mentor's living apprentices, oldest first."""
        await self.get(mentor_id)  # NotFound for an unknown or deleted mentor
        statement = (
            select(Hero)
            .where(Hero.mentor_id == mentor_id, *self._scope(include_deleted=False))
            .order_by(col(Hero.age).desc(), col(Hero.id))
        )
        return (await self.session.exec(statement)).all()

    # --8<-- [end:hero_service]

    # --8<-- [start:atomic_increment]
    async def celebrate_birthday(self, hero_id: uuid.UUID) -> Hero:
        """age + 1 computed by the database: concurrent calls can't lose an increment.

        Read-modify-write in Python (hero.age += 1) would: two requests read 30, both write 31.
        """
        statement = (
            update(Hero)
            .where(col(Hero.id) == hero_id, *self._scope(include_deleted=False))
            .values(age=func.coalesce(col(Hero.age), 0) + 1, version=col(Hero.version) + 1)
            .execution_options(synchronize_session=False)
        )
        if await self._execute_rowcount(statement) == 0:
            raise NotFound(f"hero {hero_id} not found")
        return await self.get(hero_id)

    # --8<-- [end:atomic_increment]

    async def set_power_level(self, hero_id: uuid.UUID, power_id: int, level: int) -> HeroPower:
        """Grant a power, or change its level: the link row carries the extra column."""
        await self.get(hero_id)
        if await self.session.get(Power, power_id) is None:
            raise NotFound(f"power {power_id} not found")
        link = await self.session.get(HeroPower, (hero_id, power_id))
        if link is None:
            link = HeroPower(hero_id=hero_id, power_id=power_id, level=level)
            self.session.add(link)
        else:
            link.level = level
        await self._flush()
        return link

    async def revoke_power(self, hero_id: uuid.UUID, power_id: int) -> None:
        link = await self.session.get(HeroPower, (hero_id, power_id))
        if link is None:
            raise NotFound(f"hero {hero_id} does not have power {power_id}")
        await self.session.delete(link)
        await self._flush()


# --8<-- [start:composite_key]
class HeroPowerService(ServiceBase[HeroPower, HeroPowerCreate, HeroPowerGrant]):
    """A composite primary key: ids are tuples in key order, get((hero_id, power_id))."""

    model = HeroPower
    filters = FilterSpec({"level": FilterField(HeroPower.level, COMPARISON, sortable=True)})
    default_sort = "-level"  # then hero_id, power_id: every key column breaks ties


# --8<-- [end:composite_key]


class PowerService(ServiceBase[Power, PowerCreate, PowerCreate]):
    model = Power
    filters = FilterSpec({"name": FilterField(Power.name, EQUALITY | TEXT, sortable=True)})
    default_sort = "name"
