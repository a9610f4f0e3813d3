"""Configuration read from the environment (and an optional .env file)."""

from pydantic_settings import BaseSettings, SettingsConfigDict


# --8<-- [start:settings]
class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # sqlite+aiosqlite:///./app.db | postgresql+asyncpg://user:pw@host/db
    # | mysql+aiomysql://user:pw@host/db?charset=utf8mb4
    database_url: str = "sqlite+aiosqlite:///./app.db"
    echo_sql: bool = False


# --8<-- [end:settings]
