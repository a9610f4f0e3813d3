"""Opt-in read path for list endpoints: pages of data models built from rows, no ORM objects.

A function of any service, not a mixin: page_rows(heroes, HeroPublic, filter, sort=..., ...)
takes the service's filters (fail closed), sort allowlist, bounds and scope, as page() does.
For data to return, not objects to change: nothing enters the session's identity map. Its
statements select mapped attributes and run through the session, so the session's ORM events
(tenancy.py's tenant criteria) apply to them as they do to page().
"""

import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel, TypeAdapter
from sqlalchemy.orm import ColumnProperty, RelationshipDirection, RelationshipProperty, aliased

from .errors import InvalidFilter
from .filters import Condition
from .pagination import Page, order_by
from .service import MAX_OFFSET, ServiceBase

SchemaT = TypeVar("SchemaT", bound=BaseModel)


@dataclass
class Shape:
    """How one schema is read from one entity: its attributes, and the related rows it nests."""

    entity: Any  # a model, or an alias of one for a joined field
    names: list[str | None] = field(default_factory=list)  # None: a key the schema doesn't show
    keys: list[str] = field(default_factory=list)  # the entity's attributes, selected
    joined: list[tuple[str, "Shape"]] = field(default_factory=list)  # many-to-one: LEFT JOIN
    # one-to-many: (field, this entity's key, the child's key, the child's shape)
    lists: list[tuple[str, str, str, "Shape"]] = field(default_factory=list)
    by_parent: Any = None  # a list's rows: SELECT ... WHERE parent key IN :parent_keys
    # Many-to-one relationships to LEFT JOIN, in order: along the relationship, so a session's
    # loader criteria (tenancy.py) go into the join's ON clause, as for joinedload.
    joins: list[Any] = field(default_factory=list)

    def select(self, *extra: Any) -> Any:
        statement = sa.select(*self.select_list(), *extra).select_from(self.entity)
        for relationship in self.joins:
            statement = statement.outerjoin(relationship)
        return statement

    def select_list(self) -> list[Any]:
        own = [getattr(self.entity, key) for key in self.keys]
        return [*own, *(c for _, shape in self.joined for c in shape.select_list())]

    def build(self, row: Sequence[Any], start: int = 0) -> tuple[dict[str, Any] | None, int]:
        """The schema's fields from row[start:]; None when a LEFT JOIN found no row."""
        item = {name: row[start + i] for i, name in enumerate(self.names) if name is not None}
        position = start + len(self.keys)
        for name, shape in self.joined:
            item[name], position = shape.build(row, position)
        return (None if row[start] is None else item), position

    def add(self, key: str, name: str | None) -> str:
        """Select the entity's `key` once, shown as `name` (None: the schema doesn't show it)."""
        if key not in self.keys:
            self.keys.append(key)
            self.names.append(name)
        elif name is not None:
            self.names[self.keys.index(key)] = name
        return key


def _nested_schema(annotation: Any, field: str) -> type[BaseModel]:
    """The data model in `X`, `X | None` or `list[X]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        if argument is not type(None):
            return _nested_schema(argument, field)
    raise TypeError(f"{field}: {annotation!r} is not a data model, optional or a list of one")


def _attribute_key(entity: Any, column: Any) -> str:
    return str(sa.inspect(entity).mapper.get_property_by_column(column).key)


def shape_of(entity: Any, schema: type[BaseModel], joins: list[Any] | None = None) -> Shape:
    """Attributes by field name; relationships: many-to-one joined, one-to-many in a 2nd SELECT.
    A field that is neither a column nor such a relationship is refused: nothing guessed."""
    mapper = sa.inspect(entity).mapper
    shape = Shape(entity, joins=[] if joins is None else joins)
    shape.add(_attribute_key(entity, mapper.primary_key[0]), None)  # NULL: no join row
    for name, info in schema.model_fields.items():
        prop = mapper.attrs.get(name)
        if isinstance(prop, ColumnProperty) and len(prop.columns) == 1:
            shape.add(prop.key, name)
            continue
        if not isinstance(prop, RelationshipProperty):
            raise TypeError(f"{schema.__name__}.{name}: not a column or relationship of {mapper}")
        if prop.secondary is not None:
            raise TypeError(
                f"{schema.__name__}.{name}: through a link table; nest the link model's rows"
                " instead (a list of its schema, the far side joined inside it)"
            )
        nested = _nested_schema(info.annotation, f"{schema.__name__}.{name}")
        local: Any
        remote: Any
        if len(prop.local_remote_pairs or ()) != 1:
            raise TypeError(f"{schema.__name__}.{name}: only one-column foreign keys")
        ((local, remote),) = prop.local_remote_pairs or []
        if prop.direction is RelationshipDirection.MANYTOONE:
            alias = aliased(prop.mapper.class_)
            shape.joins.append(getattr(entity, name).of_type(alias))
            child = shape_of(alias, nested, shape.joins)
            if child.lists:  # _nest fills lists of the listed rows, not of joined ones
                raise TypeError(f"{schema.__name__}.{name}: no list inside a joined field")
            shape.joined.append((name, child))
        else:
            if not prop.uselist or not prop.primaryjoin.compare(local == remote):
                # The list's SELECT is `child key IN (...)`: it would drop the rest of a custom
                # primaryjoin (a child the relationship hides), and a one-to-one isn't a list.
                raise TypeError(f"{schema.__name__}.{name}: a list needs a plain foreign key")
            local_key = shape.add(_attribute_key(entity, local), None)
            child_entity = prop.mapper.class_
            child = shape_of(child_entity, nested)
            child_key = child.add(_attribute_key(child_entity, remote), None)
            primary_key = [
                getattr(child_entity, _attribute_key(child_entity, c))
                for c in prop.mapper.primary_key
            ]
            parent_keys: Any = sa.bindparam("parent_keys", expanding=True)
            child.by_parent = (
                child.select()
                .where(getattr(child_entity, child_key).in_(parent_keys))
                .order_by(*(prop.order_by or ()), *primary_key)  # the relationship's order
            )
            shape.lists.append((name, local_key, child_key, child))
    return shape


_plans: dict[tuple[Any, Any], tuple[Shape, TypeAdapter[Any]]] = {}


def plan(model: Any, schema: type[BaseModel]) -> tuple[Shape, TypeAdapter[Any]]:
    """Derived once per (model, schema), not per request."""
    if (model, schema) not in _plans:
        _plans[model, schema] = shape_of(model, schema), TypeAdapter(list[schema])  # type: ignore[valid-type]
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
    Statements are kept per shape of the WHERE clause; values are bind parameters.
    """
    limit = service._limit(limit)
    if not 0 <= offset <= MAX_OFFSET:
        raise InvalidFilter(f"offset must be between 0 and {MAX_OFFSET}")
    node = service._node(filter)
    shape, adapter = plan(service.model, schema)
    statement, parameters = _statement(service, schema, node, sort, include_deleted)
    parameters |= {"page_limit": limit, "page_offset": offset}
    rows = (await service.session.exec(statement, params=parameters)).all()
    if rows:
        total_count = rows[0][-1]
    else:  # past the end there is no row to carry the total: count separately
        total_count = await service.count(node, include_deleted=include_deleted)
    items = [shape.build(row)[0] for row in rows]
    await _nest(service, shape, items, rows)
    return Page(adapter.validate_python(items), total_count, limit, offset)


# --8<-- [end:page_rows]


# --8<-- [start:statement_cache]
STATEMENTS_KEPT = 500  # what clients' filter shapes can make it hold; least recently used out
_statements: dict[Any, Any] = {}


def _statement(
    service: ServiceBase[Any, Any, Any],
    schema: type[BaseModel],
    node: Any,
    sort: str | None,
    include_deleted: bool,
) -> tuple[Any, dict[str, Any]]:
    """The page statement for this WHERE clause's shape, and this call's values to bind to it.

    Building the statement and SQLAlchemy's cache key for it costs more than finding it here.
    The WHERE clause (the service's _where: its scope and the filter, values as named bind
    parameters) and the sort are made on every call, so overrides of either count; the clause's
    SQLAlchemy cache key and the sort keys find the statement. A clause holding a bound value
    the Binder didn't make (a tenant id in the scope, a value built into a filter in code), or
    without a cache key, has no kept statement: its next call may need another value.
    """
    binder = Binder()
    where = service._where(node, include_deleted, bind=binder)
    where_key = sa.and_(*where)._generate_cache_key() if where else None
    cacheable = not where or (
        where_key is not None and all(p.key in binder.values for p in where_key.bindparams)
    )
    sort_keys = service._sort(sort)
    key = (
        type(service),
        schema,
        service.dialect,
        tuple((k.name, k.descending, k.nulls_last) for k in sort_keys),
        where_key.key if where_key is not None else (),
    )
    statement = _statements.pop(key, None) if cacheable else None
    if statement is None:
        shape, _ = plan(service.model, schema)
        total = sa.select(sa.func.count()).select_from(service.model).where(*where)
        statement = (
            shape.select(total.scalar_subquery().label("total"))
            .where(*where)
            .order_by(*order_by(sort_keys, service.dialect))
            .limit(sa.bindparam("page_limit"))
            .offset(sa.bindparam("page_offset"))
        )
    if cacheable:
        _statements[key] = statement  # the most recently used last
        while len(_statements) > STATEMENTS_KEPT:
            _statements.pop(next(iter(_statements), None), None)
    return statement, binder.values


class Binder:
    """Each filter value a named bind parameter (filter_0, filter_1, ...). What is SQL rather
    than a value stays in the statement: None (IS NULL), True/False, an empty list, SQL built
    in code (alone or in a list)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def __call__(self, condition: Condition, operand: Any) -> Any:
        items = operand if isinstance(operand, tuple) else (operand,)
        if any(_sql(item) for item in items) or operand == ():
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


def _sql(value: Any) -> bool:
    return value is None or isinstance(value, bool) or hasattr(value, "__clause_element__")


# --8<-- [end:statement_cache]


async def _nest(
    service: ServiceBase[Any, Any, Any], shape: Shape, items: list[Any], rows: Any
) -> None:
    """Fill each list field with one SELECT ... WHERE parent key IN (the page's keys)."""
    for name, parent_key, child_key, child in shape.lists:
        position = shape.keys.index(parent_key)
        keys = [row[position] for row in rows]
        by_parent: dict[Any, list[Any]] = {key: [] for key in keys}
        if keys:
            parameters = {"parent_keys": keys}
            child_rows = (await service.session.exec(child.by_parent, params=parameters)).all()
            at = child.keys.index(child_key)
            children = [child.build(row)[0] for row in child_rows]
            await _nest(service, child, children, child_rows)
            for row, built in zip(child_rows, children, strict=True):
                by_parent[row[at]].append(built)
        for item, key in zip(items, keys, strict=True):
            item[name] = by_parent[key]
