"""Configuration read from the environment (and an optional .env file)."""

import secrets

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


# --8<-- [start:settings]
class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # sqlite+aiosqlite:///./app.db | postgresql+asyncpg://user:pw@host/db
    # | mysql+aiomysql://user:pw@host/db?charset=utf8mb4
    database_url: str = "sqlite+aiosqlite:///./app.db"
    echo_sql: bool = False
    pool_size: int = 5
    max_overflow: int = 10
    pool_timeout: float = 10.0  # seconds to wait for a free connection before a 503
    # Signs pagination cursors. Set it in production (and the same on every worker): the
    # random default makes cursors from another process or an earlier start invalid.
    cursor_secret: SecretStr = Field(default_factory=lambda: SecretStr(secrets.token_hex(32)))


# --8<-- [end:settings]
