"""Data models: what clients send (Create/Update) and receive (Public). Never table models.

Table models skip validation on construction; these validate. Public models list their fields
explicitly, so a new column (or a secret one) never leaks by default, and the "...With..."
variants nest one level only, so serialisation can't recurse.
"""

import uuid
from datetime import datetime
from typing import Any

from pydantic import model_validator
from sqlmodel import Field, SQLModel

from examples.app.models import INT32_MAX, HeroBase, HeroStatus, PowerBase, TeamBase


# --8<-- [start:input_model]
def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(item) for item in value)
    return False


class InputModel(SQLModel):
    """Base of every request body: refuses text the databases can't store.

    PostgreSQL rejects NUL characters in text and JSON; letting one through is a 500.
    Lengths and integer ranges are declared per field (max_length, ge/le) for the same reason.
    """

    @model_validator(mode="before")
    @classmethod
    def refuse_nul_characters(cls, data: Any) -> Any:
        if _has_nul(data):
            raise ValueError("text must not contain NUL (\\x00) characters")
        return data


# --8<-- [end:input_model]


# --8<-- [start:team_schemas]
class TeamCreate(TeamBase, InputModel):
    pass


class TeamUpdate(InputModel):
    name: str | None = Field(default=None, max_length=100)
    headquarters: str | None = Field(default=None, max_length=200)


class TeamPublic(TeamBase):
    id: int
    created_at: datetime
    updated_at: datetime


# --8<-- [end:team_schemas]


# --8<-- [start:hero_schemas]
class HeroCreate(HeroBase, InputModel):
    secret_name: str = Field(max_length=100)


class HeroUpdate(InputModel):
    # All optional: apply with model_dump(exclude_unset=True) so omitted fields stay untouched
    # and an explicit null still clears a nullable column.
    name: str | None = Field(default=None, max_length=100)
    age: int | None = Field(default=None, ge=0, le=10_000)
    status: HeroStatus | None = None
    attributes: dict[str, Any] | None = None
    team_id: int | None = Field(default=None, ge=1, le=INT32_MAX)
    mentor_id: uuid.UUID | None = None


class HeroPublic(HeroBase):  # secret_name is not part of the public contract
    id: uuid.UUID
    version: int
    created_at: datetime
    updated_at: datetime


# --8<-- [end:hero_schemas]


# --8<-- [start:with_related]
class PowerPublic(PowerBase):
    id: int


class HeroPowerPublic(SQLModel):
    level: int
    acquired_at: datetime
    power: PowerPublic


class HeroPublicWithTeam(HeroPublic):
    team: TeamPublic | None


class HeroPublicWithPowers(HeroPublic):
    power_links: list[HeroPowerPublic]


class HeroDetail(HeroPublic):
    team: TeamPublic | None
    power_links: list[HeroPowerPublic]


class TeamPublicWithHeroes(TeamPublic):
    heroes: list[HeroPublic]  # HeroPublic, not HeroPublicWithTeam: no cycle


# --8<-- [end:with_related]


class PowerCreate(PowerBase, InputModel):
    pass


class HeroPowerGrant(InputModel):
    level: int = Field(ge=1, le=10)
