"""Opt-in generated query parameters, for admin-style APIs: one `field__op` per allowlisted pair.

Public APIs usually name their own parameters (a hand-written query model mapped onto the filter).
"""

import json
import re
from typing import Annotated, Any

from annotated_types import Len
from pydantic import BaseModel, ConfigDict, Field, create_model

from .errors import InvalidFilter
from .filters import LIST_OPERATORS, FilterSpec


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
