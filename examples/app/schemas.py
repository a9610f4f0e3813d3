"""Data models: what clients send (Create/Update) and receive (Public). Never table models.

Table models skip validation on construction; these validate, with the limits every backend
can store (models.py: lengths, NUL-free text, integer ranges). Public models list their fields
explicitly, so a new column (or a secret one) never leaks by default, and the "...With..."
variants nest one level only, so serialisation can't recurse.
"""

import uuid
from datetime import datetime

from sqlmodel import Field, SQLModel

from examples.app.models import HeroBase, HeroStatus, PowerBase, TeamBase
from examples.app.types import INT32_MAX, JsonDocument, NulFreeStr


# --8<-- [start:team_schemas]
class TeamCreate(TeamBase):
    pass


class TeamUpdate(SQLModel):
    # NOT NULL columns: may be omitted (unchanged), never null. The type has no None, so an
    # explicit null is a 422 naming the field; the default None is only "not sent".
    name: NulFreeStr = Field(default=None, max_length=100)
    headquarters: NulFreeStr = Field(default=None, max_length=200)


class TeamPublic(TeamBase):
    id: int
    created_at: datetime
    updated_at: datetime


# --8<-- [end:team_schemas]


# --8<-- [start:hero_schemas]
class HeroCreate(HeroBase):
    secret_name: NulFreeStr = Field(max_length=100)
    # Input only: the depth and size limits (Public models would refuse what the server wrote).
    attributes: JsonDocument = Field(default_factory=dict)


class HeroUpdate(SQLModel):
    # All optional: apply with model_dump(exclude_unset=True) so omitted fields stay untouched.
    # `| None` only where the column is nullable (an explicit null clears it); for NOT NULL
    # columns null is a 422 naming the field, not a database error.
    name: NulFreeStr = Field(default=None, max_length=100)
    age: int | None = Field(default=None, ge=0, le=10_000)
    status: HeroStatus = Field(default=None)
    attributes: JsonDocument = Field(default=None)
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


class HeroDetail(HeroPublic):
    team: TeamPublic | None
    power_links: list[HeroPowerPublic]


class TeamPublicWithHeroes(TeamPublic):
    heroes: list[HeroPublic]  # HeroPublic, not HeroPublicWithTeam: no cycle


# --8<-- [end:with_related]


class PowerCreate(PowerBase):
    pass


class HeroPowerGrant(SQLModel):
    level: int = Field(ge=1, le=10)


class HeroPowerCreate(HeroPowerGrant):
    hero_id: uuid.UUID
    power_id: int
