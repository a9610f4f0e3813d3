"""SQLAlchemy 2.0-style repository with an async engine and raw SQL (correct code)."""

import asyncio
from decimal import Decimal

from sqlalchemy import ForeignKey, Numeric, String, event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, selectinload
from sqlalchemy import select

SORTABLE = {"total": "orders.total", "id": "orders.id"}


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    orders: Mapped[list["Order"]] = relationship(back_populates="customer", lazy="raise")


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    total: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    customer: Mapped[Customer] = relationship(back_populates="orders", lazy="raise")


def make_engine(url: str) -> AsyncEngine:
    engine = create_async_engine(url, pool_pre_ping=True)

    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: object, _record: object) -> None:
        pass

    return engine


class OrderRepository:
    def __init__(self, factory: async_sessionmaker[AsyncSession]) -> None:
        self.factory = factory

    async def customer_with_orders(self, customer_id: int) -> Customer | None:
        async with self.factory() as session:
            statement = (
                select(Customer)
                .where(Customer.id == customer_id)
                .options(selectinload(Customer.orders))
            )
            return (await session.scalars(statement)).first()

    async def totals_above(self, amount: Decimal) -> list[int]:
        async with self.factory() as session:
            result = await session.execute(
                text("SELECT id FROM orders WHERE total > :amount"), {"amount": amount}
            )
            return [row[0] for row in result]

    async def count_both(self) -> tuple[int, int]:
        async def count(table: str) -> int:
            async with self.factory() as session:
                query = text("SELECT count(*) FROM orders" if table == "orders" else
                             "SELECT count(*) FROM customers")
                return int((await session.execute(query)).scalar_one())

        orders, customers = await asyncio.gather(count("orders"), count("customers"))
        return orders, customers


def main() -> None:
    engine = make_engine("postgresql+asyncpg://app@db/app")
    factory = async_sessionmaker(engine, expire_on_commit=False)
    asyncio.run(OrderRepository(factory).count_both())
