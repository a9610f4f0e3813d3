"""Engine and session factory for SQLite (aiosqlite), PostgreSQL (asyncpg) and MySQL (aiomysql)."""

import asyncio
import importlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool, Pool, StaticPool
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.settings import Settings


# --8<-- [start:engine]
def mysql_connect_args(statement_timeout_ms: int = 0) -> dict[str, Any]:
    """Every MySQL/MariaDB connection (app and migrations): full UTF-8, UTC session clock."""
    # NOW()/CURRENT_TIMESTAMP and DATETIME follow the session time zone: make it UTC.
    init = "SET time_zone = '+00:00'"
    if statement_timeout_ms:  # /*M! */: MariaDB only
        init += f" /*M!, max_statement_time = {statement_timeout_ms / 1000} */"
    return {"charset": "utf8mb4", "init_command": init}


# The dialect names of mysql+aiomysql:// and mariadb+aiomysql:// URLs.
MYSQL_DIALECTS = ("mysql", "mariadb")


def bounded_aiomysql_connect(timeout: float) -> Callable[..., Awaitable[Any]]:
    async def connect(*args: Any, **kwargs: Any) -> Any:
        # By name: this module imports and type-checks without aiomysql installed.
        aiomysql = importlib.import_module("aiomysql")
        async with asyncio.timeout(timeout):  # then TimeoutError: the app answers 503
            return await aiomysql.connect(*args, **kwargs)

    return connect


def create_engine(
    settings: Settings, url: str | None = None, *, poolclass: type[Pool] | None = None
) -> AsyncEngine:
    """The app's engine. `url` overrides settings.database_url (e.g. a read replica);
    `poolclass` the pool (migrations: NullPool)."""
    database_url = make_url(url or settings.database_url.get_secret_value())
    backend = database_url.get_backend_name()
    options: dict[str, Any] = {
        "echo": settings.echo_sql,
        "hide_parameters": True,  # logs and error messages show the SQL, never the values
        "pool_pre_ping": True,  # replace connections the server closed
    }
    if poolclass is not None:
        options["poolclass"] = poolclass
    connect_args: dict[str, Any] = {}
    if settings.pgbouncer and backend == "postgresql":  # PgBouncer is the pool; SQLAlchemy
        options |= {"poolclass": NullPool, "pool_pre_ping": False}  # never pings a new connection
    if database_url.drivername == "postgresql+asyncpg":
        # Startup parameters: PgBouncer passes application_name on, refuses statement_timeout.
        connect_args["server_settings"] = {"application_name": settings.application_name}
        # Client-side backstop when the server can't answer at all (network stall).
        connect_args["command_timeout"] = settings.statement_timeout_ms / 1000 + 5
        connect_args["timeout"] = settings.connect_timeout  # a new connection's handshake
        if settings.pgbouncer:
            # No statement cache: unnamed statements leave nothing on the shared server connection.
            connect_args["statement_cache_size"] = 0
            database_url = database_url.update_query_dict({"prepared_statement_cache_size": "0"})
        else:
            timeout = str(settings.statement_timeout_ms)
            connect_args["server_settings"]["statement_timeout"] = timeout
            options["pool_pre_ping"] = False  # ping_at_checkout: 1 round trip, not 3
    elif backend == "postgresql":  # psycopg 3 (postgresql+psycopg://)
        connect_args["application_name"] = settings.application_name
        connect_args["connect_timeout"] = max(1, round(settings.connect_timeout))  # libpq: whole s
        if settings.pgbouncer:
            # psycopg prepares after 5 runs; the pooler's next connection may lack it
            # ("prepared statement does not exist").
            connect_args["prepare_threshold"] = None
        else:  # a startup option; PgBouncer refuses it ("unsupported startup parameter")
            connect_args["options"] = f"-c statement_timeout={settings.statement_timeout_ms:d}"
    elif backend in MYSQL_DIALECTS:
        connect_args |= mysql_connect_args(settings.statement_timeout_ms)
        # aiomysql's connect_timeout bounds the TCP connect, not the handshake.
        # async_creator_fn: SQLAlchemy's internal hook (test_production pins it).
        connect_args["async_creator_fn"] = bounded_aiomysql_connect(settings.connect_timeout)
        options["pool_recycle"] = settings.pool_recycle
    in_memory = database_url.database in (None, "", ":memory:") or (
        database_url.query.get("mode") == "memory"  # file:name?mode=memory&uri=true
    )
    if "poolclass" not in options and backend == "sqlite" and in_memory:
        options["poolclass"] = StaticPool  # one connection holds the database: no pool options
    elif "poolclass" not in options:
        options |= {
            "pool_size": settings.pool_size,
            "max_overflow": settings.max_overflow,
            "pool_timeout": settings.pool_timeout,
            # LIFO: the rarely used extras idle out and close.
            "pool_use_lifo": True,
        }
    engine = create_async_engine(database_url, connect_args=connect_args, **options)
    if backend == "sqlite":
        configure_sqlite(engine)
    elif backend == "postgresql" and settings.pgbouncer:
        set_statement_timeout_per_transaction(engine, settings.statement_timeout_ms)
    elif database_url.drivername == "postgresql+asyncpg" and "poolclass" not in options:
        ping_at_checkout(engine)
    return engine


def ping_at_checkout(engine: AsyncEngine) -> None:
    """asyncpg's pool_pre_ping is BEGIN, `;`, ROLLBACK (made for PgBouncer): `;` alone will do."""

    @event.listens_for(engine.sync_engine, "checkout")
    def ping(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        try:
            dbapi_connection.run_async(lambda connection: connection.fetchrow(";"))
        except Exception as error:
            if not dbapi_connection.driver_connection.is_closed():
                raise  # alive: a real error (the engine used from another event loop, ...)
            raise DisconnectionError() from error  # the pool connects anew (3 tries)


# --8<-- [end:engine]


# --8<-- [start:pgbouncer_timeout]
def set_statement_timeout_per_transaction(engine: AsyncEngine, timeout_ms: int) -> None:
    """statement_timeout behind a transaction-mode pooler: SET LOCAL at the start of each one.

    PgBouncer refuses it as a startup parameter, and a plain SET would stay on a server
    connection that other clients get next. SET LOCAL ends with the transaction.
    """

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(conn: Any) -> None:
        conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(timeout_ms)}")


# --8<-- [end:pgbouncer_timeout]


# --8<-- [start:sqlite]
def configure_sqlite(
    engine: AsyncEngine, *, foreign_keys: bool = True, busy_timeout_ms: int = 5000
) -> None:
    # Async engines take event listeners on .sync_engine, never on the AsyncEngine itself.
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN (below) instead of the driver's legacy
        # transaction control, which breaks SAVEPOINT and rollback of DDL.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # First, so the pragmas below wait for a lock too, instead of failing at once. A writer
        # waits this long for another one, then fails: "database is locked".
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms:d}")
        # Off by default: ondelete would be ignored. (Migrations turn it off on purpose.)
        cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cursor.execute("PRAGMA journal_mode=WAL")  # readers don't block the writer
        cursor.execute("PRAGMA case_sensitive_like=ON")  # LIKE is case-sensitive, as elsewhere
        cursor.close()
        # SQLite's lower() folds ASCII only; icontains on "É" calls this one. A new name, not
        # "lower": an index on lower(name) must mean the same in every program opening the file.
        dbapi_connection.create_function("unicode_lower", 1, unicode_lower, deterministic=True)

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock up front: a read-then-write unit can't fail with
        # "database is locked" (busy_timeout doesn't cover that upgrade). READ_ONLY units begin
        # DEFERRED (reads in parallel) and refuse writes: "attempt to write a readonly database".
        # query_only stays on the pooled connection: switched only when the unit's kind changes.
        options = conn.get_execution_options()
        query_only = options.get("sqlite_query_only", False)
        info = conn.connection.info
        if info.get("query_only", False) != query_only:
            conn.exec_driver_sql(
                "PRAGMA query_only = ON" if query_only else "PRAGMA query_only = OFF"
            )
            info["query_only"] = query_only
        deferred = options.get("sqlite_begin") == "DEFERRED"
        conn.exec_driver_sql("BEGIN DEFERRED" if deferred else "BEGIN IMMEDIATE")


# For units that only read: session_factory(execution_options=READ_ONLY). On SQLite a write in
# one fails at once. Other backends ignore it (a GET that writes works there, fails on SQLite).
READ_ONLY: dict[str, Any] = {"sqlite_begin": "DEFERRED", "sqlite_query_only": True}


def unicode_lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


# --8<-- [end:sqlite]


# --8<-- [start:session_factory]
def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: with the default, reading an attribute after commit
    # lazy-loads and raises MissingGreenlet.
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


# --8<-- [end:session_factory]


# --8<-- [start:slow_queries]
logger = logging.getLogger(__name__)
slow_query_log = logging.getLogger("examples.app.slow_queries")


def log_slow_queries(engine: AsyncEngine, threshold_ms: float) -> None:
    """Log statements slower than the threshold, also those that failed after it (killed by
    statement_timeout, a lock wait): the SQL, never the parameters (user data)."""

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def start(
        _conn: Any, _cursor: Any, _statement: Any, _params: Any, context: Any, _many: Any
    ) -> None:
        context._query_started = time.perf_counter()

    @event.listens_for(engine.sync_engine, "after_cursor_execute")
    def stop(
        _conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: Any
    ) -> None:
        elapsed_ms = (time.perf_counter() - context._query_started) * 1000
        if elapsed_ms >= threshold_ms:
            slow_query_log.warning("slow query (%.0f ms): %s", elapsed_ms, statement)

    @event.listens_for(engine.sync_engine, "handle_error")
    def failed(error: Any) -> None:  # after_cursor_execute never runs for these
        started = getattr(error.execution_context, "_query_started", None)
        if started is None:  # not a statement (connecting, pinging)
            return
        elapsed_ms = (time.perf_counter() - started) * 1000
        if elapsed_ms >= threshold_ms:
            driver_error = error.original_exception  # asyncpg's own class is its __cause__
            kind = type(driver_error.__cause__ or driver_error).__name__  # not its text: values
            slow_query_log.warning(
                "slow query failed (%.0f ms, %s): %s", elapsed_ms, kind, error.statement
            )


# --8<-- [end:slow_queries]


# --8<-- [start:connection_budget]
async def check_connection_budget(engine: AsyncEngine, settings: Settings) -> None:
    """Refuse to start when all full pools would exceed the server's connections; one worker
    more than configured, as a rolling restart runs each replacement beside the old one."""
    dialect = engine.dialect.name
    if dialect == "sqlite" or settings.pgbouncer:
        return
    needed = (settings.workers + 1) * (settings.pool_size + settings.max_overflow)
    async with engine.connect() as connection:
        if dialect == "postgresql":
            row = await connection.execute(
                text(
                    "SELECT current_setting('max_connections')::int"
                    " - current_setting('superuser_reserved_connections')::int"
                )
            )
        else:
            row = await connection.execute(text("SELECT @@max_connections"))
        available = int(row.scalar_one())
    if needed > available:
        raise RuntimeError(
            f"({settings.workers} workers + 1 restarting) x (pool_size {settings.pool_size}"
            f" + max_overflow {settings.max_overflow}) = {needed} connections, but the server"
            f" allows {available}"
        )


# --8<-- [end:connection_budget]


# --8<-- [start:opentelemetry]
# Every engine of every running app in this process (a read replica, a second create_app).
_traced_engines: list[Any] = []


def trace_with_opentelemetry(*engines: AsyncEngine) -> None:
    """A span per statement (pip install ".[otel]"); exporters are configured by the app.

    Pass every engine the app has; call stop_tracing with the same engines at shutdown.
    """
    _traced_engines.extend(engine.sync_engine for engine in engines)  # as for events
    _instrument(_traced_engines)


def stop_tracing(*engines: AsyncEngine) -> None:
    for engine in engines:
        _traced_engines.remove(engine.sync_engine)
    _instrument(_traced_engines)


def _instrument(engines: list[Any]) -> None:
    # By name, as aiomysql above: without the otel extra, only calling this fails.
    otel = importlib.import_module("opentelemetry.instrumentation.sqlalchemy")
    # The instrumentor is a process-wide singleton: a second instrument() only logs "Attempting
    # to instrument while already instrumented" and traces nothing. So start over with all of them.
    instrumentor = otel.SQLAlchemyInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    if engines:
        # skip_dep_check: the instrumentation (0.66) declares sqlalchemy < 2.1 and otherwise
        # logs an error and instruments nothing, silently.
        instrumentor.instrument(engines=list(engines), skip_dep_check=True)


# --8<-- [end:opentelemetry]
