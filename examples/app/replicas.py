"""One session that routes each statement: plain reads to the replica, the rest to the primary.

For code that can't choose a session per unit of work (db.py's ReplicaReads is the per-endpoint
choice the app makes).
"""

from typing import Any

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession


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
