"""Opt-in soft delete: rows with deleted_at set are hidden from every read and bulk write.

Mix it in before ServiceBase: class HeroService(SoftDelete[Hero, HeroCreate, HeroUpdate]): ...
Reads take include_deleted=True to see them; delete(hard=True) removes the row.
"""

from collections.abc import Sequence
from typing import Any, ClassVar

import sqlalchemy as sa

from .errors import InvalidFilter, NotFound
from .service import CreateT, ModelT, ServiceBase, UpdateT


class SoftDelete(ServiceBase[ModelT, CreateT, UpdateT]):
    soft_delete_column: ClassVar[str] = "deleted_at"  # a nullable timestamp on the model
    # A computed column, 1 while live and NULL once deleted, that the unique keys include
    # (unique among live rows): Upserts then matches live rows only. None: keys are global.
    live_column: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "model" in cls.__dict__:
            columns = sa.inspect(cls.model).columns
            cls._deleted = columns[cls.soft_delete_column]
            cls._live = columns[cls.live_column] if cls.live_column else None

    @property
    def _deleted_attr(self) -> Any:
        return getattr(self.model, self._deleted.key)  # the ORM attribute: evaluable in Python

    def _scope(self, include_deleted: bool) -> list[sa.ColumnElement[bool]]:
        scope = super()._scope(include_deleted)
        return scope if include_deleted else [*scope, self._deleted_attr.is_(None)]

    # --8<-- [start:soft_delete]
    async def delete(self, id: Any, *, hard: bool = False) -> None:
        """One UPDATE ... SET deleted_at = now() WHERE id = :id AND deleted_at IS NULL."""
        if hard:
            return await super().delete(id)
        statement = (
            sa.update(self.model)
            .where(self._by_id(id), *self._scope(False))
            .values({self._deleted_attr: sa.func.now(), **self._bump()})
            .execution_options(synchronize_session=False)
        )
        if await self._execute_rowcount(statement) == 0:
            raise NotFound(f"{self._name} {id} not found")
        held = self.session.identity_map.get(
            sa.inspect(self.model).identity_key_from_primary_key(list(self._key(id)))
        )
        if held is not None:  # a caller holds this row: it sees the change, never a lazy load
            columns = [column.key for column in sa.inspect(self.model).column_attrs]
            await self.session.refresh(held, columns)

    async def delete_where(self, filter: Any, *, hard: bool = False) -> int:
        if hard:
            return await super().delete_where(filter)
        node = self._node(filter)
        if node is None:
            raise InvalidFilter("delete_where needs a filter; refusing to delete every row")
        statement = (
            sa.update(self.model)
            .where(*self._where(node, include_deleted=False))
            .values({self._deleted: sa.func.now(), **self._bump()})
            .execution_options(synchronize_session=False)
        )
        return await self._execute_rowcount(statement)

    async def restore(self, id: Any, *, load: Sequence[str] = ()) -> ModelT:
        """One UPDATE that clears deleted_at, RETURNING the row where the database can
        (MariaDB can't: one SELECT more). A row that isn't deleted comes back unchanged."""
        statement = (
            sa.update(self.model)
            .where(self._by_id(id), self._deleted.is_not(None))
            .values({self._deleted: None, **self._bump()})
            .execution_options(synchronize_session=False)
        )
        if self.session.get_bind().dialect.update_returning:
            returning = statement.returning(self.model)
            result = await self._execute(returning.execution_options(populate_existing=True))
            restored: ModelT | None = result.scalars().first()
            if restored is not None:
                return await self._reload(restored, load)
        else:
            await self._execute(statement)
        return await self.get(id, load=load)

    # --8<-- [end:soft_delete]
