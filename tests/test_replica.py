"""Reads on a real hot standby (`.ci/replica`): read-only, lagging, routed by RoutingSession."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient
from pydantic import SecretStr
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import col, delete, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.db import create_engine, create_session_factory
from examples.app.main import create_app
from examples.app.models import Hero, Team
from examples.app.replicas import ReplicaReads, create_routing_session_factory
from examples.servicebase.transactions import unit_of_work
from tests.conftest import Backend

pytestmark = [pytest.mark.backends("postgresql"), pytest.mark.usefixtures("engine")]

IN_RECOVERY = select(func.pg_is_in_recovery())  # true on the standby, false on the primary


@asynccontextmanager
async def primary_and_replica(
    backend: Backend, replica_url: str
) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    primary = create_engine(backend.settings())
    replica = create_engine(backend.settings(), replica_url)
    try:
        yield primary, replica
    finally:
        async with unit_of_work(create_session_factory(primary)) as session:
            await session.exec(delete(Team))
        await primary.dispose()
        await replica.dispose()


async def team_named(factory: async_sessionmaker[AsyncSession], name: str) -> Team | None:
    async with factory() as session:
        return (await session.exec(select(Team).where(col(Team.name) == name))).first()


async def test_the_replica_is_a_read_only_standby(backend: Backend, replica_url: str) -> None:
    async with primary_and_replica(backend, replica_url) as (_, replica):
        async with create_session_factory(replica)() as session:
            assert (await session.exec(IN_RECOVERY)).one() is True
        with pytest.raises(DBAPIError) as refused:
            async with unit_of_work(create_session_factory(replica)) as session:
                session.add(Team(name="Nope", headquarters="x"))
        assert refused.value.orig is not None
        assert getattr(refused.value.orig, "sqlstate", None) == "25006"
        assert "cannot execute INSERT in a read-only transaction" in str(refused.value.orig)


async def test_routing_reads_on_the_standby_writes_and_locks_on_the_primary(
    backend: Backend, replica_url: str
) -> None:
    async with primary_and_replica(backend, replica_url) as (primary, replica):
        factory = create_routing_session_factory(primary, replica)
        async with factory() as session, session.begin():
            assert (await session.exec(IN_RECOVERY)).one() is True  # a plain read: the standby
            session.add(Team(name="Routed", headquarters="x"))
            await session.flush()  # the write: the primary, and the session stays there
            assert (await session.exec(IN_RECOVERY)).one() is False
            assert (await session.exec(select(Team.name))).all() == ["Routed"]  # its own write
            await session.rollback()
        async with factory() as session, session.begin():
            await session.exec(select(Team).with_for_update())  # a lock: the primary
            assert (await session.exec(IN_RECOVERY)).one() is False


async def test_a_lagging_standby_serves_stale_reads_and_the_primary_does_not(
    backend: Backend, replica_url: str
) -> None:
    """Replay paused: the lag made deterministic. A read that must see a write just committed
    declares it (factory(info={"primary": True})); after replay resumes, the standby has it."""
    async with primary_and_replica(backend, replica_url) as (primary, replica):
        routed = create_routing_session_factory(primary, replica)
        async with replica.connect() as standby:
            await standby.exec_driver_sql("SELECT pg_wal_replay_pause()")
            try:
                async with unit_of_work(create_session_factory(primary)) as session:
                    session.add(Team(name="Fresh", headquarters="x"))
                assert await team_named(routed, "Fresh") is None  # stale: not replayed yet
                async with routed(info={"primary": True}) as session:  # merged into its info
                    found = await session.exec(select(Team).where(col(Team.name) == "Fresh"))
                    assert found.first() is not None
            finally:
                await standby.exec_driver_sql("SELECT pg_wal_replay_resume()")
        for _ in range(1000):  # replayed within 10 s
            if await team_named(routed, "Fresh") is not None:
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the standby never replayed the commit")


@asynccontextmanager
async def app_reading_from(backend: Backend, replica_url: str) -> AsyncIterator[AsyncClient]:
    settings = backend.settings().model_copy(update={"read_replica_url": SecretStr(replica_url)})
    async with (
        LifespanManager(create_app(settings)) as manager,
        AsyncClient(transport=ASGITransport(app=manager.app), base_url="http://test") as client,
    ):
        yield client


async def listed_names(client: AsyncClient) -> list[str]:
    response = await client.get("/heroes")
    assert response.status_code == 200, response.text
    return [hero["name"] for hero in response.json()["items"]]


async def test_the_list_endpoint_reads_the_replica_and_the_primary_when_it_is_down(
    backend: Backend, replica_url: str
) -> None:
    async with primary_and_replica(backend, replica_url) as (primary, replica):
        async with app_reading_from(backend, replica_url) as client:
            async with replica.connect() as standby:
                await standby.exec_driver_sql("SELECT pg_wal_replay_pause()")
                try:
                    hero = {"name": "Echo", "secret_name": "e"}
                    created = await client.post("/heroes", json=hero)
                    assert created.status_code == 201, created.text
                    assert await listed_names(client) == []  # the list: the paused standby
                    detail = await client.get(f"/heroes/{created.json()['id']}")
                    assert detail.status_code == 200  # a detail, then If-Match: the primary
                finally:
                    await standby.exec_driver_sql("SELECT pg_wal_replay_resume()")
            for _ in range(1000):
                if await listed_names(client) == ["Echo"]:
                    break
                await asyncio.sleep(0.01)
            else:
                pytest.fail("the standby never replayed the hero")
            ready = (await client.get("/health/ready")).json()
            assert (ready["database"], ready["replica"]) == ("ok", "ok")

        down = make_url(replica_url).set(port=1).render_as_string(hide_password=False)
        async with app_reading_from(backend, down) as client:
            assert await listed_names(client) == ["Echo"]  # from the primary
            assert await listed_names(client) == ["Echo"]  # again, without trying the replica
            ready = await client.get("/health/ready")
            assert ready.status_code == 200  # reads still work: the pod stays in service
            assert ready.json()["replica"] == "ConnectionRefusedError 111"  # errno, no host
        async with unit_of_work(create_session_factory(primary)) as session:
            await session.exec(delete(Hero))


async def test_a_replica_that_refuses_is_skipped_for_the_cooldown(backend: Backend) -> None:
    primary = create_engine(backend.settings())
    down_url = backend.url.set(port=1).render_as_string(hide_password=False)
    down = create_engine(backend.settings(), down_url)
    attempts: list[object] = []
    event.listen(down.sync_engine, "do_connect", lambda *args: attempts.append(args))
    reads = ReplicaReads(create_session_factory(down), cooldown=60)
    try:
        for _ in range(3):
            async with await reads.session(create_session_factory(primary)) as session:
                assert (await session.exec(IN_RECOVERY)).one() is False  # the primary
        assert len(attempts) == 1  # tried once, then skipped for the cooldown
        assert reads.last_error == "ConnectionRefusedError"
        reads.skip_until = 0  # the cooldown is over: tried again
        async with await reads.session(create_session_factory(primary)):
            pass
        assert len(attempts) == 2
    finally:
        await primary.dispose()
        await down.dispose()
