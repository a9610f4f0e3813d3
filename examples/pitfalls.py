"""Anti-patterns, kept as code so their tests can prove each one fails the way the references say.

Models defined here use their own registry and metadata, never the app's.
"""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import NaiveDatetime
from sqlalchemy import Column, MetaData, String
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import lazyload, registry
from sqlmodel import Field, Relationship, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.models import Hero, Team
from examples.app.schemas import HeroPublicWithTeam
from examples.app.types import UTCDateTime
from examples.servicebase.service import rel

pitfall_registry = registry(metadata=MetaData())


class PitfallModel(SQLModel, registry=pitfall_registry):
    """Base for the broken models below: they stay out of SQLModel.metadata."""


# --8<-- [start:implicit_lazy_load]
async def implicit_lazy_load(session: AsyncSession, hero_id: uuid.UUID) -> str:
    # lazyload() restores SQLAlchemy's default lazy="select" for this query.
    hero = await session.get_one(Hero, hero_id, options=[lazyload(rel(Hero.team))])
    team = hero.team  # a SELECT from inside attribute access: MissingGreenlet
    return team.name if team else ""


# --8<-- [end:implicit_lazy_load]


# --8<-- [start:raise_load]
async def raise_load(session: AsyncSession, hero_id: uuid.UUID) -> str:
    hero = await session.get_one(Hero, hero_id)  # no loader option for Hero.team
    team = hero.team  # lazy="raise": InvalidRequestError naming the attribute
    return team.name if team else ""


# --8<-- [end:raise_load]


# --8<-- [start:expired_after_commit]
async def read_after_commit(engine: AsyncEngine) -> str:
    session_factory = async_sessionmaker(engine, class_=AsyncSession)  # expire_on_commit=True
    async with session_factory() as session:
        team = Team(name="Avengers", headquarters="Stark Tower")
        session.add(team)
        await session.commit()  # expires every attribute of team
        return team.name  # reload from inside attribute access: MissingGreenlet


# --8<-- [end:expired_after_commit]


# --8<-- [start:detached]
async def read_after_close(engine: AsyncEngine) -> str:
    session_factory = async_sessionmaker(engine, class_=AsyncSession)  # expire_on_commit=True
    async with session_factory() as session:
        team = Team(name="Avengers", headquarters="Stark Tower")
        session.add(team)
        await session.commit()
    return team.name  # expired and no session left: DetachedInstanceError


# --8<-- [end:detached]


# --8<-- [start:misplaced_await]
async def misplaced_await(session: AsyncSession) -> Hero | None:
    # await binds to the whole expression: .first() runs on the coroutine, not on its result.
    # mypy --strict reports it; at runtime: AttributeError. Write (await session.exec(...)).first().
    return await session.exec(select(Hero)).first()  # type: ignore[attr-defined,no-any-return]


# --8<-- [end:misplaced_await]


# --8<-- [start:shared_session]
async def share_one_session(session: AsyncSession) -> None:
    # One session is one connection: concurrent tasks on it collide.
    results = await asyncio.gather(
        *(session.exec(select(Hero)) for _ in range(3)), return_exceptions=True
    )
    for result in results:
        if isinstance(result, BaseException):
            raise result


# --8<-- [end:shared_session]


# --8<-- [start:use_after_failed_flush]
async def keep_going_after_a_failed_flush(session: AsyncSession) -> None:
    session.add_all([Team(name="Twins", headquarters="A"), Team(name="Twins", headquarters="B")])
    with contextlib.suppress(IntegrityError):  # swallowed, but the transaction is rolled back
        await session.flush()  # IntegrityError: duplicate name
    await session.exec(select(Team))  # PendingRollbackError


# --8<-- [end:use_after_failed_flush]


# --8<-- [start:ignored_regex]
class VillainCreate(SQLModel, extra="forbid"):  # SQLModel drops extra=: unknown keys pass
    # SQLModel's Field accepts regex= and checks nothing (and pattern= is a TypeError).
    name: str = Field(max_length=100, regex=r"^[^\x00]*$")


# --8<-- [end:ignored_regex]


# --8<-- [start:string_without_length]
class Villain(PitfallModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str  # no max_length: VARCHAR(255) on MySQL, unbounded on PostgreSQL and SQLite


# --8<-- [end:string_without_length]


# --8<-- [start:sqlmodel_datetime]
class Sighting(PitfallModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    # SQLModel's UTCDateTime: aware UTC back, naive refused; whole seconds on MySQL/MariaDB.
    seen_at: datetime
    # Ours (types.py): the same, with microseconds on MySQL/MariaDB too.
    logged_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # NaiveDatetime opts out: stored and returned naive, no conversion.
    local_time: NaiveDatetime | None = None


# --8<-- [end:sqlmodel_datetime]


# --8<-- [start:delete_without_passive_deletes]
class Guild(PitfallModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    # No passive_deletes=True: deleting a guild first SELECTs all its members (the flush
    # ignores lazy="raise") and UPDATEs each one, although ON DELETE SET NULL would do it.
    members: list["Member"] = Relationship(sa_relationship_kwargs={"lazy": "raise"})


class Member(PitfallModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    guild_id: int | None = Field(default=None, foreign_key="guild.id", ondelete="SET NULL")


# --8<-- [end:delete_without_passive_deletes]


# --8<-- [start:shared_sa_column]
def define_two_tables_with_one_column() -> list[type[Any]]:
    shared = Column("code", String(20), unique=True)

    class Planet(PitfallModel, table=True):
        id: int | None = Field(default=None, primary_key=True)
        code: str = Field(sa_column=shared)

    class Moon(PitfallModel, table=True):  # the same Column object again: ArgumentError
        id: int | None = Field(default=None, primary_key=True)
        code: str = Field(sa_column=shared)

    return [Planet, Moon]


# --8<-- [end:shared_sa_column]


# --8<-- [start:commit_after_response]
async def session_committed_after_response(request: Request) -> AsyncIterator[AsyncSession]:
    session_factory: async_sessionmaker[AsyncSession] = request.state.session_factory
    async with session_factory() as session, session.begin():
        yield session  # default scope: this commit runs after the client got its response


pitfall_router = APIRouter()


@pitfall_router.post("/late-commit/teams", status_code=201)
async def create_team_committed_late(
    name: str, session: Annotated[AsyncSession, Depends(session_committed_after_response)]
) -> dict[str, str]:
    session.add(Team(name=name, headquarters="unknown"))
    return {"name": name}  # 201 is sent even if the commit then fails


# --8<-- [end:commit_after_response]


# --8<-- [start:lazy_load_in_response]
@pitfall_router.get("/unloaded/heroes/{hero_id}", response_model=HeroPublicWithTeam)
async def hero_without_its_team(
    hero_id: uuid.UUID, session: Annotated[AsyncSession, Depends(session_committed_after_response)]
) -> Hero:
    # No loader for Hero.team: serialising HeroPublicWithTeam reads it -> ResponseValidationError
    # ("Error extracting attribute: ... 'Hero.team' is not available due to lazy='raise'"), a 500.
    return await session.get_one(Hero, hero_id)


# --8<-- [end:lazy_load_in_response]
