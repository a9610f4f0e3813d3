"""Read replicas. ReplicaReads: the per-endpoint choice the app makes (read-only endpoints read
the replica, the primary while it is down). RoutingSession: one session that routes each
statement, for code that can't choose a session per unit of work.
"""

import logging
import time
from typing import Any

from sqlalchemy import Select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

logger = logging.getLogger(__name__)


# --8<-- [start:replica_fallback]
class ReplicaReads:
    """Sessions for read-only endpoints: the replica's, or the primary's while it is down
    (skipped for `cooldown` seconds after a failed connect: no read waits on a dead host)."""

    def __init__(
        self, replica: async_sessionmaker[AsyncSession] | None, cooldown: float = 5.0
    ) -> None:
        self.replica = replica
        self.cooldown = cooldown
        self.skip_until = 0.0
        self.last_error: str | None = None

    async def session(
        self, primary: async_sessionmaker[AsyncSession], **options: Any
    ) -> AsyncSession:
        """A session with its connection already open (and its transaction begun)."""
        if self.replica is not None and time.monotonic() >= self.skip_until:
            session = self.replica(**options)
            try:
                await session.connection()  # connect now: a dead replica fails here, not later
            except (OSError, DBAPIError, TimeoutError) as error:
                await session.close()
                self.skip_until = time.monotonic() + self.cooldown
                self.last_error = type(error).__name__
                logger.warning(
                    "replica unavailable (%s): reading from the primary", self.last_error
                )
            else:
                return session
        return primary(**options)


# --8<-- [end:replica_fallback]


# --8<-- [start:read_replica]
class RoutingSession(Session):
    """Plain SELECTs go to the replica until the unit of work writes, flushes or locks rows
    (FOR UPDATE); from then on every statement of the session goes to the primary."""

    def get_bind(self, mapper: Any = None, clause: Any = None, **kw: Any) -> Any:
        engines: dict[str, Any] = self.info["engines"]
        plain_read = isinstance(clause, Select) and clause._for_update_arg is None
        if self._flushing or not plain_read:
            self.info["primary"] = True  # sticky: read your own writes, keep your locks
        return engines["primary" if self.info.get("primary") else "replica"]


def create_routing_session_factory(
    primary: AsyncEngine, replica: AsyncEngine
) -> async_sessionmaker[AsyncSession]:
    # A unit that reads in order to write (get, then update) must read the primary too: a
    # lagging replica gives it a stale row. Open it with factory(info={"primary": True}).
    return async_sessionmaker(
        class_=AsyncSession,
        sync_session_class=RoutingSession,
        expire_on_commit=False,
        info={"engines": {"primary": primary.sync_engine, "replica": replica.sync_engine}},
    )


# --8<-- [end:read_replica]
