"""Sorting with a total order and offset pages (keyset cursors: cursors.py)."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import TypeAdapter
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
    tie_breakers: Sequence[tuple[str, QueryableAttribute[Any], TypeAdapter[Any]]],
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
    for pk_name, pk_column, pk_adapter in tie_breakers:
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
