"""/admin: list endpoints with parameters generated from the services' filter allowlists.

Every allowlisted `field__op` pair is a parameter (age__gte, team.name__eq, name__icontains, ...)
plus a JSON `filter` tree: for internal and admin tools, where the allowlist is the contract.
Mount it behind the app's admin authentication.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Query

from examples.app.api.deps import HeroServiceDep
from examples.app.models import Hero
from examples.app.schemas import HeroPublic
from examples.app.services import HeroService
from examples.servicebase.pagination import Page
from examples.servicebase.query_params import filter_from_query, list_query_model
from examples.servicebase.web import OffsetPage, error_responses

router = APIRouter(prefix="/admin", tags=["admin"], responses=error_responses())

HeroQuery = list_query_model("HeroQuery", HeroService.filters, max_limit=HeroService.max_limit)


# --8<-- [start:generated_list_endpoint]
@router.get("/heroes", response_model=OffsetPage[HeroPublic])
async def list_heroes(
    heroes: HeroServiceDep,
    query: Annotated[HeroQuery, Query()],  # type: ignore[valid-type]
) -> Page[Hero]:
    q: Any = query  # a model generated from the allowlist: attributes unknown to mypy
    return await heroes.page(filter_from_query(q), sort=q.sort, limit=q.limit, offset=q.offset)


# --8<-- [end:generated_list_endpoint]
