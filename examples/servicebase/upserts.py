"""Opt-in upserts: upsert_many, upsert and race-safe get_or_create (ON CONFLICT / ON DUPLICATE KEY).

Mix it in before ServiceBase: class TeamService(Upserts[Team, TeamCreate, TeamUpdate]): ...
"""

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from .errors import Conflict, DatabaseError, classify, translate
from .service import CreateT, ModelT, ServiceBase, UpdateT

MAX_BIND_PARAMETERS = 30_000  # under asyncpg's 32767 and SQLite's 32766 per statement


class Upserts(ServiceBase[ModelT, CreateT, UpdateT]):
    """Adds upsert_many, upsert and get_or_create."""

    def _insert(self) -> Any:
        dialects = {"postgresql": postgresql.insert, "sqlite": sqlite.insert, "mysql": mysql.insert}
        return dialects[self.dialect](self.model)

    def _rows(self, items: Sequence[CreateT]) -> list[dict[str, Any]]:
        """Column values for a multi-row INSERT, with Python defaults (uuid4, ...) applied.

        Every row gets the same keys; a column left out lets its server default apply.
        """
        objs = [self.model.model_validate(item) for item in items]
        columns = [
            column.key
            for column in sa.inspect(self.model).columns
            if any(getattr(obj, column.key) is not None for obj in objs)
            or not (column.server_default is not None or column.primary_key)
        ]
        return [{key: getattr(obj, key) for key in columns} for obj in objs]

    # --8<-- [start:upsert]
    async def upsert_many(self, items: Sequence[CreateT], *, conflict: Sequence[str]) -> None:
        """Insert, or update the row whose `conflict` key matches: ON CONFLICT / ON DUPLICATE KEY.

        Updates only the fields each item set. A key twice in the batch, or a collision on any
        other unique key, is a Conflict on every backend. One statement per chunk of rows that
        set the same fields, sized under the drivers' bind-parameter limits (MySQL: two).
        """
        groups: dict[frozenset[str], list[CreateT]] = {}
        for item in items:
            groups.setdefault(frozenset(item.model_fields_set), []).append(item)
        batches = [(fields, self._rows(group)) for fields, group in groups.items()]
        conflict = self._conflict_key(conflict)
        self._refuse_duplicates(self._key_rows([row for _, rows in batches for row in rows]))
        table = self.model.__table__  # type: ignore[attr-defined]
        primary = {column.key for column in self._pk}
        for fields, rows in batches:
            per_chunk = max(1, MAX_BIND_PARAMETERS // len(rows[0]))
            for start in range(0, len(rows), per_chunk):
                chunk = rows[start : start + per_chunk]
                statement = self._insert().values(chunk)
                new = statement.excluded if self.dialect != "mysql" else statement.inserted
                updates: dict[str, Any] = {
                    name: getattr(new, name)
                    for name in chunk[0]
                    if name in fields and name not in conflict and name not in primary
                }
                for column in table.columns:  # onupdate isn't applied to ON CONFLICT updates
                    if column.onupdate is not None and column.key not in updates:
                        updates[column.key] = column.onupdate.arg
                if self._version is not None:
                    updates[self._version.key] = self._version + 1
                if self._deleted is not None:
                    updates[self._deleted.key] = None  # upserting revives a soft-deleted row
                if not updates:  # nothing to change: a no-op update keeps the statement valid
                    updates[conflict[0]] = getattr(new, conflict[0])
                if self.dialect == "mysql":
                    # ON DUPLICATE KEY fires on ANY unique key: refuse rows that would hit
                    # another row, and never change a row whose conflict key differs.
                    await self._refuse_other_key_hits(self._key_rows(chunk), conflict)
                    same = sa.and_(
                        *[table.c[k] == getattr(new, k) for k in chunk[0] if k in conflict]
                    )
                    guarded = {k: sa.case((same, v), else_=table.c[k]) for k, v in updates.items()}
                    statement = statement.on_duplicate_key_update(guarded)
                else:
                    statement = statement.on_conflict_do_update(
                        index_elements=list(conflict), set_=updates
                    )
                await self._execute_rowcount(statement)

    # --8<-- [end:upsert]

    def _all_unique_keys(self) -> list[tuple[str, ...]]:
        """The table's unique keys, primary key first."""
        table = self.model.__table__  # type: ignore[attr-defined]
        constraints = [table.primary_key, *table.constraints, *table.indexes]
        keys = [
            tuple(column.key for column in constraint.columns)
            for constraint in constraints
            if isinstance(constraint, sa.PrimaryKeyConstraint | sa.UniqueConstraint)
            or (isinstance(constraint, sa.Index) and constraint.unique)
        ]
        return list(dict.fromkeys(keys))

    def _conflict_key(self, conflict: Sequence[str]) -> list[str]:
        """`conflict` as a unique key of the table; with SoftDelete's live_column, the key
        among live rows that `conflict` names (["secret_name"] -> ["secret_name", "live"])."""
        keys = [set(key) for key in self._all_unique_keys()]
        live = self._live
        if live is not None and {*conflict, live.key} in keys:
            return [*conflict, live.key] if live.key not in conflict else list(conflict)
        if set(conflict) not in keys:
            table = self.model.__table__  # type: ignore[attr-defined]
            raise ValueError(f"conflict={list(conflict)} is not a unique key of {table.name}")
        return list(conflict)

    def _key_rows(self, rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """Rows with the live column's value for the key checks: every written row is live."""
        live = self._live
        return list(rows) if live is None else [{**row, live.key: 1} for row in rows]

    def _shown(self, key: Sequence[str]) -> str:
        live = self._live
        return ", ".join(column for column in key if live is None or column != live.key)

    def _unique_keys(self, conflict: Sequence[str]) -> list[tuple[str, ...]]:
        """The table's unique keys other than `conflict` (a key _conflict_key returned)."""
        return [key for key in self._all_unique_keys() if set(key) != set(conflict)]

    def _refuse_duplicates(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Conflict when two rows of one batch share a unique key (NULLs never collide)."""
        for key in self._all_unique_keys():
            seen: set[tuple[Any, ...]] = set()
            for row in rows:
                value = tuple(row.get(column) for column in key)
                if None in value:
                    continue
                if value in seen:
                    raise Conflict(f"the batch has the same {self._shown(key)} more than once")
                seen.add(value)

    async def _refuse_other_key_hits(
        self, rows: Sequence[Mapping[str, Any]], conflict: Sequence[str]
    ) -> None:
        """MySQL: Conflict when a row's other unique key matches an existing row that its
        conflict key doesn't (ON DUPLICATE KEY UPDATE would update that other row).

        FOR UPDATE reads the latest rows and locks them (and the gaps) until the transaction ends.
        """
        table = self.model.__table__  # type: ignore[attr-defined]
        others = self._unique_keys(conflict)
        owners: dict[tuple[str, ...], dict[tuple[Any, ...], tuple[Any, ...]]] = {}
        conditions = []
        for key in others:
            owners[key] = {
                tuple(row.get(column) for column in key): tuple(row[c] for c in conflict)
                for row in rows
                if all(row.get(column) is not None for column in key)
            }
            if owners[key]:
                values = list(owners[key])
                if len(key) == 1:
                    conditions.append(table.c[key[0]].in_([value for (value,) in values]))
                else:
                    conditions.append(sa.tuple_(*[table.c[c] for c in key]).in_(values))
        if not conditions:
            return
        wanted = {column for key in [tuple(conflict), *others] for column in key}
        statement: Any = (
            sa.select(*[table.c[column] for column in sorted(wanted)])
            .where(sa.or_(*conditions))
            .with_for_update()
        )
        for hit in (await self.session.exec(statement)).mappings():
            target = tuple(hit[column] for column in conflict)
            for key in others:
                owner = owners[key].get(tuple(hit[column] for column in key))
                if owner is not None and owner != target:
                    raise Conflict(
                        f"{self._name} conflicts with an existing one on {self._shown(key)}"
                    )

    async def upsert(self, data: CreateT, *, conflict: Sequence[str]) -> ModelT:
        await self.upsert_many([data], conflict=conflict)
        key_filter = [getattr(self.model, name) == getattr(data, name) for name in conflict]
        statement = (
            select(self.model)
            .where(*key_filter, *self._scope(False))
            .execution_options(populate_existing=True)
        )
        return (await self.session.exec(statement)).one()

    # --8<-- [start:get_or_create]
    async def get_or_create(self, data: CreateT, *, keys: Sequence[str]) -> tuple[ModelT, bool]:
        """Race-safe: insert-or-nothing on the unique key, then read. Never check-then-insert."""
        (row,) = self._rows([data])
        keys = self._conflict_key(keys)
        (key_row,) = self._key_rows([row])
        created: bool
        if self.dialect == "mysql":  # no ON CONFLICT DO NOTHING: absorb the duplicate-key error
            # InnoDB undoes only the failing statement on a duplicate key; the transaction goes
            # on. No savepoint: a deadlock (1213) rolls back the whole transaction, savepoint
            # included, and ROLLBACK TO SAVEPOINT would fail (1305) and hide the retryable 1213.
            try:
                await self.session.exec(sa.insert(self.model).values(row))
                created = True
            except IntegrityError as error:
                if classify(error) is not DatabaseError.UNIQUE_VIOLATION:
                    raise (translate(error, self._name) or error) from None
                created = False
        else:
            statement = (
                self._insert()
                .values(row)
                .on_conflict_do_nothing(index_elements=list(keys))
                .returning(*self._pk)
            )
            try:
                inserted = (await self.session.exec(statement)).first()
            except IntegrityError as error:
                raise (translate(error, self._name) or error) from None
            created = inserted is not None
        lookup = (
            select(self.model)
            .where(*[getattr(self.model, key) == key_row[key] for key in keys])
            .with_for_update(read=True)  # MySQL: read the latest committed row, not a snapshot
            .execution_options(populate_existing=True)
        )
        obj = (await self.session.exec(lookup)).one()
        if self._deleted is not None and getattr(obj, self._deleted.key) is not None:
            # Never hand out (or silently revive) a deleted row: the caller decides to restore.
            raise Conflict(f"a deleted {self._name} holds this key; restore it or delete it hard")
        return obj, created

    # --8<-- [end:get_or_create]
