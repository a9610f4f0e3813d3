"""The reference app plus a slow endpoint, for tests that run it under uvicorn in a subprocess."""

from typing import Any

from fastapi import FastAPI
from sqlalchemy import text

from examples.app.api.deps import SessionDep
from examples.app.main import create_app


def create_slow_app() -> FastAPI:
    """Settings from the environment (DATABASE_URL, APPLICATION_NAME, ...), as in production."""
    app = create_app()

    @app.get("/_sleep")
    async def sleep(session: SessionDep, seconds: float) -> dict[str, Any]:
        dialect = session.get_bind().dialect.name
        statement = "SELECT pg_sleep(:s)" if dialect == "postgresql" else "SELECT SLEEP(:s)"
        await session.exec(text(statement).bindparams(s=seconds))  # type: ignore[call-overload]
        return {"slept": seconds}

    @app.post("/_probe")
    async def insert_probe(session: SessionDep, marker: str) -> dict[str, Any]:
        # tests/test_production.py gives asm_probe a deferred trigger that makes COMMIT slow.
        await session.exec(text("INSERT INTO asm_probe (marker) VALUES (:m)").bindparams(m=marker))  # type: ignore[call-overload]
        return {"inserted": marker}

    return app
