"""ServiceBase[Model, Create, Update]: typed async CRUD with safe filters, sorting and paging.

The caller owns the transaction: methods flush, never commit (see transactions.unit_of_work).
Opt-in pieces mix in before it, each in its own module: SoftDelete, Versioned, CursorPages, Upserts.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar

import sqlalchemy as sa
from pydantic import TypeAdapter
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.orm.interfaces import ORMOption
from sqlmodel import SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from .errors import InvalidFilter, NotFound, StaleVersion, translate
from .filters import FilterSpec, Node, keep, value_type_for
from .pagination import Page, SortKey, order_by, parse_sort

ModelT = TypeVar("ModelT", bound=SQLModel)
CreateT = TypeVar("CreateT", bound=SQLModel)
UpdateT = TypeVar("UpdateT", bound=SQLModel)

MAX_OFFSET = 1_000_000


# --8<-- [start:rel]
def rel(attribute: object) -> QueryableAttribute[Any]:
    """selectinload(rel(Team.heroes)): SQLModel types Team.heroes as list[Hero] for mypy."""
    if not isinstance(attribute, QueryableAttribute):
        raise TypeError(f"expected a mapped class attribute, got {attribute!r}")
    return attribute


# --8<-- [end:rel]


class ServiceBase(Generic[ModelT, CreateT, UpdateT]):
    """Subclass per model and set: model, filters, loaders, default_sort."""

    model: type[ModelT]
    filters: ClassVar[FilterSpec]
    loaders: ClassVar[Mapping[str, Callable[[], ORMOption]]] = {}
    default_sort: ClassVar[str] = ""
    default_limit: ClassVar[int] = 50
    max_limit: ClassVar[int] = 100
    _deleted: ClassVar[Any] = None  # the soft-delete column, set by SoftDelete
    _live: ClassVar[Any] = None  # SoftDelete.live_column

    # Derived once per subclass (in __init_subclass__), not per request.
    _pk: ClassVar[tuple[Any, ...]]  # the primary key's columns; a composite key's id is a tuple
    _tie_breakers: ClassVar[list[tuple[str, QueryableAttribute[Any], TypeAdapter[Any]]]]
    _version: ClassVar[Any]  # the mapper's version_id_col, or None
    _name: ClassVar[str]
    _sortable: ClassVar[dict[str, tuple[QueryableAttribute[Any], TypeAdapter[Any]]]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "model" not in cls.__dict__:  # an intermediate base class
            return
        mapper = sa.inspect(cls.model)
        cls._pk = tuple(mapper.primary_key)
        attributes = [getattr(cls.model, column.key) for column in cls._pk]
        cls._tie_breakers = [(a.key, a, TypeAdapter(value_type_for(a))) for a in attributes]
        cls._version = mapper.version_id_col
        cls._name = mapper.class_.__name__.lower()
        cls._sortable = {
            name: (spec.column, cls.filters.adapter(name))
            for name, spec in cls.filters.fields.items()
            if spec.sortable and not spec.path
        }

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def _key(self, id: Any) -> tuple[Any, ...]:
        return tuple(id) if len(self._pk) > 1 else (id,)

    def _by_id(self, id: Any) -> sa.ColumnElement[bool]:
        pairs = zip(self._pk, self._key(id), strict=True)
        return sa.and_(*[getattr(self.model, column.key) == value for column, value in pairs])

    @property
    def dialect(self) -> str:
        """The dialect: postgresql, sqlite or mysql (also for mariadb+aiomysql://, "mariadb")."""
        name = self.session.get_bind().dialect.name
        return "mysql" if name == "mariadb" else name

    def _scope(self, include_deleted: bool) -> list[sa.ColumnElement[bool]]:
        """Conditions every read and bulk write adds (SoftDelete: deleted_at IS NULL)."""
        return []

    def _bump(self) -> dict[Any, Any]:
        """SET values for a bulk UPDATE: a versioned row's version goes up with any change."""
        if self._version is None:
            return {}
        version = getattr(self.model, self._version.key)
        return {version: version + 1}

    def _where(
        self, filter: Any, include_deleted: bool, bind: Any = keep
    ) -> list[sa.ColumnElement[bool]]:
        node = self._node(filter)
        clauses = self._scope(include_deleted)
        if node is not None:
            clauses.append(self.filters.compile(node, bind))  # bind: FilterSpec.compile
        return clauses

    def _node(self, filter: Any) -> Node | None:
        """A parsed, validated filter: a client's JSON tree, or a Node built in code."""
        return filter if isinstance(filter, Node) else self.filters.parse(filter)

    def _options(self, load: Sequence[str]) -> list[ORMOption]:
        unknown = [name for name in load if name not in self.loaders]
        if unknown:
            allowed = ", ".join(sorted(self.loaders)) or "none"
            raise InvalidFilter(f"cannot load {unknown}; loadable: {allowed}")
        return [self.loaders[name]() for name in dict.fromkeys(load)]

    def _limit(self, limit: int | None) -> int:
        limit = self.default_limit if limit is None else limit
        if not 1 <= limit <= self.max_limit:
            raise InvalidFilter(f"limit must be between 1 and {self.max_limit}")
        return limit

    def _sort(self, sort: str | None) -> list[SortKey]:
        return parse_sort(sort or self.default_sort, self._sortable, self._tie_breakers)

    async def _read(self, statement: Any) -> Any:
        # Objects in the session may be stale after a bulk UPDATE or upsert in this unit of
        # work: overwrite them. A fresh session (a request) has none and skips the cost.
        if self.session.identity_map:
            statement = statement.execution_options(populate_existing=True)
        return await self.session.exec(statement)

    async def _flush(self) -> None:
        try:
            await self.session.flush()
        except StaleDataError:
            raise StaleVersion(f"{self._name} was changed by someone else; reload it") from None
        except IntegrityError as error:
            raise (translate(error, self._name) or error) from None

    async def create(self, data: CreateT, *, load: Sequence[str] = ()) -> ModelT:
        obj = self.model.model_validate(data)
        self.session.add(obj)
        await self._flush()
        return await self._reload(obj, load)

    async def create_many(self, items: Sequence[CreateT]) -> list[ModelT]:
        """One multi-row INSERT ... RETURNING per 1000 rows; on SQLite only for client-made keys
        (UUID): a database-numbered key is one INSERT per row there."""
        objs = [self.model.model_validate(item) for item in items]
        self.session.add_all(objs)
        await self._flush()
        return objs

    async def get(
        self, id: Any, *, load: Sequence[str] = (), include_deleted: bool = False
    ) -> ModelT:
        obj = await self.get_one_or_none(
            {}, load=load, include_deleted=include_deleted, _extra=[self._by_id(id)]
        )
        if obj is None:
            raise NotFound(f"{self._name} {id} not found")
        return obj

    async def get_one_or_none(
        self,
        filter: Any = None,
        *,
        load: Sequence[str] = (),
        include_deleted: bool = False,
        _extra: Sequence[sa.ColumnElement[bool]] = (),
    ) -> ModelT | None:
        statement = (
            select(self.model)
            .where(*self._where(filter, include_deleted), *_extra)
            .options(*self._options(load))
            .limit(2)
        )
        rows = (await self._read(statement)).all()
        if len(rows) > 1:
            raise InvalidFilter(f"the filter matches more than one {self._name}")
        return rows[0] if rows else None

    async def count(self, filter: Any = None, *, include_deleted: bool = False) -> int:
        statement = (
            select(sa.func.count())
            .select_from(self.model)
            .where(*self._where(filter, include_deleted))
        )
        return (await self.session.exec(statement)).one()

    async def exists(self, filter: Any = None, *, include_deleted: bool = False) -> bool:
        inner = select(*self._pk).where(*self._where(filter, include_deleted))
        return bool((await self.session.exec(select(sa.exists(inner)))).one())

    # --8<-- [start:page]
    async def page(
        self,
        filter: Any = None,
        *,
        sort: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        load: Sequence[str] = (),
        include_deleted: bool = False,
    ) -> Page[ModelT]:
        """One page and the total in one round trip.

        The total is an uncorrelated scalar subquery, computed once: unlike COUNT(*) OVER (),
        it doesn't make the database materialise every match before the LIMIT.
        """
        limit = self._limit(limit)
        if not 0 <= offset <= MAX_OFFSET:
            raise InvalidFilter(f"offset must be between 0 and {MAX_OFFSET}")
        node = self._node(filter)
        where = self._where(node, include_deleted)
        total = select(sa.func.count()).select_from(self.model).where(*where).scalar_subquery()
        statement = (
            select(self.model, total.label("total"))
            .where(*where)
            .order_by(*order_by(self._sort(sort), self.dialect))
            .limit(limit)
            .offset(offset)
            .options(*self._options(load))
        )
        rows = (await self._read(statement)).all()
        if rows:
            total_count = rows[0][1]
        else:  # past the end there is no row to carry the total: count separately
            total_count = await self.count(node, include_deleted=include_deleted)
        return Page([row[0] for row in rows], total_count, limit, offset)

    # --8<-- [end:page]

    # --8<-- [start:update]
    async def update(self, id: Any, data: UpdateT, *, load: Sequence[str] = ()) -> ModelT:
        """Partial update of the fields the client sent; `load`: relationships to return with it."""
        return await self._apply(await self.get(id), data, load)

    async def _apply(self, obj: ModelT, data: UpdateT, load: Sequence[str]) -> ModelT:
        obj.sqlmodel_update(data.model_dump(exclude_unset=True))
        await self._flush()  # versioned: UPDATE ... WHERE id = :id AND version = :read_version
        return await self._reload(obj, load)

    async def _reload(self, obj: ModelT, load: Sequence[str]) -> ModelT:
        """obj with the relationships named in load, read after the write (a changed foreign
        key changes what a relationship holds); no statement when load is empty."""
        if not load:
            return obj
        key = tuple(getattr(obj, column.key) for column in self._pk)
        return await self.get(key if len(key) > 1 else key[0], load=load)

    # --8<-- [end:update]

    async def update_where(self, filter: Any, data: UpdateT) -> int:
        """Bulk UPDATE of every row matching a non-empty filter (in scope); returns the count."""
        node = self._node(filter)
        if node is None:
            raise InvalidFilter("update_where needs a filter")
        values: dict[Any, Any] = data.model_dump(exclude_unset=True)
        if not values:
            return 0
        statement = (
            sa.update(self.model)
            .where(*self._where(node, include_deleted=False))
            .values({**values, **self._bump()})
            .execution_options(synchronize_session=False)
        )
        return await self._execute_rowcount(statement)

    async def _execute(self, statement: Any) -> Any:
        try:
            return await self.session.exec(statement)
        except IntegrityError as error:
            raise (translate(error, self._name) or error) from None

    async def _execute_rowcount(self, statement: Any) -> int:
        return int((await self._execute(statement)).rowcount)

    async def delete(self, id: Any) -> None:
        """One DELETE statement. The schema's ON DELETE rules apply, not ORM cascades."""
        statement = sa.delete(self.model).where(self._by_id(id), *self._scope(False))
        if await self._execute_rowcount(statement) == 0:
            raise NotFound(f"{self._name} {id} not found")

    async def delete_where(self, filter: Any) -> int:
        node = self._node(filter)
        if node is None:
            raise InvalidFilter("delete_where needs a filter; refusing to delete every row")
        statement = sa.delete(self.model).where(*self._where(node, include_deleted=False))
        return await self._execute_rowcount(statement.execution_options(synchronize_session=False))
