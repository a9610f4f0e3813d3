"""The reference app plus its GET /heroes built other ways, for the HTTP comparison.

Run: uvicorn --factory benchmarks.http_variants:create_app (DATABASE_URL from the environment).
Each /bench/ route takes the same query as GET /heroes and differs from it in one choice.
"""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, FastAPI, Query, Request

from examples.app.api.deps import (
    ReadHeroServiceDep,
    ReadSessionDep,
    SessionFactoryDep,
    SettingsDep,
    cursor_secret,
)
from examples.app.api.heroes import list_heroes
from examples.app.db import READ_ONLY
from examples.app.main import create_app as create_reference_app
from examples.app.models import Hero
from examples.app.queries import HeroListQuery, hero_filter
from examples.app.schemas import HeroDetail, HeroPublic
from examples.app.services import HeroService
from examples.app.settings import Settings
from examples.servicebase.pagination import Page
from examples.servicebase.row_pages import page_rows
from examples.servicebase.web import OffsetPage

ListQuery = Annotated[HeroListQuery, Query()]


# The reference app's dependency chain written with plain `def`: FastAPI runs each in its
# threadpool, a thread hop per dependency per request.
def settings_sync(request: Request) -> Settings:
    settings: Settings = request.state.settings
    return settings


def hero_service_sync(
    session: ReadSessionDep, settings: Annotated[Settings, Depends(settings_sync)]
) -> HeroService:
    return HeroService(session, cursor_secret=cursor_secret(settings))


async def autocommit_hero_service(
    factory: SessionFactoryDep, settings: SettingsDep
) -> AsyncIterator[HeroService]:
    options = READ_ONLY | {"isolation_level": "AUTOCOMMIT"}  # no BEGIN, no ROLLBACK
    async with factory(execution_options=options) as session:
        yield HeroService(session, cursor_secret=cursor_secret(settings))


SyncHeroService = Annotated[HeroService, Depends(hero_service_sync)]
AutocommitHeroService = Annotated[HeroService, Depends(autocommit_hero_service)]


def create_app(settings: Settings | None = None) -> FastAPI:
    app = create_reference_app(settings)

    @app.get("/bench/heroes-orm", response_model=OffsetPage[HeroDetail])
    async def orm_objects(heroes: ReadHeroServiceDep, query: ListQuery) -> Page[Hero]:
        """ServiceBase.page with the relationships loaded: ORM objects, validated by FastAPI."""
        return await heroes.page(
            hero_filter(query),
            sort=query.sort,
            limit=query.limit,
            offset=query.offset,
            load=["team", "powers"],
        )

    @app.get("/bench/heroes-sync-deps", response_model=OffsetPage[HeroDetail])
    async def sync_dependencies(heroes: SyncHeroService, query: ListQuery) -> Page[HeroDetail]:
        """GET /heroes with its settings and service dependencies as plain `def`."""
        return await list_heroes(heroes, query)

    @app.get("/bench/heroes-autocommit", response_model=OffsetPage[HeroDetail])
    async def autocommit(heroes: AutocommitHeroService, query: ListQuery) -> Page[HeroDetail]:
        """GET /heroes in an AUTOCOMMIT session: no transaction, one snapshot per statement."""
        return await list_heroes(heroes, query)

    @app.get("/bench/heroes-flat", response_model=OffsetPage[HeroPublic])
    async def flat(heroes: ReadHeroServiceDep, query: ListQuery) -> Page[HeroPublic]:
        """GET /heroes without team and powers: what FastCRUD's endpoint returns, less secrets."""
        filter = hero_filter(query)
        return await page_rows(
            heroes, HeroPublic, filter, sort=query.sort, limit=query.limit, offset=query.offset
        )

    return app
