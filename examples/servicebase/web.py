"""FastAPI glue for ServiceBase: query parameters from a FilterSpec, page envelopes, error mapping.

Imports nothing from the app.
"""

import json
import logging
import re
from typing import Annotated, Any, Generic, TypeVar

from annotated_types import Len
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, create_model
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from .errors import (
    Conflict,
    ConstraintViolation,
    DatabaseError,
    ForeignKeyViolation,
    InvalidFilter,
    NotFound,
    ServiceError,
    StaleVersion,
    classify,
)
from .filters import LIST_OPERATORS, FilterSpec

ItemT = TypeVar("ItemT")


# --8<-- [start:envelopes]
class OffsetPage(BaseModel, Generic[ItemT]):
    items: list[ItemT]
    total: int
    limit: int
    offset: int


class CursorPage(BaseModel, Generic[ItemT]):
    items: list[ItemT]
    next_cursor: str | None
    prev_cursor: str | None


# --8<-- [end:envelopes]


# --8<-- [start:query_model]
def list_query_model(
    name: str, spec: FilterSpec, *, cursor: bool = False, max_limit: int = 100
) -> type[BaseModel]:
    """A query-parameter model: `field__op` per allowed pair, sort, filter, limit, offset/cursor.

    Use as `Annotated[Model, Query()]`: FastAPI documents every parameter in OpenAPI, coerces
    and validates values (an integer that would overflow the column is a 422), and extra="forbid"
    turns an unknown parameter into a 422 instead of silently ignoring it.
    """
    sortable = "|".join(re.escape(n) for n, f in spec.fields.items() if f.sortable and not f.path)
    sort_key = f"-?({sortable})(:nulls_first|:nulls_last)?"
    fields: dict[str, Any] = {
        "sort": (
            str | None,
            Field(
                default=None,
                max_length=500,
                pattern=f"^{sort_key}(,{sort_key})*$",
                description="comma-separated: -name for descending, :nulls_first/:nulls_last",
            ),
        ),
        "filter": (
            str | None,
            Field(default=None, max_length=10_000, description='{"and": [{field, op, value}]}'),
        ),
        "limit": (int, Field(default=min(50, max_limit), ge=1, le=max_limit)),
    }
    if cursor:
        fields["cursor"] = (str | None, Field(default=None, max_length=2_000))
    else:
        fields["offset"] = (int, Field(default=0, ge=0, le=1_000_000))
    for field_name, field in spec.fields.items():
        value_type = spec.value_type(field_name)
        for op in sorted(field.operators):
            if op == "isnull":
                annotation: Any = bool | None
            elif op == "between":
                annotation = Annotated[list[value_type], Len(2, 2)] | None  # type: ignore[valid-type]
            elif op in LIST_OPERATORS:
                annotation = Annotated[list[value_type], Len(0, spec.limits.max_list)] | None  # type: ignore[valid-type]
            else:
                annotation = value_type | None
            alias = f"{field_name}__{op}"
            fields[alias.replace(".", "_")] = (annotation, Field(default=None, alias=alias))
    return create_model(name, __config__=ConfigDict(extra="forbid"), **fields)


PAGING = ("sort", "filter", "limit", "offset", "cursor")


def filter_from_query(params: BaseModel) -> dict[str, Any] | None:
    """AND of every filter parameter the client sent, plus the JSON `filter` if any."""
    conditions: list[Any] = []
    for key, value in params.model_dump(by_alias=True, exclude_none=True).items():
        if key in PAGING:
            continue
        field_name, _, op = key.rpartition("__")
        conditions.append({"field": field_name, "op": op, "value": value})
    raw_filter = getattr(params, "filter", None)
    if raw_filter:
        try:
            conditions.append(json.loads(raw_filter))
        except json.JSONDecodeError:
            raise InvalidFilter("filter is not valid JSON") from None
        except RecursionError:  # json.loads recurses per level: 10,000 characters nest 5,000
            raise InvalidFilter("filter nested too deeply") from None
    return {"and": conditions} if conditions else None


# --8<-- [end:query_model]


class ErrorBody(BaseModel):
    """Every 4xx/5xx body: `detail` (a message, or FastAPI's list of validation errors) and,
    for errors raised by the service layer, `error` (NotFound, Conflict, InvalidFilter, ...)."""

    detail: str | list[Any]
    error: str | None = None


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses an endpoint can return."""
    return {code: {"model": ErrorBody} for code in (*codes, 422, 500, 503)}


class InvalidPrecondition(ServiceError):
    """If-Match is neither * nor a list of entity tags: 400."""


class PreconditionRequired(ServiceError):
    """An update without If-Match where the API requires one: 428 (RFC 6585)."""


# --8<-- [start:error_handlers]
STATUS = {
    InvalidPrecondition: 400,
    NotFound: 404,
    Conflict: 409,
    ForeignKeyViolation: 409,
    StaleVersion: 412,
    ConstraintViolation: 422,
    InvalidFilter: 422,
    PreconditionRequired: 428,
}
MAX_ERRORS = 20  # validation errors per response: a 10,000-item list can't make a 10 MB body


log = logging.getLogger(__name__)


def add_error_handlers(app: FastAPI, *, retry_after_seconds: int = 1) -> None:
    async def service_error(_request: Request, error: Exception) -> JSONResponse:
        status = next(code for kind, code in STATUS.items() if isinstance(error, kind))
        kind = type(error).__name__
        return JSONResponse({"detail": str(error), "error": kind}, status_code=status)

    async def unavailable(_request: Request, _error: Exception) -> JSONResponse:
        # Every connection busy, or the database unreachable: the client should come back.
        return JSONResponse(
            {"detail": "the service is busy; retry shortly", "error": "Unavailable"},
            status_code=503,
            headers={"Retry-After": str(retry_after_seconds)},
        )

    def server_error(request: Request, error: Exception, body: dict[str, str]) -> JSONResponse:
        # The traceback goes to the log; the client gets a fixed message (no SQL, no hosts).
        log.error("%s %s failed", request.method, request.url.path, exc_info=error)
        return JSONResponse(body, status_code=500)

    async def database_error(request: Request, error: Exception) -> JSONResponse:
        if isinstance(error, DBAPIError):
            if error.connection_invalidated or is_unreachable(error):
                return await unavailable(request, error)
            if classify(error) in (DatabaseError.STATEMENT_TIMEOUT, DatabaseError.LOCK_TIMEOUT):
                return JSONResponse(
                    {"detail": "the database took too long; retry later", "error": "Timeout"},
                    status_code=503,
                    headers={"Retry-After": str(retry_after_seconds)},
                )
        return server_error(request, error, {"detail": "database error", "error": "DatabaseError"})

    async def os_error(request: Request, error: Exception) -> JSONResponse:
        # asyncpg raises the socket error itself (refused, DNS, timeout) when it can't connect.
        # Any other OSError (an outbound HTTP call, a file) is the app's own failure: a 500.
        if raised_while_connecting(error):
            return await unavailable(request, error)
        return server_error(request, error, {"detail": "internal error", "error": "InternalError"})

    async def invalid_request(_request: Request, error: Exception) -> JSONResponse:
        # Replaces FastAPI's handler, which echoes each bad input: a lone surrogate can't be
        # encoded (UnicodeEncodeError) and NaN isn't JSON (ValueError), so the 422 became a 500.
        # The field and the rule, never an input value. loc can hold a key of the client's own
        # JSON object, and a parser's msg one character (UUID: "found `x` at 0"): bounded below.
        errors = error.errors() if isinstance(error, RequestValidationError) else []
        detail = [
            {
                "type": e["type"],
                "loc": [printable(part) for part in e["loc"]],
                "msg": printable(e["msg"]),
            }
            for e in errors[:MAX_ERRORS]
        ]
        return JSONResponse({"detail": detail}, status_code=422)

    app.add_exception_handler(RequestValidationError, invalid_request)
    for kind in STATUS:
        app.add_exception_handler(kind, service_error)
    app.add_exception_handler(PoolTimeoutError, unavailable)
    app.add_exception_handler(DBAPIError, database_error)
    app.add_exception_handler(OSError, os_error)  # ConnectionError, socket.gaierror, ...


def printable(value: Any) -> Any:
    """Encodable text, at most 100 characters: a lone surrogate becomes the text \\ud800."""
    return (
        value[:100].encode("utf-8", "backslashreplace").decode()
        if isinstance(value, str)
        else value
    )


# --8<-- [end:error_handlers]


def raised_while_connecting(error: BaseException) -> bool:
    """The error came out of SQLAlchemy's pool opening a database connection."""
    trace = error.__traceback__
    while trace is not None:
        if trace.tb_frame.f_globals.get("__name__", "").startswith("sqlalchemy.pool"):
            return True
        trace = trace.tb_next
    return False


def is_unreachable(error: DBAPIError) -> bool:
    """The server refused or dropped the connection (down, restarting, network)."""
    cause: BaseException | None = error.orig
    while cause is not None:
        if isinstance(cause, OSError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


# --8<-- [start:if_match]
ENTITY_TAG = r'(W/)?"([\x21\x23-\x7e\x80-\xff]*)"'  # RFC 9110 8.8.3; headers arrive as latin-1
# #entity-tag: comma-separated, empty elements allowed. Possessive (*+, ?+): linear on any input.
IF_MATCH_LIST = re.compile(
    rf"[ \t]*+(?:{ENTITY_TAG})?+(?:[ \t]*+,[ \t]*+(?:{ENTITY_TAG})?+)*+[ \t]*+"
)


def etag(version: int) -> str:
    return f'"{version}"'


def if_match_versions(
    if_match: str | list[str] | None, *, required: bool = True
) -> frozenset[int] | None:
    """The versions an If-Match header accepts (RFC 9110 13.1.1); None: any (`*`, or optional).

    A list matches if any of its tags does. Comparison is strong: a weak tag (W/"3") never
    matches, nor does a tag this API didn't make; both end in 412 once the row is found.
    Declare the header list[str]: several If-Match lines are one list (RFC 9110 5.3), and a str
    parameter gets only the first (`*` on one line, a stale tag on the next, must be a 400).
    """
    if isinstance(if_match, list):
        if_match = ", ".join(if_match) if if_match else None
    if if_match is None:
        if required:  # without it, a client overwrites edits it never saw (lost update)
            raise PreconditionRequired('send If-Match: the ETag from GET, e.g. "3"; * for any')
        return None
    if if_match.strip(" \t") == "*":
        return None
    if not IF_MATCH_LIST.fullmatch(if_match):
        raise InvalidPrecondition('If-Match must be * or a list of ETags, e.g. "3", "4"')
    return frozenset(
        int(tag[2])
        for tag in re.finditer(ENTITY_TAG, if_match)
        if not tag[1] and re.fullmatch(r"0|[1-9][0-9]{0,17}", tag[2])  # "01" is not "1"
    )


# --8<-- [end:if_match]
