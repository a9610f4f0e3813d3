"""Configuration read from the environment (and an optional .env file)."""

from typing import Any

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL


# --8<-- [start:settings]
class Settings(BaseSettings):
    # hide_input_in_errors: a validation error never prints the values (passwords).
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", hide_input_in_errors=True)

    # Required, no default: a missing DATABASE_URL is an error, not a silent local SQLite file.
    # postgresql+asyncpg://user:pw@host/db | mysql+aiomysql://user:pw@host/db?charset=utf8mb4
    # | sqlite+aiosqlite:///./app.db. SecretStr: the password stays out of reprs and logs.
    database_url: SecretStr
    read_replica_url: SecretStr | None = None
    echo_sql: bool = False

    pool_size: int = 5
    max_overflow: int = 10
    pool_timeout: float = 10.0  # seconds to wait for a free connection, then a 503
    pool_recycle: int = 1800  # below MySQL's wait_timeout and load balancers' idle timeouts
    # Processes sharing the server (their pools must fit it); WEB_CONCURRENCY: uvicorn's too.
    workers: int = Field(default=1, validation_alias=AliasChoices("workers", "web_concurrency"))
    pgbouncer: bool = False  # PostgreSQL behind a transaction-mode pooler (or serverless)

    application_name: str = "async-sqlmodel"  # how the app's sessions appear on the server
    statement_timeout_ms: int = 15_000  # the server cancels longer statements
    connect_timeout: float = 5.0  # a new connection's handshake gives up: 503 (startup: not ready)
    health_timeout: float = 2.0  # below pool_timeout: /health/ready answers 503 quickly
    slow_query_ms: float = 500.0  # log statements slower than this
    opentelemetry: bool = False  # spans for every statement (needs the otel extra)

    # Signs pagination cursors: at least 16 random bytes, the same on every worker and across
    # restarts. No default: the app refuses to start without it (see api/deps.py).
    cursor_secret: SecretStr | None = None

    @model_validator(mode="before")
    @classmethod
    def require_database_url(cls, values: Any) -> Any:
        if isinstance(values, dict) and not values.get("database_url"):
            raise ValueError(
                "DATABASE_URL is not set: export it (e.g. postgresql+asyncpg://user:pw@host/db)"
            )
        return values


# --8<-- [end:settings]


# --8<-- [start:url_create]
def postgres_url(user: str, password: str, host: str, database: str, port: int = 5432) -> URL:
    """Build the URL from parts: any password works, no percent-encoding by hand.

    A URL string needs "%40" for "@" in a password (and then Alembic's ConfigParser needs "%%").
    """
    return URL.create(
        "postgresql+asyncpg",
        username=user,
        password=password,
        host=host,
        port=port,
        database=database,
    )


# --8<-- [end:url_create]
