"""/heroes: CRUD with ETag/If-Match, pages and cursor feeds, detail with relations, export."""

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Header, Query, Response, status
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.api.deps import HeroServiceDep, ReadHeroServiceDep, SessionFactoryDep
from examples.app.db import READ_ONLY
from examples.app.imports import (
    HeroImport,
    ImportResult,
    ImportRoute,
    ItemConflictBody,
    import_heroes,
)
from examples.app.models import Hero
from examples.app.queries import HeroListQuery, hero_filter
from examples.app.schemas import HeroCreate, HeroDetail, HeroPublic, HeroUpdate
from examples.app.services import HeroService
from examples.servicebase.cursors import CursorPage as CursorPageResult
from examples.servicebase.pagination import Page
from examples.servicebase.query_params import filter_from_query, list_query_model
from examples.servicebase.row_pages import page_rows
from examples.servicebase.transactions import unit_of_work
from examples.servicebase.versioning import etag, if_match_versions
from examples.servicebase.web import CursorPage, OffsetPage, error_responses

router = APIRouter(prefix="/heroes", tags=["heroes"], responses=error_responses(404, 409))

HeroFeedQuery = list_query_model(
    "HeroFeedQuery", HeroService.filters, cursor=True, max_limit=HeroService.max_limit
)


# --8<-- [start:create_with_background_task]
@router.post("", status_code=status.HTTP_201_CREATED, response_model=HeroPublic)
async def create_hero(
    data: HeroCreate,
    heroes: HeroServiceDep,
    session_factory: SessionFactoryDep,
    background: BackgroundTasks,
) -> Hero:
    hero = await heroes.create(data)
    # Runs after the response: the request's session is closed by then, so it opens its own.
    # No ETag here: this task changes the hero (version 2) right after; a client GETs one.
    background.add_task(send_welcome, session_factory, hero.id)
    return hero


async def send_welcome(
    session_factory: async_sessionmaker[AsyncSession], hero_id: uuid.UUID
) -> None:
    async with unit_of_work(session_factory) as session:
        hero = await session.get_one(Hero, hero_id)
        hero.attributes = {**hero.attributes, "welcomed": True}


# --8<-- [end:create_with_background_task]


# --8<-- [start:list_endpoint]
@router.get("", response_model=OffsetPage[HeroDetail])
async def list_heroes(
    heroes: ReadHeroServiceDep, query: Annotated[HeroListQuery, Query()]
) -> Page[HeroDetail]:
    # Rows into HeroDetail (row_pages.py), no ORM objects; on the replica if there is one.
    return await page_rows(
        heroes,
        HeroDetail,
        hero_filter(query),
        sort=query.sort,
        limit=query.limit,
        offset=query.offset,
    )


# --8<-- [end:list_endpoint]


@router.get("/feed", response_model=CursorPage[HeroPublic])
async def hero_feed(
    heroes: HeroServiceDep,
    query: Annotated[HeroFeedQuery, Query()],  # type: ignore[valid-type]
) -> CursorPageResult[Hero]:
    q: Any = query
    return await heroes.page_by_cursor(
        filter_from_query(q), sort=q.sort, limit=q.limit, cursor=q.cursor
    )


# --8<-- [start:streaming]
@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}, "description": "One hero per line"}},
)
async def export_heroes(session_factory: SessionFactoryDep) -> StreamingResponse:
    async def lines() -> AsyncIterator[str]:
        # The body is produced after the endpoint returned: its own session, not the request's.
        async with session_factory(execution_options=READ_ONLY) as session:  # SQLite: no lock
            rows = await session.stream_scalars(
                select(Hero).where(col(Hero.deleted_at).is_(None)).order_by(col(Hero.id))
            )
            async for hero in rows:
                yield HeroPublic.model_validate(hero).model_dump_json() + "\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")


# --8<-- [end:streaming]


# --8<-- [start:import_endpoint]
async def import_heroes_endpoint(items: HeroImport, heroes: HeroServiceDep) -> ImportResult:
    """All or nothing: a 422 names every bad item (loc: body, index, field), a 409 the item
    that collides with another item or an existing hero; nothing is stored on any refusal."""
    return ImportResult(created=await import_heroes(heroes, items))


router.add_api_route(
    "/import",
    import_heroes_endpoint,
    methods=["POST"],
    status_code=status.HTTP_201_CREATED,
    route_class_override=ImportRoute,  # body over MAX_IMPORT_BYTES: 413; ItemConflict: 409
    responses={**error_responses(413), 409: {"model": ItemConflictBody}},
    name="import_heroes",
)
# --8<-- [end:import_endpoint]


@router.get("/{hero_id}", response_model=HeroDetail)
async def get_hero(hero_id: uuid.UUID, heroes: HeroServiceDep, response: Response) -> Hero:
    hero = await heroes.get(hero_id, load=["team", "powers"])
    response.headers["ETag"] = etag(hero.version)
    return hero


# --8<-- [start:conditional_update]
@router.patch("/{hero_id}", response_model=HeroDetail, responses=error_responses(400, 412, 428))
async def update_hero(
    hero_id: uuid.UUID,
    data: HeroUpdate,
    heroes: HeroServiceDep,
    response: Response,
    if_match: Annotated[list[str] | None, Header()] = None,  # every If-Match line
) -> Hero:
    # If-Match: "<version from the ETag>" -> 412 when someone else changed the hero meanwhile;
    # required (428 without it): a client can't overwrite an edit it never saw. * skips the check.
    hero = await heroes.update(
        hero_id, data, expected_version=if_match_versions(if_match), load=["team", "powers"]
    )
    response.headers["ETag"] = etag(hero.version)
    return hero


# --8<-- [end:conditional_update]


@router.delete("/{hero_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_hero(hero_id: uuid.UUID, heroes: HeroServiceDep) -> None:
    await heroes.delete(hero_id)


@router.post("/{hero_id}/restore", response_model=HeroPublic)
async def restore_hero(hero_id: uuid.UUID, heroes: HeroServiceDep) -> Hero:
    return await heroes.restore(hero_id)


@router.post("/{hero_id}/birthday", response_model=HeroPublic)
async def celebrate_birthday(
    hero_id: uuid.UUID, heroes: HeroServiceDep, response: Response
) -> Hero:
    hero = await heroes.celebrate_birthday(hero_id)
    response.headers["ETag"] = etag(hero.version)
    return hero


@router.get("/{hero_id}/apprentices", response_model=list[HeroPublic])
async def list_apprentices(hero_id: uuid.UUID, heroes: HeroServiceDep) -> list[Hero]:
    return list(await heroes.apprentices_of(hero_id))
