"""All-or-nothing bulk import: every item is stored, or none is and the refusal names the item."""

from collections.abc import Callable, Coroutine, Sequence
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import HTTPException, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from sqlmodel import col, select
from starlette.types import Message

from examples.app.models import Hero, Team
from examples.app.schemas import HeroCreate
from examples.app.services import HeroService
from examples.servicebase.errors import Conflict, ForeignKeyViolation

# --8<-- [start:bulk_import]
MAX_IMPORT_ITEMS = 5_000
MAX_IMPORT_BYTES = 8 * 1024 * 1024  # a 413 past this, before the JSON is parsed
IMPORT_CHUNK = 1_000  # items per create_many: one multi-row INSERT each

HeroImport = Annotated[list[HeroCreate], Field(min_length=1, max_length=MAX_IMPORT_ITEMS)]


class ImportResult(BaseModel):
    created: int


class ItemConflictBody(BaseModel):
    error: str
    detail: str
    index: int | None = None  # absent when no item can be named (e.g. an unknown mentor_id)
    field: str | None = None
    duplicate_of: int | None = None


class ItemConflict(Conflict):
    """A 409 that names the item (its index in the list) and the unique key it collides on."""

    def __init__(
        self,
        detail: str,
        *,
        index: int,
        field: str,
        duplicate_of: int | None = None,
        error: str = "Conflict",
    ) -> None:
        super().__init__(detail)
        self.index, self.field, self.duplicate_of, self.error = index, field, duplicate_of, error

    def body(self) -> dict[str, Any]:
        body = {"error": self.error, "detail": str(self), "index": self.index, "field": self.field}
        return body if self.duplicate_of is None else {**body, "duplicate_of": self.duplicate_of}


def unique_keys(item: HeroCreate) -> dict[str, tuple[Any, ...]]:
    """The item's values for each unique key of hero; a key with a NULL never collides."""
    keys = {"secret_name": (item.secret_name,), "name, team_id": (item.name, item.team_id)}
    return {field: value for field, value in keys.items() if None not in value}


def refuse_duplicates(items: Sequence[HeroCreate]) -> None:
    """Two items with the same unique key: found in Python, before the database is touched."""
    seen: dict[tuple[str, tuple[Any, ...]], int] = {}
    for index, item in enumerate(items):
        for field, value in unique_keys(item).items():
            first = seen.setdefault((field, value), index)
            if first != index:
                raise ItemConflict(
                    f"items {first} and {index} have the same {field}",
                    index=index,
                    field=field,
                    duplicate_of=first,
                )


async def import_heroes(heroes: HeroService, items: Sequence[HeroCreate]) -> int:
    """Insert every item in the caller's transaction, or none; the refusal names the item."""
    refuse_duplicates(items)
    try:
        # A savepoint: after a failed INSERT the transaction can still run the SELECT below
        # (PostgreSQL refuses every statement in a failed transaction until a rollback).
        async with heroes.session.begin_nested():
            for start in range(0, len(items), IMPORT_CHUNK):
                await heroes.create_many(items[start : start + IMPORT_CHUNK])
    except (Conflict, ForeignKeyViolation) as error:
        raise await name_the_item(heroes, items) or error from None
    return len(items)


async def name_the_item(heroes: HeroService, items: Sequence[HeroCreate]) -> ItemConflict | None:
    """One SELECT of the batch's unique keys (and one of its teams) that exist already, mapped
    back to the first item that has one. None when no row matches any more (deleted since)."""
    index_of: dict[tuple[str, tuple[Any, ...]], int] = {}
    for index, item in enumerate(items):
        for field, value in unique_keys(item).items():
            index_of.setdefault((field, value), index)
    pairs = [value for (field, value) in index_of if field == "name, team_id"]
    statement = select(Hero.secret_name, Hero.name, Hero.team_id).where(
        sa.or_(
            col(Hero.secret_name).in_([item.secret_name for item in items]),
            sa.tuple_(col(Hero.name), col(Hero.team_id)).in_(pairs) if pairs else sa.false(),
        ),
        col(Hero.deleted_at).is_(None),  # the keys are unique among live heroes only
    )
    hits = []
    for row in (await heroes.session.exec(statement)).all():
        for field, value in {"secret_name": (row[0],), "name, team_id": (row[1], row[2])}.items():
            if (field, value) in index_of:
                hits.append((index_of[field, value], field))
    if hits:
        index, field = min(hits)
        detail = f"item {index} has the {field} of an existing hero"
        return ItemConflict(detail, index=index, field=field)
    team_ids = {item.team_id for item in items if item.team_id is not None}
    if team_ids:
        teams = select(Team.id).where(col(Team.id).in_(team_ids))
        found = {None, *(await heroes.session.exec(teams)).all()}
        missing = [i for i, item in enumerate(items) if item.team_id not in found]
        if missing:
            detail = f"item {missing[0]} names a team that does not exist"
            error = "ForeignKeyViolation"
            return ItemConflict(detail, index=missing[0], field="team_id", error=error)
    return None


class ImportRoute(APIRoute):
    """Bounds the body (a JSON 413) and turns ItemConflict into its 409 body, after the session
    dependency rolled back."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            too_large = HTTPException(413, f"the body is over {MAX_IMPORT_BYTES} bytes")
            length = request.headers.get("content-length", "")
            if length.isdigit() and int(length) > MAX_IMPORT_BYTES:
                raise too_large
            received = 0

            async def receive() -> Message:  # chunked bodies have no Content-Length
                nonlocal received
                message = await request.receive()
                received += len(message.get("body", b""))
                if received > MAX_IMPORT_BYTES:
                    raise too_large
                return message

            try:
                return await handler(Request(request.scope, receive))
            except ItemConflict as conflict:
                return JSONResponse(conflict.body(), status_code=409)

        return handle


# --8<-- [end:bulk_import]
