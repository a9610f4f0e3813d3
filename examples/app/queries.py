"""Hand-named query parameters for list endpoints, mapped onto a service's filter allowlist.

The names are the API's own (name_contains, age_gte, team, sort=-age,name); one small function
turns them into the filter tree ServiceBase validates, so the allowlist still decides: a name
the allowlist doesn't have is refused there, whatever the mapping says.
"""

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from examples.app.models import HeroStatus
from examples.app.types import INT32_MAX, NO_NUL, NulFreeStr


# --8<-- [start:hero_list_query]
def is_id(value: str) -> bool:
    return value.isascii() and value.isdigit()


def team_name_or_id(value: str) -> str:
    """A value of digits only is a team id, and must fit the column; anything else is a name."""
    if is_id(value) and not 1 <= int(value) <= INT32_MAX:
        raise ValueError(f"a team id is between 1 and {INT32_MAX}")
    return value


Name = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=NO_NUL)]
HERO_SORT_KEYS = ("name", "age", "created_at")  # each must be sortable in HeroService.filters
SORT_KEY = f"-?({'|'.join(HERO_SORT_KEYS)})"


def distinct_sort_keys(sort: str) -> str:
    keys = [key.lstrip("-") for key in sort.split(",")]
    for key in keys:
        if keys.count(key) > 1:
            raise ValueError(f"{key!r} appears twice in sort")
    return sort


class HeroListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown (or misspelt) parameter is a 422

    name_contains: NulFreeStr | None = Field(
        default=None, max_length=100, description="case-insensitive"
    )
    age_gte: int | None = Field(default=None, ge=0, le=10_000)
    age_lte: int | None = Field(default=None, ge=0, le=10_000)
    status: HeroStatus | None = None
    team: list[Annotated[Name, AfterValidator(team_name_or_id)]] = Field(
        default=[], max_length=20, description="repeatable, any of: a team id (digits) or name"
    )
    power: list[Name] = Field(
        default=[], max_length=10, description="repeatable: heroes having every power named"
    )
    sort: Annotated[str, AfterValidator(distinct_sort_keys)] | None = Field(
        default=None,
        max_length=100,
        pattern=f"^{SORT_KEY}(,{SORT_KEY})*$",
        description="comma-separated, - for descending: -age,name",
    )
    limit: int = Field(default=50, ge=1, le=100)
    offset: int = Field(default=0, ge=0, le=1_000_000)


def hero_filter(query: HeroListQuery) -> dict[str, Any] | None:
    """The parameters as HeroService's filter tree: every parameter sent must hold (AND)."""
    conditions: list[dict[str, Any]] = []

    def where(field: str, op: str, value: Any) -> None:
        conditions.append({"field": field, "op": op, "value": value})

    if query.name_contains is not None:
        where("name", "icontains", query.name_contains)
    if query.age_gte is not None:
        where("age", "gte", query.age_gte)
    if query.age_lte is not None:
        where("age", "lte", query.age_lte)
    if query.status is not None:
        where("status", "eq", query.status)
    if query.team:
        ids = [int(team) for team in query.team if is_id(team)]
        names = [team for team in query.team if not is_id(team)]
        either = [{"field": "team_id", "op": "in", "value": ids}] if ids else []
        either += [{"field": "team.name", "op": "in", "value": names}] if names else []
        conditions.append({"or": either})
    for power in query.power:  # one EXISTS each: a hero with two matching powers appears once
        where("power.name", "eq", power)
    return {"and": conditions} if conditions else None


# --8<-- [end:hero_list_query]
