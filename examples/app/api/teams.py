"""/teams: CRUD, filtered and sorted pages, detail with heroes."""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status

from examples.app.api.deps import TeamServiceDep
from examples.app.models import Team
from examples.app.schemas import TeamCreate, TeamPublic, TeamPublicWithHeroes, TeamUpdate
from examples.app.services import TeamService
from examples.app.types import INT32_MAX
from examples.servicebase.pagination import Page
from examples.servicebase.query_params import filter_from_query, list_query_model
from examples.servicebase.web import OffsetPage, error_responses

router = APIRouter(prefix="/teams", tags=["teams"], responses=error_responses(404, 409))

TeamId = Annotated[int, Path(ge=1, le=INT32_MAX)]  # larger would overflow INTEGER: 422, not 500
TeamQuery = list_query_model("TeamQuery", TeamService.filters, max_limit=TeamService.max_limit)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TeamPublic)
async def create_team(data: TeamCreate, teams: TeamServiceDep) -> Team:
    return await teams.create(data)


@router.get("", response_model=OffsetPage[TeamPublic])
async def list_teams(
    teams: TeamServiceDep,
    query: Annotated[TeamQuery, Query()],  # type: ignore[valid-type]
) -> Page[Team]:
    q: Any = query
    return await teams.page(filter_from_query(q), sort=q.sort, limit=q.limit, offset=q.offset)


@router.get("/{team_id}", response_model=TeamPublicWithHeroes)
async def get_team(team_id: TeamId, teams: TeamServiceDep) -> Team:
    return await teams.get(team_id, load=["heroes"])


@router.patch("/{team_id}", response_model=TeamPublic)
async def update_team(team_id: TeamId, data: TeamUpdate, teams: TeamServiceDep) -> Team:
    return await teams.update(team_id, data)


@router.delete("/{team_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_team(team_id: TeamId, teams: TeamServiceDep) -> None:
    await teams.delete(team_id)
