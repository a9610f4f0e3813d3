"""FastAPI glue for ServiceBase: page envelopes, error bodies, exceptions mapped to statuses.

Imports nothing from the app.
"""

import logging
from typing import Any, Generic, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from .errors import (
    Conflict,
    ConstraintViolation,
    DatabaseError,
    ForeignKeyViolation,
    InvalidFilter,
    InvalidPrecondition,
    NotFound,
    PreconditionRequired,
    StaleVersion,
    classify,
)

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


class ErrorBody(BaseModel):
    """Every 4xx/5xx body: `detail` (a message, or FastAPI's list of validation errors) and,
    for errors raised by the service layer, `error` (NotFound, Conflict, InvalidFilter, ...)."""

    detail: str | list[Any]
    error: str | None = None


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses an endpoint can return."""
    return {code: {"model": ErrorBody} for code in (*codes, 422, 500, 503)}


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
