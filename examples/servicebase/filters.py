"""Fail-closed filtering: an allowlist of public fields, a parser, and a compiler to SQL.

Filters arrive as a tree (what a client sends as JSON):

    {"and": [{"field": "age", "op": "gte", "value": 18},
             {"or": [{"field": "team.name", "op": "eq", "value": "Preventers"},
                     {"not": {"field": "status", "op": "in", "value": ["retired"]}}]}]}

Anything not in the allowlist (field, operator, value type, nesting, list size) raises
InvalidFilter with what is allowed. Nothing is ever dropped silently.
"""

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import AfterValidator, AwareDatetime, StringConstraints, TypeAdapter, ValidationError
from pydantic import Field as PydanticField
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import QueryableAttribute

from .errors import InvalidFilter

COMPARISON = frozenset({"eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "between"})
EQUALITY = frozenset({"eq", "ne", "in", "not_in"})
TEXT = frozenset({"contains", "icontains", "startswith", "istartswith", "endswith", "iendswith"})
NULLABLE = frozenset({"isnull"})
ALL_OPERATORS = COMPARISON | TEXT | NULLABLE
LIST_OPERATORS = frozenset({"in", "not_in", "between"})

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class Limits:
    max_depth: int = 4  # and/or/not nesting
    max_conditions: int = 20  # leaves in one filter
    max_list: int = 100  # values in one in/not_in


# --8<-- [start:filter_field]
@dataclass(frozen=True)
class FilterField:
    """One public name a client may filter (and maybe sort) on.

    column: the attribute at the end of `path`. path: relationships from the service's model to
    the column's model; conditions on related columns compile to EXISTS (no duplicate rows).
    value_type: what values are coerced to; derived from the column type when omitted.
    Sortable only: operators=frozenset().
    """

    column: Any  # a mapped attribute such as Hero.age
    operators: frozenset[str] = COMPARISON
    path: tuple[Any, ...] = ()
    sortable: bool = False
    value_type: Any = None


# --8<-- [end:filter_field]


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class And:
    items: tuple["Node", ...]


@dataclass(frozen=True)
class Or:
    items: tuple["Node", ...]


@dataclass(frozen=True)
class Not:
    item: "Node"


Node = Condition | And | Or | Not


def keep(condition: Condition, operand: Any) -> Any:
    return operand


def in_utc(value: datetime) -> datetime:
    """0001-01-01T00:00+14:00 is valid but before year 1 in UTC: a 422, not an OverflowError."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("outside years 1-9999 in UTC") from None


UTCInstant = Annotated[AwareDatetime, AfterValidator(in_utc)]


def value_type_for(column: QueryableAttribute[Any]) -> Any:
    """The Python type a filter value must have to be storable in this column."""
    sql_type = column.expression.type
    if isinstance(sql_type, sa.TypeDecorator):
        sql_type = sql_type.impl_instance
    if isinstance(sql_type, sa.Boolean):
        return bool
    if isinstance(sql_type, sa.Enum) and sql_type.enum_class is not None:
        return sql_type.enum_class
    if isinstance(sql_type, sa.Integer):
        low, high = INT64 if isinstance(sql_type, sa.BigInteger) else INT32
        return Annotated[int, PydanticField(ge=low, le=high)]
    if isinstance(sql_type, sa.Numeric):
        return float
    if isinstance(sql_type, sa.Uuid):
        return uuid.UUID
    if isinstance(sql_type, sa.DateTime):
        return UTCInstant if sql_type.timezone else datetime
    if isinstance(sql_type, sa.Date):
        return date
    if isinstance(sql_type, sa.String):
        # NUL can't be stored (PostgreSQL refuses it); longer than the column can't match.
        return Annotated[str, StringConstraints(max_length=sql_type.length, pattern=r"^[^\x00]*$")]
    raise TypeError(f"no filter value type for {column}: pass value_type=")


@dataclass
class FilterSpec:
    """The allowlist for one model: public name -> FilterField."""

    fields: Mapping[str, FilterField]
    limits: Limits = field(default_factory=Limits)
    _types: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _adapters: dict[str, TypeAdapter[Any]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        for name, spec in self.fields.items():
            for attribute in (spec.column, *spec.path):
                if not isinstance(attribute, QueryableAttribute):
                    raise TypeError(f"{name}: {attribute!r} is not a mapped attribute")
            if spec.sortable and spec.path:
                raise ValueError(f"{name}: only columns of the model itself can be sortable")
            unknown = spec.operators - ALL_OPERATORS
            if unknown:
                raise ValueError(f"{name}: unknown operators {sorted(unknown)}")
            self._types[name] = spec.value_type or value_type_for(spec.column)
            self._adapters[name] = TypeAdapter(self._types[name])

    def adapter(self, name: str) -> TypeAdapter[Any]:
        return self._adapters[name]

    def value_type(self, name: str) -> Any:
        return self._types[name]

    # ------------------------------------------------------------------ parsing

    def parse(self, raw: Any) -> Node | None:
        """Validate a client's filter tree; None (or {}) means no filter."""
        if raw is None or raw == {}:
            return None
        counter = [0]
        return self._parse(raw, depth=0, counter=counter)

    def _parse(self, raw: Any, depth: int, counter: list[int]) -> Node:
        if depth > self.limits.max_depth:
            raise InvalidFilter(f"filter nested deeper than {self.limits.max_depth} levels")
        if not isinstance(raw, dict) or not raw:
            raise InvalidFilter("a filter is an object: {field, op, value} or and/or/not")
        keys = set(raw)
        if keys in ({"and"}, {"or"}):
            (key,) = keys
            items = raw[key]
            if not isinstance(items, list) or not items:
                raise InvalidFilter(f"'{key}' takes a non-empty list of filters")
            parsed = tuple(self._parse(item, depth + 1, counter) for item in items)
            return And(parsed) if key == "and" else Or(parsed)
        if keys == {"not"}:
            return Not(self._parse(raw["not"], depth + 1, counter))
        if keys == {"field", "op", "value"} or keys == {"field", "op"}:
            counter[0] += 1
            if counter[0] > self.limits.max_conditions:
                raise InvalidFilter(f"more than {self.limits.max_conditions} conditions")
            return self.condition(raw["field"], raw["op"], raw.get("value"))
        raise InvalidFilter(f"unexpected keys {sorted(keys)}: use field/op/value or and/or/not")

    def condition(self, name: Any, op: Any, value: Any) -> Condition:
        """One validated condition, its value coerced to the field's type."""
        spec = self.fields.get(name) if isinstance(name, str) else None
        if spec is None:
            raise InvalidFilter(
                f"cannot filter on {name!r}; allowed: {', '.join(sorted(self.fields))}"
            )
        if op not in spec.operators:
            allowed = ", ".join(sorted(spec.operators))
            raise InvalidFilter(f"operator {op!r} not allowed on {name!r}; allowed: {allowed}")
        return Condition(name, op, self._coerce(name, op, value))

    def _coerce(self, name: str, op: str, value: Any) -> Any:
        if op == "isnull":
            return self._validate(name, TypeAdapter(bool), value)
        if op in TEXT:
            text = self._validate(name, self._adapters[name], value)
            if not isinstance(text, str):
                raise InvalidFilter(f"{op!r} on {name!r} needs text")
            return text
        if op not in LIST_OPERATORS:
            if value is None:
                raise InvalidFilter(f"{name!r} {op} needs a value; use isnull for NULL")
            return self._validate(name, self._adapters[name], value)
        if not isinstance(value, list | tuple):
            raise InvalidFilter(f"{op!r} on {name!r} takes a list")
        if len(value) > self.limits.max_list:
            raise InvalidFilter(f"{op!r} on {name!r} takes at most {self.limits.max_list} values")
        values = [self._validate(name, self._adapters[name], item) for item in value]
        if any(item is None for item in values):
            raise InvalidFilter(f"{op!r} on {name!r} can't contain null; use isnull")
        if op == "between":
            if len(values) != 2:
                raise InvalidFilter(f"'between' on {name!r} takes exactly two values [low, high]")
            if values[0] > values[1]:
                raise InvalidFilter(f"'between' on {name!r}: low is greater than high")
        return tuple(values)

    @staticmethod
    def _validate(name: str, adapter: TypeAdapter[Any], value: Any) -> Any:
        try:
            return adapter.validate_python(value)
        except ValidationError as error:
            problem = error.errors()[0]["msg"]
            raise InvalidFilter(f"bad value for {name!r}: {problem}") from None

    # ------------------------------------------------------------------ compiling

    def compile(
        self, node: Node, bind: Callable[[Condition, Any], Any] = keep
    ) -> sa.ColumnElement[bool]:
        """SQL for a parsed filter. bind(condition, operand) is what the operator gets: by
        default the operand itself; row_pages' statement cache passes bind parameters."""
        if isinstance(node, And):
            return sa.and_(*(self.compile(item, bind) for item in node.items))
        if isinstance(node, Or):
            return sa.or_(*(self.compile(item, bind) for item in node.items))
        if isinstance(node, Not):
            return sa.not_(self.compile(node.item, bind))
        spec = self.fields[node.field]
        expression = OPERATORS[node.op](spec.column, bind(node, operand(node)))
        for relationship in reversed(spec.path):  # innermost first: a.any(b.has(...))
            if relationship.property.uselist:
                expression = relationship.any(expression)
            else:
                expression = relationship.has(expression)
        return expression


# --8<-- [start:operators]
class folded(sa.sql.expression.FunctionElement[str]):
    """lower(), Unicode-aware: SQLite's own lower() folds ASCII only, so there it calls
    unicode_lower, which the app registers on every SQLite connection (db.py)."""

    type = sa.String()
    inherit_cache = True


@compiles(folded)
def _folded(element: folded, compiler: Any, **kw: Any) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(folded, "sqlite")
def _folded_sqlite(element: folded, compiler: Any, **kw: Any) -> str:
    return f"unicode_lower({compiler.process(element.clauses, **kw)})"


LIKE = {
    "contains": ("%", "%"),
    "icontains": ("%", "%"),
    "startswith": ("", "%"),
    "istartswith": ("", "%"),
    "endswith": ("%", ""),
    "iendswith": ("%", ""),
}


def operand(condition: Condition) -> Any:
    """The condition's value; for a text operator the LIKE pattern, in which the user's %, _
    and / are literal characters, never wildcards (escaped with /)."""
    if condition.op not in LIKE:
        return condition.value
    before, after = LIKE[condition.op]
    value = condition.value.replace("/", "//").replace("%", "/%").replace("_", "/_")
    return before + value + after


def _in(column: Any, values: Any) -> Any:
    empty = isinstance(values, tuple) and not values  # else a tuple or a bind parameter
    return sa.false() if empty else column.in_(values)  # empty IN matches nothing


def _not_in(column: Any, values: Any) -> Any:
    empty = isinstance(values, tuple) and not values
    return sa.true() if empty else column.not_in(values)


def _like(column: Any, pattern: Any) -> Any:
    return column.like(pattern, escape="/")


def _ilike(column: Any, pattern: Any) -> sa.ColumnElement[bool]:
    return folded(column).like(folded(sa.type_coerce(pattern, sa.String())), escape="/")


OPERATORS: dict[str, Callable[[Any, Any], sa.ColumnElement[bool]]] = {
    "eq": lambda c, v: c == v,
    "ne": lambda c, v: c != v,  # SQL: NULL rows never match (same on every backend)
    "gt": lambda c, v: c > v,
    "gte": lambda c, v: c >= v,
    "lt": lambda c, v: c < v,
    "lte": lambda c, v: c <= v,
    "in": _in,
    "not_in": _not_in,
    "between": lambda c, v: c.between(v[0], v[1]),
    "isnull": lambda c, v: c.is_(None) if v else c.is_not(None),
    "contains": _like,  # text operators take operand()'s pattern, never a raw value
    "startswith": _like,
    "endswith": _like,
    "icontains": _ilike,
    "istartswith": _ilike,
    "iendswith": _ilike,
}
# --8<-- [end:operators]
