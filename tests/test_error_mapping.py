"""Database errors classified by code and mapped to HTTP statuses (errors.py, web.py), on the
real servers: RESTRICT, lock-wait timeouts, logged 500s, connection failures vs other OSErrors."""

import logging
import sqlite3

import pytest
import sqlalchemy as sa
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient
from pydantic import SecretStr
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from examples.app.api.deps import SessionDep
from examples.app.main import create_app
from examples.servicebase.errors import DatabaseError, ForeignKeyViolation, classify, translate
from tests.conftest import Backend, LiveAppFactory
from tests.test_api_commits import failing_commits

# ---------------------------------------------------------------- constraint codes


async def test_on_delete_restrict_is_a_foreign_key_violation(engine: AsyncEngine) -> None:
    """SQLite reports RESTRICT as SQLITE_CONSTRAINT_TRIGGER (1811), not ..._FOREIGNKEY (787)."""
    metadata = sa.MetaData()
    parent = sa.Table("restrict_parent", metadata, sa.Column("id", sa.Integer, primary_key=True))
    child = sa.Table(
        "restrict_child",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("parent_id", sa.ForeignKey("restrict_parent.id", ondelete="RESTRICT")),
    )
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    try:
        async with engine.connect() as connection:
            await connection.execute(parent.insert().values(id=1))
            await connection.execute(child.insert().values(id=1, parent_id=1))
            with pytest.raises(IntegrityError) as raised:
                await connection.execute(parent.delete())
            await connection.rollback()
    finally:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.drop_all)
    assert classify(raised.value) is DatabaseError.FOREIGN_KEY_VIOLATION
    assert isinstance(translate(raised.value, "parent"), ForeignKeyViolation)  # a 409


@pytest.mark.backends("sqlite")
@pytest.mark.parametrize(
    ("ddl", "statements", "expected"),
    [
        (  # SQLITE_CONSTRAINT_ROWID (2579)
            "CREATE TABLE t (a INTEGER)",
            ["INSERT INTO t (rowid, a) VALUES (1, 1)", "INSERT INTO t (rowid, a) VALUES (1, 2)"],
            DatabaseError.UNIQUE_VIOLATION,
        ),
        (  # SQLITE_CONSTRAINT_DATATYPE (3091)
            "CREATE TABLE t (a INTEGER) STRICT",
            ["INSERT INTO t (a) VALUES ('not a number')"],
            DatabaseError.CHECK_VIOLATION,
        ),
    ],
)
async def test_other_sqlite_constraint_codes(
    engine: AsyncEngine, ddl: str, statements: list[str], expected: DatabaseError
) -> None:
    async with engine.begin() as connection:
        await connection.exec_driver_sql(ddl)
    try:
        async with engine.connect() as connection:
            for statement in statements[:-1]:
                await connection.exec_driver_sql(statement)
            with pytest.raises(IntegrityError) as raised:
                await connection.exec_driver_sql(statements[-1])
            await connection.rollback()
    finally:
        async with engine.begin() as connection:
            await connection.exec_driver_sql("DROP TABLE t")
    assert isinstance(raised.value.orig, sqlite3.IntegrityError)
    assert classify(raised.value) is expected


# ---------------------------------------------------------------- lock-wait timeouts


@pytest.mark.backends("postgresql", "mysql")
async def test_a_lock_wait_timeout_is_a_503_with_retry_after(
    backend: Backend, live_app: LiveAppFactory
) -> None:
    """Another session holds the row lock: PostgreSQL 55P03 (lock_timeout), MySQL/MariaDB 1205
    (innodb_lock_wait_timeout). Both are classified LOCK_TIMEOUT and answered 503."""
    postgres = backend.name == "postgresql"
    short_wait = (
        "SET LOCAL lock_timeout = '200ms'" if postgres else "SET innodb_lock_wait_timeout = 1"
    )
    update = sa.text("UPDATE team SET headquarters = 'Elsewhere' WHERE id = :id")
    async with live_app() as live:
        team = (await live.client.post("/teams", json={"name": "T", "headquarters": "H"})).json()

        @live.app.post("/_move/{team_id}")
        async def move(session: SessionDep, team_id: int) -> None:
            await session.exec(sa.text(short_wait))  # type: ignore[call-overload]
            await session.exec(update.bindparams(id=team_id))  # type: ignore[call-overload]

        async with live.engine.connect() as holder:
            await holder.execute(update, {"id": team["id"]})  # holds the row lock until rollback
            async with live.engine.connect() as waiter:
                await waiter.execute(sa.text(short_wait))
                with pytest.raises(DBAPIError) as raised:
                    await waiter.execute(update, {"id": team["id"]})
            response = await live.client.post(f"/_move/{team['id']}")
            await holder.rollback()
    assert classify(raised.value) is DatabaseError.LOCK_TIMEOUT
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json() == {
        "detail": "the database took too long; retry later",
        "error": "Timeout",
    }


# ---------------------------------------------------------------- 500s are logged


async def test_a_database_500_is_logged_with_its_traceback(
    live_app: LiveAppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async with live_app() as live:
        with caplog.at_level(logging.ERROR, logger="examples.servicebase.web"):
            async with failing_commits():
                response = await live.client.post("/teams", json={"name": "X", "headquarters": "Y"})
    assert response.status_code == 500
    assert response.json() == {"detail": "database error", "error": "DatabaseError"}
    [record] = [r for r in caplog.records if r.name == "examples.servicebase.web"]
    assert record.getMessage() == "POST /teams failed"
    assert record.exc_info is not None
    assert "connection lost during commit" in caplog.text  # the traceback, in the log only
    assert "connection lost" not in response.text


async def test_a_connection_error_from_endpoint_code_is_a_logged_500(
    live_app: LiveAppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Not the database: an outbound call failing is the app's error, not "database busy"."""
    async with live_app() as live:

        @live.app.get("/_charge")
        async def charge() -> None:
            raise ConnectionError("payment gateway at 10.0.0.7 refused the connection")

        with caplog.at_level(logging.ERROR, logger="examples.servicebase.web"):
            response = await live.client.get("/_charge")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error", "error": "InternalError"}
    assert "Retry-After" not in response.headers
    [record] = [r for r in caplog.records if r.name == "examples.servicebase.web"]
    assert record.exc_info is not None
    assert record.exc_info[0] is ConnectionError
    assert "10.0.0.7" in caplog.text
    assert "10.0.0.7" not in response.text


@pytest.mark.backends("postgresql", "mysql")
@pytest.mark.parametrize("host", ["127.0.0.1:1", "nonexistent.invalid"])
async def test_a_database_that_cannot_be_reached_is_still_a_503(
    backend: Backend, host: str
) -> None:
    """asyncpg raises ConnectionRefusedError / socket.gaierror itself; aiomysql's come wrapped
    in OperationalError (2003). Both are 503, because they come from the pool connecting."""
    name, _, port = host.partition(":")
    dead = backend.url.set(host=name, port=int(port) if port else None)
    dead_url = dead.render_as_string(hide_password=False)
    settings = backend.settings().model_copy(update={"database_url": SecretStr(dead_url)})
    app = create_app(settings)
    async with (
        LifespanManager(app) as manager,
        AsyncClient(
            transport=ASGITransport(app=manager.app, raise_app_exceptions=False),
            base_url="http://test",
        ) as client,
    ):
        response = await client.get("/heroes")
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "Unavailable"
    assert name not in response.text
