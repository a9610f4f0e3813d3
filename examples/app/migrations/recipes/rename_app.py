"""The app's three versions during the rename team.headquarters -> team.base (expand/contract).

Each deploy runs two versions side by side against one schema: the old instances until the
rollout ends, the new ones from its start. Core tables on their own MetaData stand in for each
version's model (a SQLModel app changes the model's fields the same way).
"""

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection


def team_table(*columns: str) -> sa.Table:
    return sa.Table(
        "team",
        sa.MetaData(),
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        *(sa.Column(column, sa.String(200)) for column in columns),
    )


# Version 1, before the change: headquarters only.
team_v1 = team_table("headquarters")


async def add_team_v1(connection: AsyncConnection, name: str, base: str) -> None:
    await connection.execute(sa.insert(team_v1).values(name=name, headquarters=base))


async def team_base_v1(connection: AsyncConnection, name: str) -> str | None:
    query = sa.select(team_v1.c.headquarters).where(team_v1.c.name == name)
    value: str | None = (await connection.execute(query)).scalar_one()
    return value


# --8<-- [start:version_2]
# Version 2, deployed with the expand revision: writes both columns, reads base first.
team_v2 = team_table("headquarters", "base")


async def add_team_v2(connection: AsyncConnection, name: str, base: str) -> None:
    # Both: version 1, still running during this rollout, reads headquarters.
    await connection.execute(sa.insert(team_v2).values(name=name, headquarters=base, base=base))


async def team_base_v2(connection: AsyncConnection, name: str) -> str | None:
    # Rows version 1 wrote have no base until the backfill: fall back to headquarters.
    query = sa.select(sa.func.coalesce(team_v2.c.base, team_v2.c.headquarters))
    value: str | None = (await connection.execute(query.where(team_v2.c.name == name))).scalar_one()
    return value


# --8<-- [end:version_2]


# Version 3, deployed with the backfill: base only (headquarters is nullable by then).
team_v3 = team_table("base")


async def add_team_v3(connection: AsyncConnection, name: str, base: str) -> None:
    await connection.execute(sa.insert(team_v3).values(name=name, base=base))


async def team_base_v3(connection: AsyncConnection, name: str) -> str | None:
    query = sa.select(team_v3.c.base).where(team_v3.c.name == name)
    value: str | None = (await connection.execute(query)).scalar_one()
    return value
