"""references/multi-tenancy.md: one tenant per session, enforced by the session class; on
PostgreSQL, row-level security behind it (also through a transaction-mode PgBouncer)."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import joinedload, selectinload
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.db import create_engine, create_session_factory
from examples.app.settings import Settings
from examples.servicebase.errors import NotFound
from examples.servicebase.filters import COMPARISON, EQUALITY, TEXT, FilterField, FilterSpec
from examples.servicebase.row_pages import page_rows
from examples.servicebase.service import ServiceBase, rel
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
    projects_router,
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
    """Raw SQL in a tenant session: through its connection (session.execute is deprecated)."""
    connection = await session.connection()  # the session's transaction: the tenant is set
    return list(
        (await connection.execute(sa.text("SELECT name FROM project ORDER BY name"))).scalars()
    )


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


async def test_a_session_without_a_tenant_adds_tenants_but_never_tenant_rows(
    factory: async_sessionmaker[AsyncSession], tenants: tuple[int, int]
) -> None:
    """before_flush asks for a tenant only when a tenant row is new, changed or deleted."""
    a, _ = tenants
    async with factory() as session, session.begin():
        tenant = Tenant(name="c")
        session.add(tenant)  # no tenant rows pending: the flush goes through
    assert tenant.id is not None
    async with factory() as session:
        with pytest.raises(TenantNotSet):
            await session.exec(select(Tenant))  # every ORM read still fails closed
        session.add(Project(name="orphan"))
        with pytest.raises(TenantNotSet):
            await session.flush()
    async with factory() as session:
        theirs = Project(id=1, name="A's", tenant_id=a)  # as if loaded: a delete, not an insert
        sa.orm.make_transient_to_detached(theirs)
        session.add(theirs)
        await session.delete(theirs)
        with pytest.raises(TenantNotSet):
            await session.flush()


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


class TaskRow(SQLModel):
    id: int
    title: str


class ProjectWithTasks(SQLModel):
    id: int
    name: str
    tasks: list[TaskRow]


class ProjectName(SQLModel):
    id: int
    name: str


class TaskWithProject(SQLModel):
    id: int
    title: str
    project: ProjectName | None


class TaskService(ServiceBase[Task, Any, Any]):
    model = Task
    filters = FilterSpec(
        {
            "title": FilterField(Task.title, COMPARISON | TEXT, sortable=True),
            "project.name": FilterField(Project.name, EQUALITY, path=(Task.project,)),
        }
    )
    default_sort = "title"


async def test_page_rows_under_a_tenant_session_sees_one_tenant(
    factory: async_sessionmaker[AsyncSession], tenants: tuple[int, int]
) -> None:
    """page_rows' statements run through the session: the tenant criteria reach the page, its
    total, a joined row, a nested list, a filter through a relationship (EXISTS) and the COUNT
    past the last page; statements kept for one tenant serve the other."""
    a, b = tenants
    in_a_s = {"field": "project.name", "op": "eq", "value": "A's"}
    seen = {}
    for tenant in (a, b, a):
        async with tenant_session(factory, tenant) as session:
            projects = await page_rows(ProjectService(session), ProjectWithTasks)
            tasks = await page_rows(TaskService(session), TaskWithProject)
            filtered = await page_rows(TaskService(session), TaskWithProject, in_a_s)
            past_the_end = await page_rows(TaskService(session), TaskRow, offset=10)
        seen[tenant] = (
            [(p.name, [t.title for t in p.tasks]) for p in projects.items],
            projects.total,
            [(t.title, t.project.name if t.project else None) for t in tasks.items],
            ([t.title for t in filtered.items], filtered.total),
            (past_the_end.items, past_the_end.total),
        )
    assert seen[a] == ([("A's", ["a1"])], 1, [("a1", "A's")], (["a1"], 1), ([], 1))
    # b1's project is a's: not joined, and not found through the filter
    assert seen[b] == ([("B's", [])], 1, [("b1", None)], ([], 0), ([], 1))


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
            await (await session.connection()).execute(insert, {"tenant": b})
    assert getattr(refused.value.orig, "sqlstate", None) == "42501"
    assert 'new row violates row-level security policy for table "project"' in str(refused.value)
    move = sa.text("UPDATE project SET tenant_id = :b")  # moving a row out: also refused
    async with tenant_session(factory, a) as session:
        with pytest.raises(DBAPIError, match="new row violates row-level security policy"):
            await (await session.connection()).execute(move, {"b": b})
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


# ---------------------------------------------------------------- indexes under row-level security

TRIGRAM_INDEX = "CREATE INDEX ix_project_name_trgm ON project USING gin (lower(name) gin_trgm_ops)"
LEAKPROOF = {  # what icontains' lower(name) LIKE ... calls on a column (varchar -> text: a cast)
    "textlike": "pg_catalog.textlike(text, text)",  # the ~~ (LIKE) operator
    "lower": "pg_catalog.lower(text)",
}


@pytest_asyncio.fixture
async def trigram_ready(tenancy_engine: AsyncEngine, tenants: tuple[int, int]) -> None:
    async with tenancy_engine.begin() as connection:
        await connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")


async def icontains_plan(
    factory: async_sessionmaker[AsyncSession],
    tenant: int,
    *,
    tenant_index: bool = False,
    owner_bypasses_rls: bool = False,
) -> str:
    """EXPLAIN of ProjectService's icontains as the app's role, with the trigram index, in a
    transaction rolled back afterwards (the DDL too). Sequential scans priced out: the index
    is taken whenever the planner may take it."""
    async with tenant_session(factory, tenant) as session:
        connection = await session.connection()
        await connection.exec_driver_sql(TRIGRAM_INDEX)
        if not tenant_index:  # the trigram index alone, nothing else to narrow the scan
            await connection.exec_driver_sql("DROP INDEX ix_project_tenant_id")
        if owner_bypasses_rls:
            await connection.exec_driver_sql("ALTER TABLE project NO FORCE ROW LEVEL SECURITY")
        await connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        seen: list[tuple[str, Any]] = []

        def record(_c: Any, _cur: Any, statement: str, params: Any, *_: Any) -> None:
            seen.append((statement, params))

        event.listen(connection.sync_engine, "before_cursor_execute", record)
        try:
            await ProjectService(session).page({"field": "name", "op": "icontains", "value": "ap"})
        finally:
            event.remove(connection.sync_engine, "before_cursor_execute", record)
        (statement, params), *_ = seen
        assert "lower(project.name) LIKE lower(" in statement
        plan = await connection.exec_driver_sql("EXPLAIN " + statement, params)
        await session.rollback()
        return "\n".join(plan.scalars())


@pg_only
async def test_rls_keeps_a_trigram_index_from_serving_icontains(
    factory: async_sessionmaker[AsyncSession], tenants: tuple[int, int], trigram_ready: None
) -> None:
    """The policy's qual must run before a user's qual that isn't LEAKPROOF: lower() and LIKE
    can't be an index condition ahead of it."""
    a, _ = tenants
    under_rls = await icontains_plan(factory, a)
    assert "ix_project_name_trgm" not in under_rls
    assert "Seq Scan on project" in under_rls
    bypassed = await icontains_plan(factory, a, owner_bypasses_rls=True)
    assert "Bitmap Index Scan on ix_project_name_trgm" in bypassed


@pg_only
async def test_under_rls_a_tenant_id_index_still_narrows_the_scan(
    factory: async_sessionmaker[AsyncSession], tenants: tuple[int, int], trigram_ready: None
) -> None:
    """tenant_id = ... is int4eq, LEAKPROOF: an index leading with tenant_id serves it."""
    a, _ = tenants
    plan = await icontains_plan(factory, a, tenant_index=True)
    assert "Index Scan using ix_project_tenant_id on project" in plan
    assert "Index Cond: (tenant_id = " in plan
    assert "ix_project_name_trgm" not in plan


@pg_only
async def test_leakproof_lower_and_like_let_the_trigram_index_serve_under_rls(
    postgres_admin_url: str,
    factory: async_sessionmaker[AsyncSession],
    tenants: tuple[int, int],
    trigram_ready: None,
) -> None:
    """A superuser marks both functions LEAKPROOF in this database: either alone isn't enough."""
    a, _ = tenants
    admin = create_async_engine(
        postgres_admin_url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT"
    )

    async def leakproof(names: tuple[str, ...]) -> None:
        async with admin.connect() as connection:
            for name, signature in LEAKPROOF.items():
                mark = "LEAKPROOF" if name in names else "NOT LEAKPROOF"
                await connection.exec_driver_sql(f"ALTER FUNCTION {signature} {mark}")

    try:
        for names in [("textlike",), ("lower",)]:
            await leakproof(names)
            assert "ix_project_name_trgm" not in await icontains_plan(factory, a), names
        await leakproof(("textlike", "lower"))
        plan = await icontains_plan(factory, a)
        assert "Bitmap Index Scan on ix_project_name_trgm" in plan
        assert "Filter: (tenant_id = " in plan  # the policy (and criteria) on what it found
    finally:
        await leakproof(())
        await admin.dispose()


# ---------------------------------------------------------------- FastAPI: one tenant per request


@pytest_asyncio.fixture
async def http(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncClient]:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        yield {"tenant_factory": factory}

    app = FastAPI(lifespan=lifespan)
    app.include_router(projects_router)
    async with (  # raise_app_exceptions=False: a server error is a 500 response, as deployed
        LifespanManager(app) as manager,
        AsyncClient(
            transport=ASGITransport(app=manager.app, raise_app_exceptions=False),
            base_url="http://test",
        ) as client,
    ):
        yield client


async def test_each_request_sees_only_its_tenants_rows(
    http: AsyncClient, factory: async_sessionmaker[AsyncSession], tenants: tuple[int, int]
) -> None:
    a, b = tenants
    created = await http.post("/projects", json={"name": "Apollo"}, headers={"X-Tenant-Id": str(a)})
    assert created.status_code == 201
    assert created.json()["tenant_id"] == a
    async with tenant_session(factory, a) as session:  # committed
        assert await session.get(Project, created.json()["id"]) is not None
    mine = await http.get("/projects", headers={"X-Tenant-Id": str(a)})
    assert [p["name"] for p in mine.json()] == ["A's", "Apollo"]
    theirs = await http.get("/projects", headers={"X-Tenant-Id": str(b)})
    assert [p["name"] for p in theirs.json()] == ["B's"]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 422),
        ({"X-Tenant-Id": "abc"}, 422),
        ({"X-Tenant-Id": "0"}, 422),
        ({"X-Tenant-Id": str(2**31)}, 422),  # past an INTEGER key: a DataError, a 500
        ({"X-Tenant-Id": str(2**31 - 1)}, 403),  # no such tenant
    ],
)
async def test_a_missing_or_invalid_tenant_is_a_4xx_never_a_500(
    http: AsyncClient, tenants: tuple[int, int], headers: dict[str, str], status: int
) -> None:
    for response in [
        await http.get("/projects", headers=headers),
        await http.post("/projects", json={"name": "x"}, headers=headers),
    ]:
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/json"


async def test_a_name_the_database_cannot_store_is_a_422(
    http: AsyncClient, tenants: tuple[int, int]
) -> None:
    a, _ = tenants
    for name in ["a\x00b", "x" * 101]:  # PostgreSQL refuses NUL in text: a 500 before
        response = await http.post(
            "/projects", json={"name": name}, headers={"X-Tenant-Id": str(a)}
        )
        assert response.status_code == 422, response.text
