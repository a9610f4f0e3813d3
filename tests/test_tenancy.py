"""references/multi-tenancy.md: one tenant per session, enforced by the session class; on
PostgreSQL, row-level security behind it (also through a transaction-mode PgBouncer)."""

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import joinedload, selectinload
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.db import create_engine, create_session_factory
from examples.app.settings import Settings
from examples.servicebase.errors import NotFound
from examples.servicebase.service import rel
from examples.servicebase.transactions import unit_of_work
from examples.tenancy import (
    Project,
    ProjectCreate,
    ProjectService,
    ProjectUpdate,
    Task,
    TenancyModel,
    Tenant,
    TenantNotSet,
    WrongTenant,
    create_tenant_session_factory,
    disable_row_level_security,
    enable_row_level_security,
    tenant_session,
)
from tests.conftest import Backend

RLS_TABLES = ("project", "task")
pg_only = pytest.mark.backends("postgresql", "psycopg")


def migrate_rls(connection: Connection, enable: bool = True) -> None:
    op = Operations(MigrationContext.configure(connection))
    for table in RLS_TABLES:
        (enable_row_level_security if enable else disable_row_level_security)(op, table)


@pytest_asyncio.fixture(scope="session")
async def tenancy_engine(engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """The run's database with the tenancy tables (not on SQLModel.metadata) and, on
    PostgreSQL, their policies, as a migration would make them."""

    def create(connection: Connection) -> None:
        TenancyModel.metadata.create_all(connection)
        migrate_rls(connection)

    async with engine.begin() as connection:
        await connection.run_sync(create)
    yield engine
    async with engine.begin() as connection:
        await connection.run_sync(TenancyModel.metadata.drop_all)


@pytest_asyncio.fixture
async def factory(tenancy_engine: AsyncEngine) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    yield create_tenant_session_factory(tenancy_engine)
    async with tenancy_engine.begin() as connection:
        if connection.dialect.name == "postgresql":  # TRUNCATE is not subject to RLS
            await connection.exec_driver_sql("TRUNCATE task, project, tenant")
        else:
            for table in ("task", "project", "tenant"):
                await connection.exec_driver_sql(f"DELETE FROM {table}")


@pytest_asyncio.fixture
async def tenants(
    tenancy_engine: AsyncEngine, factory: async_sessionmaker[AsyncSession]
) -> tuple[int, int]:
    """Tenants a and b with a project each; b's task points at a's project (the plain foreign
    key allows it) so that relationship loads have something to leak."""
    async with unit_of_work(create_session_factory(tenancy_engine)) as admin:
        a, b = Tenant(name="a"), Tenant(name="b")
        admin.add_all([a, b])
    assert a.id is not None
    assert b.id is not None
    async with tenant_session(factory, a.id) as session:
        project_a = Project(name="A's")
        session.add(project_a)
        await session.flush()
        assert project_a.id is not None
        session.add(Task(title="a1", project_id=project_a.id))
    async with tenant_session(factory, b.id) as session:
        session.add(Project(name="B's"))
        session.add(Task(title="b1", project_id=project_a.id))
    return a.id, b.id


async def raw_names(session: AsyncSession) -> list[str]:
    statement = sa.text("SELECT name FROM project ORDER BY name")
    return list((await session.exec(statement)).scalars())  # type: ignore[call-overload]


# ---------------------------------------------------------------- isolation


def test_tables_stay_off_the_app_metadata() -> None:
    assert set(TenancyModel.metadata.tables) == {"tenant", "project", "task"}
    assert not {"tenant", "project", "task"} & set(SQLModel.metadata.tables)


# ---------------------------------------------------------------- the ORM criteria


async def test_a_select_without_a_filter_returns_only_the_tenants_rows(
    factory: async_sessionmaker[AsyncSession], tenants: tuple[int, int]
) -> None:
    a, b = tenants
    async with tenant_session(factory, a) as session:
        assert [p.name for p in (await session.exec(select(Project))).all()] == ["A's"]
        assert (await session.exec(select(sa.func.count()).select_from(Task))).one() == 1
        aliased = sa.orm.aliased(Project)
        assert len((await session.exec(select(aliased))).all()) == 1
    async with tenant_session(factory, b) as session:
        assert [p.name for p in (await session.exec(select(Project))).all()] == ["B's"]


async def test_relationship_loads_are_scoped(
    factory: async_sessionmaker[AsyncSession], tenants: tuple[int, int]
) -> None:
    a, b = tenants
    async with tenant_session(factory, a) as session:
        project = (
            await session.exec(select(Project).options(selectinload(rel(Project.tasks))))
        ).one()
        assert [t.title for t in project.tasks] == ["a1"]  # not b's task that points here
    async with tenant_session(factory, a) as session:
        joined = select(Project).options(joinedload(rel(Project.tasks)))
        project = (await session.exec(joined)).unique().one()
        assert [t.title for t in project.tasks] == ["a1"]
    async with tenant_session(factory, b) as session:
        task = (await session.exec(select(Task).options(joinedload(rel(Task.project))))).one()
        assert task.title == "b1"
        assert task.project is None  # a's project, invisible to b
        explicit = select(Task, Project).join(Project, col(Task.project_id) == Project.id)
        assert (await session.exec(explicit)).all() == []


async def test_orm_update_and_delete_statements_are_scoped(
    factory: async_sessionmaker[AsyncSession], tenants: tuple[int, int]
) -> None:
    a, b = tenants
    async with tenant_session(factory, a) as session:
        renamed = await session.exec(sa.update(Project).values(name="renamed"))
        assert renamed.rowcount == 1
        deleted = await session.exec(sa.delete(Task))
        assert deleted.rowcount == 1
    async with tenant_session(factory, b) as session:
        assert [p.name for p in (await session.exec(select(Project))).all()] == ["B's"]
        assert len((await session.exec(select(Task))).all()) == 1


async def test_get_of_another_tenants_key_returns_none(
    factory: async_sessionmaker[AsyncSession], tenants: tuple[int, int]
) -> None:
    a, b = tenants
    async with tenant_session(factory, a) as session:
        mine = (await session.exec(select(Project))).one()
    async with tenant_session(factory, b) as session:
        assert await session.get(Project, mine.id) is None  # get() runs do_orm_execute too


async def test_get_answers_from_the_identity_map_without_the_criteria(
    factory: async_sessionmaker[AsyncSession], tenants: tuple[int, int]
) -> None:
    """Why a session's tenant is fixed when it is made: get() of an object already in the
    session emits no SQL, so it returns it whatever session.info says now."""
    a, b = tenants
    async with tenant_session(factory, a) as session:
        mine = (await session.exec(select(Project))).one()
        session.info["tenant_id"] = b  # don't: one session, one tenant
        assert await session.get(Project, mine.id) is mine


async def test_no_tenant_fails_closed(
    factory: async_sessionmaker[AsyncSession], tenants: tuple[int, int]
) -> None:
    async with factory() as session:
        with pytest.raises(TenantNotSet):
            await session.exec(select(Project))
        with pytest.raises(TenantNotSet):
            await session.get(Project, 1)
        with pytest.raises(TenantNotSet):
            await session.exec(sa.delete(Task))
        session.add(Project(name="orphan"))
        with pytest.raises(TenantNotSet):
            await session.flush()
    async with factory() as session:  # the explicit way out of the criteria, e.g. a report
        everyone = select(Project).execution_options(all_tenants=True)
        rows = (await session.exec(everyone)).all()
        # PostgreSQL: RLS still shows no tenant nothing (a BYPASSRLS role would see all).
        assert len(rows) == (0 if session.get_bind().dialect.name == "postgresql" else 2)


async def test_new_rows_get_the_tenant_and_another_tenants_id_is_refused(
    factory: async_sessionmaker[AsyncSession], tenants: tuple[int, int]
) -> None:
    a, b = tenants
    async with tenant_session(factory, a) as session:
        project = Project(name="new")
        session.add(project)
        await session.flush()
        assert project.tenant_id == a
    with pytest.raises(WrongTenant):
        async with tenant_session(factory, a) as session:
            session.add(Project(name="planted", tenant_id=b))
    async with tenant_session(factory, a) as session:
        moved = (await session.exec(select(Project).where(Project.name == "new"))).one()
        moved.tenant_id = b
        with pytest.raises(WrongTenant):
            await session.flush()
        await session.rollback()
    with pytest.raises(WrongTenant):
        async with tenant_session(factory, a) as session:
            await session.exec(sa.insert(Project), params=[{"name": "bulk", "tenant_id": b}])
    async with tenant_session(factory, a) as session:
        await session.exec(sa.insert(Project), params=[{"name": "bulk", "tenant_id": a}])
        names = {p.name for p in (await session.exec(select(Project))).all()}
    assert names == {"A's", "new", "bulk"}


async def test_core_table_statements_and_text_bypass_the_criteria(
    factory: async_sessionmaker[AsyncSession], tenants: tuple[int, int]
) -> None:
    """Not ORM statements, so no criteria: only row-level security (PostgreSQL) stops them."""
    a, _ = tenants
    async with tenant_session(factory, a) as session:
        core = (await session.exec(sa.select(Project.__table__.c.name))).all()  # type: ignore[call-overload,attr-defined]
        raw = await raw_names(session)
        leaked = session.get_bind().dialect.name != "postgresql"
    assert len(core) == len(raw) == (2 if leaked else 1)


async def test_service_base_under_a_tenant_session_sees_one_tenant(
    factory: async_sessionmaker[AsyncSession], tenants: tuple[int, int]
) -> None:
    a, b = tenants
    async with tenant_session(factory, b) as session:
        theirs = (await session.exec(select(Project))).one()
    async with tenant_session(factory, a) as session:
        projects = ProjectService(session)
        created = await projects.create(ProjectCreate(name="Apollo"))
        assert created.tenant_id == a
        page = await projects.page(sort="name")
        assert ([p.name for p in page.items], page.total) == (["A's", "Apollo"], 2)
        assert await projects.count() == 2
        assert not await projects.exists({"field": "name", "op": "eq", "value": "B's"})
        with pytest.raises(NotFound):
            await projects.get(theirs.id)
        with pytest.raises(NotFound):
            await projects.update(theirs.id, ProjectUpdate(name="hijacked"))
        with pytest.raises(NotFound):
            await projects.delete(theirs.id)
        b_name = {"field": "name", "op": "eq", "value": "B's"}
        assert await projects.update_where(b_name, ProjectUpdate(name="x")) == 0
        assert await projects.delete_where(b_name) == 0
    async with tenant_session(factory, b) as session:
        assert (await session.exec(select(Project))).one().name == "B's"


# ---------------------------------------------------------------- row-level security


@pg_only
async def test_rls_filters_raw_sql_and_no_tenant_sees_nothing(
    tenancy_engine: AsyncEngine, factory: async_sessionmaker[AsyncSession], tenants: tuple[int, int]
) -> None:
    a, b = tenants
    async with tenant_session(factory, a) as session:
        assert await raw_names(session) == ["A's"]
    async with tenant_session(factory, b) as session:
        assert await raw_names(session) == ["B's"]
    async with unit_of_work(create_session_factory(tenancy_engine)) as plain:
        assert await raw_names(plain) == []  # the table owner, no tenant: FORCE applies


@pg_only
async def test_rls_refuses_a_row_for_another_tenant(
    factory: async_sessionmaker[AsyncSession], tenants: tuple[int, int]
) -> None:
    a, b = tenants
    insert = sa.text("INSERT INTO project (name, tenant_id) VALUES ('planted', :tenant)")
    with pytest.raises(DBAPIError) as refused:
        async with tenant_session(factory, a) as session:
            await session.exec(insert, params={"tenant": b})  # type: ignore[call-overload]
    assert getattr(refused.value.orig, "sqlstate", None) == "42501"
    assert 'new row violates row-level security policy for table "project"' in str(refused.value)
    move = sa.text("UPDATE project SET tenant_id = :b")  # moving a row out: also refused
    async with tenant_session(factory, a) as session:
        with pytest.raises(DBAPIError, match="new row violates row-level security policy"):
            await session.exec(move, params={"b": b})  # type: ignore[call-overload]
        await session.rollback()


@pg_only
async def test_without_force_the_table_owner_bypasses_rls(
    tenancy_engine: AsyncEngine, tenants: tuple[int, int]
) -> None:
    async with tenancy_engine.connect() as connection:  # rolled back at the end: DDL too
        await connection.exec_driver_sql("ALTER TABLE project NO FORCE ROW LEVEL SECURITY")
        names = (await connection.execute(sa.text("SELECT name FROM project"))).scalars()
        assert len(list(names)) == 2  # the owner (the app's role) sees every tenant
        await connection.rollback()


@pg_only
async def test_current_setting_errors_the_policy_avoids(
    backend: Backend, tenancy_engine: AsyncEngine, factory: async_sessionmaker[AsyncSession]
) -> None:
    """Without missing_ok (true), a connection that never set it fails; without NULLIF, a
    pooled connection where an earlier transaction set it has '' (not NULL) afterwards."""
    fresh = create_engine(backend.settings(), poolclass=sa.pool.NullPool)
    try:
        async with fresh.connect() as connection:
            with pytest.raises(
                DBAPIError, match=r'unrecognized configuration parameter "app\.tenant_id"'
            ):
                await connection.execute(sa.text("SELECT current_setting('app.tenant_id')"))
            await connection.rollback()
            async with connection.begin():
                await connection.execute(sa.text("SELECT set_config('app.tenant_id', '7', true)"))
            value = sa.text("SELECT current_setting('app.tenant_id', true)")
            assert (await connection.execute(value)).scalar_one() == ""
            with pytest.raises(DBAPIError, match='invalid input syntax for type integer: ""'):
                await connection.execute(
                    sa.text("SELECT current_setting('app.tenant_id', true)::integer")
                )
    finally:
        await fresh.dispose()


@pg_only
async def test_interleaved_tenants_on_a_small_pool_never_see_each_other(
    backend: Backend, tenancy_engine: AsyncEngine, tenants: tuple[int, int]
) -> None:
    settings = Settings.model_validate(
        backend.settings().model_dump() | {"pool_size": 2, "max_overflow": 0}
    )
    pooled = create_engine(settings)
    try:
        await interleave(create_tenant_session_factory(pooled), tenants)
    finally:
        await pooled.dispose()


@pytest.mark.backends("postgresql")
async def test_interleaved_tenants_through_pgbouncer_never_see_each_other(
    pgbouncer_url: str, tenants: tuple[int, int]
) -> None:
    settings = Settings.model_validate({"database_url": pgbouncer_url, "pgbouncer": True})
    bouncer = create_engine(settings)
    try:
        await interleave(create_tenant_session_factory(bouncer), tenants)
    finally:
        await bouncer.dispose()


async def interleave(factory: async_sessionmaker[AsyncSession], tenants: tuple[int, int]) -> None:
    """Many units at once, alternating tenants and no tenant, on shared server connections."""
    expected = {tenants[0]: ["A's"], tenants[1]: ["B's"], None: []}

    async def unit(tenant: int | None) -> None:
        if tenant is None:
            async with factory() as session, session.begin():
                assert await raw_names(session) == []
            return
        async with tenant_session(factory, tenant) as session:
            assert await raw_names(session) == expected[tenant]
            await asyncio.sleep(0)  # let other units take turns mid-transaction
            assert await raw_names(session) == expected[tenant]
            assert [p.name for p in (await session.exec(select(Project))).all()] == expected[tenant]

    await asyncio.gather(*(unit([*tenants, None][i % 3]) for i in range(60)))


@pg_only
async def test_the_migration_downgrades(tenancy_engine: AsyncEngine) -> None:
    async with tenancy_engine.connect() as connection:
        await connection.run_sync(migrate_rls, False)
        enabled = sa.text("SELECT relrowsecurity FROM pg_class WHERE relname = 'project'")
        assert (await connection.execute(enabled)).scalar_one() is False
        await connection.rollback()
