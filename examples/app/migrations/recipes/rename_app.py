"""The app's four versions during the rename team.headquarters -> team.base (expand/contract).

Each deploy runs two versions side by side against one schema: the old instances until the
rollout ends, the new ones from its start. Each of the pair must see the other's inserts and
updates. Core tables on their own MetaData stand in for each version's model (a SQLModel app
changes the model's fields the same way).
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


async def read(connection: AsyncConnection, column: sa.Column[str], name: str) -> str | None:
    query = sa.select(column).where(column.table.c.name == name)
    value: str | None = (await connection.execute(query)).scalar_one()
    return value


# Version 1, before the change: headquarters only.
team_v1 = team_table("headquarters")


async def add_team_v1(connection: AsyncConnection, name: str, base: str) -> None:
    await connection.execute(sa.insert(team_v1).values(name=name, headquarters=base))


async def set_base_v1(connection: AsyncConnection, name: str, base: str) -> None:
    update = sa.update(team_v1).where(team_v1.c.name == name)
    await connection.execute(update.values(headquarters=base))


async def team_base_v1(connection: AsyncConnection, name: str) -> str | None:
    return await read(connection, team_v1.c.headquarters, name)


# --8<-- [start:versions_2_3]
# Versions 2 and 3 write both columns (add_team_v2 too); each reads what the other version writes.
team_v2 = team_v3 = team_table("headquarters", "base")


async def set_base_v2(connection: AsyncConnection, name: str, base: str) -> None:
    update = sa.update(team_v2).where(team_v2.c.name == name)
    await connection.execute(update.values(headquarters=base, base=base))


async def team_base_v2(connection: AsyncConnection, name: str) -> str | None:
    return await read(connection, team_v2.c.headquarters, name)  # version 1 writes only this


async def team_base_v3(connection: AsyncConnection, name: str) -> str | None:
    return await read(connection, team_v3.c.base, name)  # version 4 writes only this


# --8<-- [end:versions_2_3]


async def add_team_v2(connection: AsyncConnection, name: str, base: str) -> None:
    await connection.execute(sa.insert(team_v2).values(name=name, headquarters=base, base=base))


add_team_v3, set_base_v3 = add_team_v2, set_base_v2


# Version 4, deployed once no instance runs version 2: base only (headquarters is nullable).
team_v4 = team_table("base")


async def add_team_v4(connection: AsyncConnection, name: str, base: str) -> None:
    await connection.execute(sa.insert(team_v4).values(name=name, base=base))


async def set_base_v4(connection: AsyncConnection, name: str, base: str) -> None:
    await connection.execute(sa.update(team_v4).where(team_v4.c.name == name).values(base=base))


async def team_base_v4(connection: AsyncConnection, name: str) -> str | None:
    return await read(connection, team_v4.c.base, name)
