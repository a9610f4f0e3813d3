"""Inheritance: a shared base with columns (SQLModel), and single-table polymorphism (which
SQLModel cannot map: plain SQLAlchemy classes for that hierarchy, SQLModel for the API).

The tables here have their own registries, off SQLModel.metadata, so the reference app's
`alembic check` never sees them.
"""

from typing import Annotated, Any, ClassVar, Literal

import sqlalchemy as sa
from pydantic import TypeAdapter
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column, registry
from sqlmodel import Field, Relationship, SQLModel


class InheritanceModel(SQLModel, registry=registry()):
    pass


# --8<-- [start:shared_base]
class Customer(InheritanceModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)


class Billed(SQLModel):
    """Columns of every billing table. A base describes columns (Field arguments); SQLModel
    makes a new Column from them for each table. Never sa_column=Column(...) here."""

    customer_id: int = Field(foreign_key="customer.id", ondelete="CASCADE", index=True)
    number: str = Field(max_length=20)
    amount_cents: int = Field(
        default=0, sa_type=sa.BigInteger, sa_column_kwargs={"server_default": "0"}
    )

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:
        # Called once per table: each gets its own constraint (a shared one fails, see below).
        return (sa.UniqueConstraint("customer_id", "number"),)


class Invoice(Billed, InheritanceModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    # Relationships go on each table class; in a non-table base, Relationship() fails.
    customer: Customer | None = Relationship(sa_relationship_kwargs={"lazy": "raise"})


class CreditNote(Billed, InheritanceModel, table=True):
    __tablename__ = "credit_note"
    id: int | None = Field(default=None, primary_key=True)
    invoice_id: int = Field(foreign_key="invoice.id", ondelete="CASCADE", index=True)


# --8<-- [end:shared_base]


# What a shared base must not hold: each of these fails when the second table is defined.
def base_with_sa_column() -> None:
    """sqlalchemy.exc.ArgumentError: Column object 'note' already assigned to Table 'one'"""

    class Noted(SQLModel):
        note: str | None = Field(default=None, sa_column=sa.Column(sa.String(100)))

    _two_tables(Noted)


def base_with_foreign_key_object() -> None:
    """sqlalchemy.exc.InvalidRequestError: This ForeignKey already has a parent !"""

    class Owned(SQLModel):
        customer_id: int = Field(sa_column_args=[sa.ForeignKey("customer.id")])

    _two_tables(Owned)


def base_with_shared_index() -> None:
    """sqlalchemy.exc.ArgumentError: Index 'ix_number' is against table 'one', and cannot be
    associated with table 'two'."""

    class Numbered(SQLModel):
        __table_args__ = (sa.Index("ix_number", "number"),)
        number: str = Field(max_length=20)

    _two_tables(Numbered)


def base_with_relationship() -> None:
    """ValueError: <class '...Customer'> has no matching SQLAlchemy type"""

    class Owned(SQLModel):
        customer_id: int = Field(foreign_key="customer.id")
        customer: Customer | None = Relationship()  # check: ignore[ASM006]

    _two_tables(Owned)


def _two_tables(base: Any) -> None:
    class Model(SQLModel, registry=registry()):
        pass

    class Customer(Model, table=True):
        id: int | None = Field(default=None, primary_key=True)

    class One(base, Model, table=True):  # type: ignore[misc]
        id: int | None = Field(default=None, primary_key=True)

    class Two(base, Model, table=True):  # type: ignore[misc]
        id: int | None = Field(default=None, primary_key=True)


# --8<-- [start:natural_attempt]
def subclass_a_table_model() -> None:
    """SQLModel maps no table model that subclasses another (fastapi/sqlmodel#36): the
    subclass is left half-made, and creating one raises
    AttributeError: 'NoneType' object has no attribute 'set'."""

    class Model(SQLModel, registry=registry()):
        pass

    class Employee(Model, table=True):
        __mapper_args__: ClassVar[dict[str, Any]] = {
            "polymorphic_on": "kind",
            "polymorphic_identity": "employee",
        }
        id: int | None = Field(default=None, primary_key=True)
        name: str = Field(max_length=100)
        kind: str = Field(default="employee", max_length=20)

    class Manager(Employee, table=True):
        __mapper_args__: ClassVar[dict[str, Any]] = {"polymorphic_identity": "manager"}
        budget: int | None = None

    Manager(name="Ada", budget=10)


# --8<-- [end:natural_attempt]


# --8<-- [start:single_table]
class Base(DeclarativeBase):
    """Plain SQLAlchemy for the polymorphic hierarchy. In your app, share the MetaData so
    Alembic sees these tables too: metadata = SQLModel.metadata."""


class Employee(Base):
    __tablename__ = "employee"
    __mapper_args__ = {
        "polymorphic_on": "kind",
        "polymorphic_identity": "employee",
    }

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    kind: Mapped[str] = mapped_column(sa.String(20), index=True)


class Manager(Employee):  # no __tablename__: a row in "employee" with kind = 'manager'
    # inline: select(Employee) loads budget too. Without it, reading manager.budget after
    # that query lazy-loads: MissingGreenlet in async code.
    __mapper_args__ = {
        "polymorphic_identity": "manager",
        "polymorphic_load": "inline",
    }

    budget: Mapped[int | None]  # NULL for the other kinds, so subclass columns are nullable


class Engineer(Employee):
    __mapper_args__ = {
        "polymorphic_identity": "engineer",
        "polymorphic_load": "inline",
    }

    language: Mapped[str | None] = mapped_column(sa.String(50))


# --8<-- [end:single_table]


# --8<-- [start:api_models]
class ManagerPublic(SQLModel):
    kind: Literal["manager"]
    id: int
    name: str
    budget: int | None


class EngineerPublic(SQLModel):
    kind: Literal["engineer"]
    id: int
    name: str
    language: str | None


EmployeePublic = Annotated[ManagerPublic | EngineerPublic, Field(discriminator="kind")]
employees_adapter = TypeAdapter(list[EmployeePublic])


def to_public(rows: list[Employee]) -> list[ManagerPublic | EngineerPublic]:
    """A FastAPI response_model=list[EmployeePublic] does the same."""
    return employees_adapter.validate_python(rows, from_attributes=True)


# --8<-- [end:api_models]
