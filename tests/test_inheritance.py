"""Inheritance (draft for references/models.md): a shared base with columns, and single-table
polymorphism with plain SQLAlchemy classes plus SQLModel API models."""

import gc
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio
import sqlalchemy as sa
from sqlalchemy.exc import ArgumentError, IntegrityError, InvalidRequestError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import selectinload
from sqlmodel import SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.db import create_session_factory
from examples.inheritance import (
    Base,
    Billed,
    CreditNote,
    Customer,
    Employee,
    Engineer,
    EngineerPublic,
    InheritanceModel,
    Invoice,
    Manager,
    ManagerPublic,
    base_with_foreign_key_object,
    base_with_relationship,
    base_with_sa_column,
    base_with_shared_index,
    subclass_a_table_model,
    to_public,
)
from examples.servicebase.transactions import unit_of_work

TABLES = {"customer", "invoice", "credit_note", "employee"}


@pytest_asyncio.fixture(scope="session")
async def inheritance_engine(engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    async with engine.begin() as connection:
        await connection.run_sync(InheritanceModel.metadata.create_all)
        await connection.run_sync(Base.metadata.create_all)
    yield engine
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.drop_all)
        await connection.run_sync(InheritanceModel.metadata.drop_all)


@pytest_asyncio.fixture
async def factory(
    inheritance_engine: AsyncEngine,
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    factory = create_session_factory(inheritance_engine)
    yield factory
    async with unit_of_work(factory) as session:
        for model in (Employee, CreditNote, Invoice, Customer):
            await session.exec(sa.delete(model))


def test_tables_stay_off_the_app_metadata() -> None:
    assert set(InheritanceModel.metadata.tables) | set(Base.metadata.tables) == TABLES
    assert not set(LazyBase.metadata.tables) & set(SQLModel.metadata.tables)
    assert not TABLES & set(SQLModel.metadata.tables)


# ---------------------------------------------------------------- a shared base


def test_each_table_gets_its_own_columns_and_constraints() -> None:
    invoice, note = Invoice.__table__, CreditNote.__table__  # type: ignore[attr-defined]
    assert invoice.c.customer_id is not note.c.customer_id
    for table in (invoice, note):
        assert {fk.target_fullname for fk in table.c.customer_id.foreign_keys} == {"customer.id"}
        (unique,) = [c for c in table.constraints if isinstance(c, sa.UniqueConstraint)]
        assert unique.table is table
    assert "customer_id" in Billed.model_fields  # and the base stays a plain data model


@pytest.mark.parametrize(
    ("define", "error", "message"),
    [
        (
            base_with_sa_column,
            ArgumentError,
            "Column object 'note' already assigned to Table 'one'",
        ),
        (
            base_with_foreign_key_object,
            InvalidRequestError,
            "This ForeignKey already has a parent !",
        ),
        (
            base_with_shared_index,
            ArgumentError,
            "Index 'ix_number' is against table 'one', and cannot be associated with table 'two'.",
        ),
        (base_with_relationship, ValueError, "Customer'> has no matching SQLAlchemy type"),
    ],
)
def test_what_a_shared_base_must_not_hold(
    define: Callable[[], None], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as raised:
        define()
    assert message in str(raised.value)


async def test_shared_base_tables_work(factory: async_sessionmaker[AsyncSession]) -> None:
    async with unit_of_work(factory) as session:
        customer = Customer(name="Acme")
        session.add(customer)
        await session.flush()
        assert customer.id is not None
        invoice = Invoice(customer_id=customer.id, number="I-1", amount_cents=1200)
        session.add(invoice)
        await session.flush()
        assert invoice.id is not None
        session.add(CreditNote(customer_id=customer.id, number="I-1", invoice_id=invoice.id))
    async with factory() as session:
        loaded = (await session.exec(select(Invoice).options(selectinload(Invoice.customer)))).one()  # type: ignore[arg-type]
        assert loaded.customer is not None
        assert loaded.customer.name == "Acme"
    with pytest.raises(IntegrityError):  # the per-table unique constraint
        async with unit_of_work(factory) as session:
            session.add(Invoice(customer_id=customer.id, number="I-1"))


# ---------------------------------------------------------------- single-table polymorphism


def test_sqlmodel_cannot_map_a_table_model_subclass() -> None:
    with pytest.raises(AttributeError, match="'NoneType' object has no attribute 'set'"):
        subclass_a_table_model()


async def test_single_table_polymorphism(factory: async_sessionmaker[AsyncSession]) -> None:
    async with unit_of_work(factory) as session:
        session.add_all(
            [
                Manager(name="Ada", budget=100),
                Engineer(name="Linus", language="C"),
                Engineer(name="Guido", language="Python"),
            ]
        )
    async with factory() as session:
        everyone = (await session.exec(select(Employee).order_by(Employee.name))).all()
        assert [type(e) for e in everyone] == [Manager, Engineer, Engineer]  # subclass instances
        managers = (await session.exec(select(Manager))).all()  # WHERE kind IN ('manager')
        assert [m.name for m in managers] == ["Ada"]
        engineers = select(Engineer).where(Engineer.language == "C")
        assert [e.name for e in (await session.exec(engineers)).all()] == ["Linus"]
        kinds = sa.text("SELECT kind FROM employee ORDER BY name")
        stored = (await session.exec(kinds)).scalars().all()  # type: ignore[call-overload]
        assert stored == ["manager", "engineer", "engineer"]
        public = to_public(list(everyone))
        assert [type(p) for p in public] == [ManagerPublic, EngineerPublic, EngineerPublic]
        assert public[0].model_dump() == {
            "kind": "manager",
            "id": everyone[0].id,
            "name": "Ada",
            "budget": 100,
        }


class LazyBase(sa.orm.DeclarativeBase):
    pass


class Person(LazyBase):
    __tablename__ = "person_without_inline"
    __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "person"}
    id: sa.orm.Mapped[int] = sa.orm.mapped_column(primary_key=True)
    kind: sa.orm.Mapped[str] = sa.orm.mapped_column(sa.String(20))


class Pilot(Person):
    __mapper_args__ = {"polymorphic_identity": "pilot"}
    licence: sa.orm.Mapped[str | None] = sa.orm.mapped_column(sa.String(20))


# A failed implicit load leaves an un-awaited driver coroutine behind (aiomysql); collect it
# here so its warning is attributed to this test.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_without_inline_a_subclass_column_lazy_loads(inheritance_engine: AsyncEngine) -> None:
    async with inheritance_engine.begin() as connection:
        await connection.run_sync(LazyBase.metadata.create_all)
    try:
        factory = create_session_factory(inheritance_engine)
        async with unit_of_work(factory) as session:
            session.add(Pilot(licence="PPL"))
        async with factory() as session:
            (pilot,) = (await session.exec(select(Person))).all()
            assert isinstance(pilot, Pilot)
            # Wrapped in StatementError by aiosqlite, aiomysql and psycopg; bare from asyncpg.
            with pytest.raises(
                (sa.exc.MissingGreenlet, sa.exc.StatementError),
                match="greenlet_spawn has not been called",
            ):
                _ = pilot.licence
            gc.collect()
    finally:
        async with inheritance_engine.begin() as connection:
            await connection.run_sync(LazyBase.metadata.drop_all)
