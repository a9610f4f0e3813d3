"""/powers, and the hero-power links with their level."""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status

from examples.app.api.deps import HeroServiceDep, PowerServiceDep
from examples.app.models import HeroPower, Power
from examples.app.schemas import HeroPowerGrant, PowerCreate, PowerPublic
from examples.app.services import PowerService
from examples.app.types import INT32_MAX
from examples.servicebase.pagination import Page
from examples.servicebase.query_params import filter_from_query, list_query_model
from examples.servicebase.web import OffsetPage, error_responses

router = APIRouter(tags=["powers"], responses=error_responses(404, 409))

PowerId = Annotated[int, Path(ge=1, le=INT32_MAX)]
PowerQuery = list_query_model("PowerQuery", PowerService.filters, max_limit=PowerService.max_limit)


@router.post("/powers", status_code=status.HTTP_201_CREATED, response_model=PowerPublic)
async def create_power(data: PowerCreate, powers: PowerServiceDep) -> Power:
    return await powers.create(data)


@router.get("/powers", response_model=OffsetPage[PowerPublic])
async def list_powers(
    powers: PowerServiceDep,
    query: Annotated[PowerQuery, Query()],  # type: ignore[valid-type]
) -> Page[Power]:
    q: Any = query
    return await powers.page(filter_from_query(q), sort=q.sort, limit=q.limit, offset=q.offset)


@router.put("/heroes/{hero_id}/powers/{power_id}")
async def set_power_level(
    hero_id: uuid.UUID, power_id: PowerId, grant: HeroPowerGrant, heroes: HeroServiceDep
) -> dict[str, int]:
    link: HeroPower = await heroes.set_power_level(hero_id, power_id, grant.level)
    return {"power_id": link.power_id, "level": link.level}


@router.delete("/heroes/{hero_id}/powers/{power_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_power(hero_id: uuid.UUID, power_id: PowerId, heroes: HeroServiceDep) -> None:
    await heroes.revoke_power(hero_id, power_id)
