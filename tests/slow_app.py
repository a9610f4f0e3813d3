"""The reference app plus a slow endpoint, for tests that run it under uvicorn in a subprocess."""

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import BackgroundTasks, FastAPI, Request, Response
from sqlalchemy import text

from examples.app.api.deps import SessionDep, SessionFactoryDep
from examples.app.main import create_app
from examples.servicebase.transactions import unit_of_work


def create_slow_app() -> FastAPI:
    """Settings from the environment (DATABASE_URL, APPLICATION_NAME, ...), as in production."""
    app = create_app()

    @app.get("/_sleep")
    async def sleep(session: SessionDep, seconds: float) -> dict[str, Any]:
        dialect = session.get_bind().dialect.name
        statement = "SELECT pg_sleep(:s)" if dialect == "postgresql" else "SELECT SLEEP(:s)"
        await session.exec(text(statement).bindparams(s=seconds))  # type: ignore[call-overload]
        return {"slept": seconds}

    @app.post("/_sleep")
    async def sleep_ignoring_the_body(session: SessionDep, seconds: float) -> dict[str, Any]:
        return await sleep(session, seconds)  # an action endpoint: never reads the body

    @app.post("/_probe")
    async def insert_probe(
        session: SessionDep,
        session_factory: SessionFactoryDep,
        background: BackgroundTasks,
        marker: str,
    ) -> dict[str, Any]:
        # tests/test_production.py gives asm_probe a deferred trigger that makes COMMIT slow.
        insert = text("INSERT INTO asm_probe (marker) VALUES (:m)")
        await session.exec(insert.bindparams(m=marker))  # type: ignore[call-overload]

        async def after_the_response() -> None:  # work that follows the commit
            async with unit_of_work(session_factory) as own:
                await own.exec(insert.bindparams(m=f"{marker} (background)"))  # type: ignore[call-overload]

        background.add_task(after_the_response)
        return {"inserted": marker}

    return app


def create_slow_app_in_http_middleware() -> FastAPI:
    """The same app with an @app.middleware("http") outside CancelOnDisconnect: it runs the app
    in a child task."""
    app = create_slow_app()

    @app.middleware("http")
    async def timing(request: Request, call_next: Callable[..., Awaitable[Response]]) -> Response:
        response = await call_next(request)
        response.headers["X-Timed"] = "1"
        return response

    return app
