"""Opt-in read path for list endpoints: pages of data models built from rows, no ORM objects.

A function of any service, not a mixin: page_rows(heroes, HeroPublic, filter, sort=..., ...)
takes the service's filters (fail closed), sort allowlist, bounds and scope, as page() does.
For data to return, not objects to change: nothing enters the session's identity map.
"""

import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel, TypeAdapter
from sqlalchemy.orm import ColumnProperty, Mapper, RelationshipDirection, RelationshipProperty

from .errors import InvalidFilter
from .filters import Condition, Node, Not, operand
from .pagination import Page, order_by
from .service import MAX_OFFSET, ServiceBase

SchemaT = TypeVar("SchemaT", bound=BaseModel)


@dataclass
class Shape:
    """How one schema is read from one table: its columns, and the related rows it nests."""

    names: list[str | None] = field(default_factory=list)  # None: a key the schema doesn't show
    columns: list[Any] = field(default_factory=list)
    joined: list[tuple[str, "Shape"]] = field(default_factory=list)  # many-to-one: LEFT JOIN
    # one-to-many: (field, this table's column, the child's column, the child's shape)
    lists: list[tuple[str, Any, Any, "Shape"]] = field(default_factory=list)
    order: list[Any] = field(default_factory=list)  # a child's order inside its list
    by_parent: Any = None  # a list's rows: SELECT ... WHERE parent key IN :parent_keys
    from_: Any = None

    def select_list(self) -> list[Any]:
        return [*self.columns, *(c for _, shape in self.joined for c in shape.select_list())]

    def build(self, row: Sequence[Any], start: int = 0) -> tuple[dict[str, Any] | None, int]:
        """The schema's fields from row[start:]; None when a LEFT JOIN found no row."""
        item = {name: row[start + i] for i, name in enumerate(self.names) if name is not None}
        position = start + len(self.columns)
        for name, shape in self.joined:
            item[name], position = shape.build(row, position)
        return (None if row[start] is None else item), position


def _nested_schema(annotation: Any) -> type[BaseModel]:
    """The data model in `X`, `X | None` or `list[X]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        if argument is not type(None):
            return _nested_schema(argument)
    raise TypeError(f"{annotation!r} is not a data model, optional or a list of one")


def _key(table: Any, shape: Shape, column: Any) -> Any:
    """`column` of `table` in the select list (hidden when the schema doesn't show it)."""
    selected = table.corresponding_column(column)
    if selected not in shape.columns:
        shape.names.append(None)
        shape.columns.append(selected)
    return selected


def shape_of(mapper: Mapper[Any], schema: type[BaseModel], table: Any, from_: Any) -> Shape:
    """Columns by field name; relationships: many-to-one joined, one-to-many in a 2nd SELECT.
    A field that is neither a column nor such a relationship is refused: nothing guessed."""
    shape = Shape(from_=from_)
    primary_key = [table.corresponding_column(column) for column in mapper.primary_key]
    _key(table, shape, mapper.primary_key[0])  # first: NULL when a LEFT JOIN missed
    for name, info in schema.model_fields.items():
        prop = mapper.attrs.get(name)
        if isinstance(prop, ColumnProperty) and len(prop.columns) == 1:
            selected = table.corresponding_column(prop.columns[0])
            if selected in shape.columns:  # shown after all: name the hidden key
                shape.names[shape.columns.index(selected)] = name
            else:
                shape.names.append(name)
                shape.columns.append(selected)
            continue
        if not isinstance(prop, RelationshipProperty) or prop.secondary is not None:
            raise TypeError(f"{schema.__name__}.{name}: not a column or relationship of {mapper}")
        nested = _nested_schema(info.annotation)
        local: Any
        remote: Any
        ((local, remote),) = prop.local_remote_pairs or []  # one-column foreign keys only
        if prop.direction is RelationshipDirection.MANYTOONE:
            alias = prop.mapper.local_table.alias()
            on = table.corresponding_column(local) == alias.corresponding_column(remote)
            _key(table, shape, local)
            child = shape_of(prop.mapper, nested, alias, shape.from_.outerjoin(alias, on))
            if child.lists:  # _nest fills the top level's lists only
                raise TypeError(f"{name}: a list inside a joined field is not supported")
            shape.joined.append((name, child))
            shape.from_ = child.from_
        else:
            child_table = prop.mapper.local_table
            child = shape_of(prop.mapper, nested, child_table, child_table)
            child_key = _key(child_table, child, remote)
            child.by_parent = (
                sa.select(*child.select_list())
                .select_from(child.from_)
                .where(child_key.in_(sa.bindparam("parent_keys", expanding=True)))
                .order_by(*child.order)
            )
            shape.lists.append((name, _key(table, shape, local), child_key, child))
    shape.order = primary_key
    return shape


_plans: dict[tuple[Any, Any], tuple[Shape, TypeAdapter[Any]]] = {}


def plan(model: Any, schema: type[BaseModel]) -> tuple[Shape, TypeAdapter[Any]]:
    """Derived once per (model, schema), not per request."""
    if (model, schema) not in _plans:
        table = sa.inspect(model).local_table
        shape = shape_of(sa.inspect(model), schema, table, table)
        _plans[model, schema] = shape, TypeAdapter(list[schema])  # type: ignore[valid-type]
    return _plans[model, schema]


# --8<-- [start:page_rows]
async def page_rows(
    service: ServiceBase[Any, Any, Any],
    schema: type[SchemaT],
    filter: Any = None,
    *,
    sort: str | None = None,
    limit: int | None = None,
    offset: int = 0,
    include_deleted: bool = False,
) -> Page[SchemaT]:
    """service.page(), read as `schema` straight from rows: its columns only, no ORM objects.

    The service's filters, sort keys, bounds and scope (SoftDelete). One statement for the
    page and its total (many-to-one fields joined), one more per list the schema nests.
    Statements are built once per filter shape; values are bind parameters.
    """
    limit = service._limit(limit)
    if not 0 <= offset <= MAX_OFFSET:
        raise InvalidFilter(f"offset must be between 0 and {MAX_OFFSET}")
    node = service._node(filter)
    shape, adapter = plan(service.model, schema)
    statement, parameters = _statement(service, schema, shape, node, sort, include_deleted)
    connection = await service.session.connection()  # Core: rows, not objects
    parameters |= {"page_limit": limit, "page_offset": offset}
    rows = (await connection.execute(statement, parameters)).all()
    if rows:
        total_count = rows[0][-1]
    else:  # past the end there is no row to carry the total: count separately
        total_count = await service.count(node, include_deleted=include_deleted)
    items = [shape.build(row)[0] for row in rows]
    await _nest(connection, shape, items, rows)
    return Page(adapter.validate_python(items), total_count, limit, offset)


# --8<-- [end:page_rows]


# --8<-- [start:statement_cache]
STATEMENTS_KEPT = 500  # what a client's filter shapes can make it hold, like SQLAlchemy's cache
_statements: dict[Any, Any] = {}


def _statement(
    service: ServiceBase[Any, Any, Any],
    schema: type[BaseModel],
    shape: Shape,
    node: Any,
    sort: str | None,
    include_deleted: bool,
) -> tuple[Any, dict[str, Any]]:
    """The page statement for this filter's shape, and this filter's values to bind to it.

    Building a statement and SQLAlchemy's cache key for it costs more than the query on an
    indexed page; a statement kept per shape is built once. The key holds everything the SQL
    depends on: the scope by SQLAlchemy's own cache key, and a scope with bound values (a
    tenant id) is never kept: its next call may need another value.
    """
    scope = service._scope(include_deleted)
    scope_key = sa.and_(*scope)._generate_cache_key() if scope else None
    binder = Binder()
    filter_key = node and _shape_key(node, binder)
    key = (type(service), schema, service.dialect, sort, filter_key, scope_key and scope_key.key)
    statement = _statements.get(key)
    if statement is None:
        building = Binder()
        where = [*scope, *([service.filters.compile(node, building)] if node else [])]
        assert building.values.keys() == binder.values.keys()  # the same names, in order
        total = sa.select(sa.func.count()).select_from(service.model).where(*where)
        statement = (
            sa.select(*shape.select_list(), total.scalar_subquery().label("total"))
            .select_from(shape.from_)
            .where(*where)
            .order_by(*order_by(service._sort(sort), service.dialect))
            .limit(sa.bindparam("page_limit"))
            .offset(sa.bindparam("page_offset"))
        )
        if scope_key is None or not scope_key.bindparams:
            if len(_statements) >= STATEMENTS_KEPT:
                del _statements[next(iter(_statements))]  # the oldest
            _statements[key] = statement
    return statement, binder.values


class Binder:
    """Each operand a bind parameter (filter_0, filter_1, ... in the compiler's order), except
    isnull's flag and an empty list: those change the SQL, so they are part of the shape."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def __call__(self, condition: Condition, operand: Any) -> Any:
        if _in_sql(operand):
            return operand
        if condition.op == "between":
            return tuple(self._parameter(value) for value in operand)
        if isinstance(operand, tuple):  # in, not_in
            return self._parameter(list(operand), expanding=True)
        return self._parameter(operand)

    def _parameter(self, value: Any, expanding: bool = False) -> Any:
        name = f"filter_{len(self.values)}"
        self.values[name] = value
        return sa.bindparam(name, expanding=expanding)


def _in_sql(operand: Any) -> bool:
    return isinstance(operand, bool) or operand == ()


def _shape_key(node: Node, binder: Binder) -> Any:
    """The filter tree with its bound values left out; binds them in the compiler's order."""
    if isinstance(node, Condition):
        value = operand(node)
        binder(node, value)
        return node.field, node.op, value if _in_sql(value) else None
    if isinstance(node, Not):
        return "not", _shape_key(node.item, binder)
    return type(node).__name__, tuple(_shape_key(item, binder) for item in node.items)


# --8<-- [end:statement_cache]


async def _nest(connection: Any, shape: Shape, items: list[Any], rows: Any) -> None:
    """Fill each list field with one SELECT ... WHERE parent key IN (the page's keys)."""
    for name, parent_key, child_key, child in shape.lists:
        position = shape.columns.index(parent_key)
        keys = [row[position] for row in rows]
        by_parent: dict[Any, list[Any]] = {key: [] for key in keys}
        if keys:
            parameters = {"parent_keys": keys}
            child_rows = (await connection.execute(child.by_parent, parameters)).all()
            at = child.columns.index(child_key)
            children = [child.build(row)[0] for row in child_rows]
            await _nest(connection, child, children, child_rows)
            for row, built in zip(child_rows, children, strict=True):
                by_parent[row[at]].append(built)
        for item, key in zip(items, keys, strict=True):
            item[name] = by_parent[key]
