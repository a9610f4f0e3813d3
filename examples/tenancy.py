"""Multi-tenant scoping: every ORM statement filtered by tenant, enforced in one place.

A session belongs to one tenant (session.info["tenant_id"], fixed when it is made). The session
class adds the tenant's WHERE to every ORM SELECT, UPDATE and DELETE, stamps the tenant on new
rows and refuses another tenant's id. On PostgreSQL, row-level security also filters what
bypasses the ORM (text(), Core tables): the same tenant id, set per transaction. A FastAPI
dependency opens one tenant session per request.
"""

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

import sqlalchemy as sa
from alembic.operations import Operations
from fastapi import APIRouter, Depends, Header, HTTPException, Request
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import ORMExecuteState, registry, with_loader_criteria
from sqlmodel import Field, Relationship, SQLModel, col, select
from sqlmodel import Session as SyncSession
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.middleware import finish_even_if_disconnected
from examples.app.types import NulFreeStr
from examples.servicebase.filters import COMPARISON, TEXT, FilterField, FilterSpec
from examples.servicebase.service import ServiceBase
from examples.servicebase.transactions import unit_of_work


# --8<-- [start:registry]
# These tables are not the reference app's: their own registry (and MetaData) keeps them out of
# SQLModel.metadata, so the app's `alembic check` never sees them. In your app, subclass SQLModel.
class TenancyModel(SQLModel, registry=registry()):
    pass


# --8<-- [end:registry]


# --8<-- [start:models]
class TenantScoped(SQLModel):
    """A table with this base belongs to one tenant; the session fills tenant_id in."""

    tenant_id: int | None = Field(default=None, nullable=False, foreign_key="tenant.id", index=True)


class Tenant(TenancyModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: NulFreeStr = Field(max_length=100, unique=True)


class ProjectBase(SQLModel):
    name: NulFreeStr = Field(max_length=100)


class Project(ProjectBase, TenantScoped, TenancyModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    tasks: list["Task"] = Relationship(
        back_populates="project", sa_relationship_kwargs={"lazy": "raise"}
    )


class Task(TenantScoped, TenancyModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=100)
    project_id: int = Field(foreign_key="project.id", index=True)
    project: Project | None = Relationship(
        back_populates="tasks", sa_relationship_kwargs={"lazy": "raise"}
    )


# --8<-- [end:models]


class TenantNotSet(RuntimeError):
    """An ORM statement in a tenant session made without a tenant: fail, never show all rows."""


class WrongTenant(PermissionError):
    """A write that names another tenant's id."""


# --8<-- [start:scoping]
class TenantSession(SyncSession):  # the sync session behind AsyncSession: events go here
    pass


def current_tenant(session: sa.orm.Session) -> int:
    tenant_id = session.info.get("tenant_id")
    if tenant_id is None:
        raise TenantNotSet("this session has no tenant: tenant_session(factory, tenant_id)")
    return int(tenant_id)


@event.listens_for(TenantSession, "do_orm_execute")
def scope_to_tenant(state: ORMExecuteState) -> None:
    """Every ORM select/update/delete (also session.get()) gets WHERE tenant_id = :tenant."""
    if not state.is_orm_statement or state.execution_options.get("all_tenants", False):
        return
    tenant_id = current_tenant(state.session)
    if state.is_insert:  # session.execute(insert(Task), [rows]): no flush, so check the rows
        check_rows(state.parameters, tenant_id)
    elif not (state.is_column_load or state.is_relationship_load):  # those inherit it
        state.statement = state.statement.options(
            *(
                with_loader_criteria(model, col(model.tenant_id) == tenant_id, include_aliases=True)
                for model in scoped_models()
            )
        )


@event.listens_for(TenantSession, "before_flush")
def stamp_tenant(session: sa.orm.Session, _context: Any, _instances: Any) -> None:
    """New rows get the session's tenant; naming another tenant (new or changed) is refused.
    Only tenant rows need a tenant: a session without one may still add a Tenant."""
    changed = [*session.new, *session.dirty, *session.deleted]
    scoped = [obj for obj in changed if isinstance(obj, TenantScoped)]
    if not scoped:
        return
    tenant_id = current_tenant(session)
    for obj in scoped:
        if obj in session.new and obj.tenant_id is None:
            obj.tenant_id = tenant_id
        elif obj.tenant_id != tenant_id:
            raise WrongTenant(f"{type(obj).__name__} belongs to tenant {obj.tenant_id}")


def create_tenant_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(
        engine, class_=AsyncSession, sync_session_class=TenantSession, expire_on_commit=False
    )


@asynccontextmanager
async def tenant_session(
    factory: async_sessionmaker[AsyncSession], tenant_id: int
) -> AsyncIterator[AsyncSession]:
    """One unit of work for one tenant: commits when the block succeeds."""
    async with unit_of_work(factory, info={"tenant_id": tenant_id}) as session:
        yield session


# --8<-- [end:scoping]


def scoped_models() -> list[type[TenantScoped]]:
    """Every mapped subclass of TenantScoped (one criteria each: multi-tenancy.md says why)."""
    found, pending = [], [TenantScoped]
    while pending:
        for sub in pending.pop().__subclasses__():
            pending.append(sub)
            if sa.inspect(sub, raiseerr=False) is not None:
                found.append(sub)
    return found


def check_rows(
    parameters: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None, tenant: int
) -> None:
    rows = [parameters] if isinstance(parameters, Mapping) else parameters or []
    if any(row.get("tenant_id") != tenant for row in rows):
        raise WrongTenant(f"bulk insert rows must all have tenant_id={tenant}")


# --8<-- [start:rls_setting]
@event.listens_for(TenantSession, "after_begin")
def set_tenant_for_rls(session: sa.orm.Session, _transaction: Any, connection: Any) -> None:
    """PostgreSQL: app.tenant_id for this transaction only (true = SET LOCAL): it ends with the
    transaction, so a pooled or PgBouncer-shared connection never carries it to the next one."""
    tenant_id = session.info.get("tenant_id")
    if connection.dialect.name == "postgresql" and tenant_id is not None:
        connection.execute(
            sa.text("SELECT set_config('app.tenant_id', :id, true)"), {"id": str(tenant_id)}
        )


# --8<-- [end:rls_setting]


# --8<-- [start:rls_migration]
# In a revision's upgrade(): enable_row_level_security(op, "project"), then the same for "task".
TENANT_POLICY = "tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::integer"


def enable_row_level_security(op: Operations, table: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # MySQL/MariaDB/SQLite: no RLS; the session's criteria are all there is
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")  # the table owner too
    op.execute(f"CREATE POLICY tenant_isolation ON {table} USING ({TENANT_POLICY})")


# --8<-- [end:rls_migration]
def disable_row_level_security(op: Operations, table: str) -> None:  # downgrade()
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"DROP POLICY tenant_isolation ON {table}")
    op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")


class ProjectCreate(ProjectBase):
    pass


class ProjectUpdate(SQLModel):
    name: NulFreeStr | None = Field(default=None, max_length=100)


# --8<-- [start:service]
class ProjectService(ServiceBase[Project, ProjectCreate, ProjectUpdate]):
    """ServiceBase unchanged: under a tenant session it only sees (and writes) that tenant."""

    model = Project
    filters = FilterSpec({"name": FilterField(Project.name, COMPARISON | TEXT, sortable=True)})
    default_sort = "name"


# --8<-- [end:service]


async def get_tenant_factory(request: Request) -> async_sessionmaker[AsyncSession]:
    factory: async_sessionmaker[AsyncSession] = request.state.tenant_factory  # the lifespan's
    return factory


# --8<-- [start:dependency]
async def get_tenant_id(x_tenant_id: Annotated[int, Header(gt=0, lt=2**31)]) -> int:
    return x_tenant_id  # demo only: in your app, from authentication (the token, the user)


async def get_tenant_session(
    request: Request,
    tenant_id: Annotated[int, Depends(get_tenant_id)],
    factory: Annotated[async_sessionmaker[AsyncSession], Depends(get_tenant_factory)],
) -> AsyncIterator[AsyncSession]:
    async with tenant_session(factory, tenant_id) as session:
        if await session.get(Tenant, tenant_id) is None:  # else: an insert's foreign key, a 500
            raise HTTPException(status_code=403, detail="unknown tenant")
        yield session  # commits after the endpoint (and serialisation); rolls back on error
        finish_even_if_disconnected(request.scope)  # as the app's get_session: COMMIT next


# scope="function": the commit runs before the response is sent, as the app's SessionDep.
TenantSessionDep = Annotated[AsyncSession, Depends(get_tenant_session, scope="function")]
# --8<-- [end:dependency]


projects_router = APIRouter(prefix="/projects")  # tests/test_tenancy.py serves these over HTTP


@projects_router.get("")
async def list_projects(session: TenantSessionDep) -> list[Project]:
    return list((await session.exec(select(Project).order_by(col(Project.name)))).all())


@projects_router.post("", status_code=201)
async def create_project(body: ProjectCreate, session: TenantSessionDep) -> Project:
    return await ProjectService(session).create(body)
