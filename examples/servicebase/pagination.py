"""Sorting with a total order, offset pages, and signed keyset cursors."""

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.orm import QueryableAttribute

from .errors import InvalidFilter

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


@dataclass(frozen=True)
class CursorPage(Generic[T]):
    items: list[T]
    next_cursor: str | None
    prev_cursor: str | None


@dataclass(frozen=True)
class SortKey:
    name: str
    column: QueryableAttribute[Any]
    descending: bool
    nulls_last: bool
    adapter: TypeAdapter[Any]

    @property
    def nullable(self) -> bool:
        return bool(getattr(self.column.expression, "nullable", True))


def parse_sort(
    raw: str,
    sortable: dict[str, tuple[QueryableAttribute[Any], TypeAdapter[Any]]],
    tie_breaker: tuple[str, QueryableAttribute[Any], TypeAdapter[Any]],
) -> list[SortKey]:
    """'-age,name:nulls_first' -> sort keys, ending with the primary key so the order is total."""
    keys: list[SortKey] = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        name, _, option = part.lstrip("-").partition(":")
        if name not in sortable or option not in ("", "nulls_first", "nulls_last"):
            allowed = ", ".join(sorted(sortable))
            raise InvalidFilter(
                f"cannot sort by {part!r}; sortable: {allowed} (-name: descending, "
                ":nulls_first/:nulls_last)"
            )
        if any(key.name == name for key in keys):
            raise InvalidFilter(f"{name!r} appears twice in sort")
        column, adapter = sortable[name]
        keys.append(SortKey(name, column, part.startswith("-"), option != "nulls_first", adapter))
    pk_name, pk_column, pk_adapter = tie_breaker
    if not any(key.name == pk_name for key in keys):
        keys.append(SortKey(pk_name, pk_column, False, True, pk_adapter))
    return keys


# --8<-- [start:order_by]
def order_by(keys: Sequence[SortKey], dialect: str, reverse: bool = False) -> list[Any]:
    """ORDER BY with explicit NULL placement, the same on every backend.

    PostgreSQL puts NULLs last ascending, SQLite and MySQL first; MySQL has no NULLS LAST, so it
    gets a leading "col IS NULL" key instead.
    """
    clauses: list[Any] = []
    for key in keys:
        descending = key.descending != reverse
        nulls_last = key.nulls_last != reverse
        column = key.column
        if key.nullable and dialect in ("mysql", "mariadb"):
            null_flag = column.is_(None)
            clauses.append(null_flag.asc() if nulls_last else null_flag.desc())
        clause = column.desc() if descending else column.asc()
        if key.nullable and dialect not in ("mysql", "mariadb"):
            clause = clause.nulls_last() if nulls_last else clause.nulls_first()
        clauses.append(clause)
    return clauses


# --8<-- [end:order_by]


# --8<-- [start:keyset]
def after(keys: Sequence[SortKey], values: Sequence[Any], reverse: bool = False) -> Any:
    """Rows strictly after `values` in the order of `keys` (before it when reverse).

    (k1 > v1) OR (k1 = v1 AND k2 > v2) OR ..., with NULLs placed as the order places them.
    Row-value comparison (a, b) > (x, y) can't express mixed directions or NULLs.
    """
    alternatives = []
    for i, key in enumerate(keys):
        equal_before = [_equal(k.column, v) for k, v in zip(keys[:i], values[:i], strict=True)]
        beyond = _beyond(key, values[i], reverse)
        if beyond is not None:
            alternatives.append(sa.and_(*equal_before, beyond))
    if not alternatives:
        return sa.false()
    condition = sa.or_(*alternatives)
    first, value = keys[0], values[0]
    if not first.nullable and value is not None:
        # Redundant, but an index range scan needs it: the OR alone makes the database
        # read from the start of the index (page 1000 took 4.6x page 1 without it).
        bound = first.column <= value if first.descending != reverse else first.column >= value
        condition = sa.and_(bound, condition)
    return condition


def _equal(column: Any, value: Any) -> Any:
    return column.is_(None) if value is None else column == value


def _beyond(key: SortKey, value: Any, reverse: bool) -> Any:
    descending = key.descending != reverse
    nulls_last = key.nulls_last != reverse
    column = key.column
    if value is None:  # NULLs sit together at one end
        return None if nulls_last else column.is_not(None)
    past = column < value if descending else column > value
    return sa.or_(past, column.is_(None)) if nulls_last and key.nullable else past


# --8<-- [end:keyset]


# --8<-- [start:cursor]
class CursorCodec:
    """Opaque cursors: base64(JSON) + HMAC, bound to the filter and sort they were made for."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("cursor secret must be at least 16 bytes")
        self._secret = secret

    def encode(self, keys: Sequence[SortKey], row: Any, direction: str, binding: str) -> str:
        raw = [getattr(row, key.column.key) for key in keys]
        values = [
            None if value is None else key.adapter.dump_python(value, mode="json")
            for key, value in zip(keys, raw, strict=True)
        ]
        payload = json.dumps({"v": values, "d": direction, "b": binding}, separators=(",", ":"))
        body = base64.urlsafe_b64encode(payload.encode()).rstrip(b"=")
        return f"{body.decode()}.{self._sign(body)}"

    def decode(self, cursor: str, keys: Sequence[SortKey], binding: str) -> tuple[list[Any], str]:
        body, _, signature = cursor.partition(".")
        # compare_digest refuses non-ASCII str with a TypeError: a client's "é" must be a 422.
        if not signature.isascii() or not hmac.compare_digest(signature, self._sign(body.encode())):
            raise InvalidFilter("invalid cursor")
        try:
            payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            values, direction = payload["v"], payload["d"]
            if payload["b"] != binding:
                raise InvalidFilter("cursor was made for a different filter or sort")
            if direction not in ("next", "prev") or len(values) != len(keys):
                raise InvalidFilter("invalid cursor")
            decoded = [
                None if value is None else key.adapter.validate_python(value)
                for key, value in zip(keys, values, strict=True)
            ]
        except (ValueError, KeyError, TypeError, binascii.Error, ValidationError):
            raise InvalidFilter("invalid cursor") from None
        return decoded, direction

    def _sign(self, body: bytes) -> str:
        digest = hmac.new(self._secret, body, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def binding_for(canonical_filter: Any, keys: Sequence[SortKey], include_deleted: bool) -> str:
    sort = [(key.name, key.descending, key.nulls_last) for key in keys]
    text = json.dumps([canonical_filter, sort, include_deleted], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --8<-- [end:cursor]
