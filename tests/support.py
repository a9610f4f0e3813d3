"""Test helpers shared by conftest.py and the tests that exercise them directly."""

from typing import Any

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession


async def raw_rows(session: AsyncSession, sql: str, **params: Any) -> list[Any]:
    """Plain SQL on the session's own connection and transaction (typed, unlike exec(text))."""
    connection = await session.connection()
    result = await connection.execute(text(sql), params)
    return list(result.all())
