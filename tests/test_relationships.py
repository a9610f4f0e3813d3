"""references/relationships.md: loaders, query counts, link rows, depth, cascades, errors."""

import gc
import uuid

import pytest
from sqlalchemy.exc import DBAPIError, InvalidRequestError, MissingGreenlet, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import joinedload, selectinload
from sqlalchemy.orm.exc import DetachedInstanceError
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.models import Hero, HeroPower, Power, Team
from examples.pitfalls import (
    Guild,
    Member,
    implicit_lazy_load,
    pitfall_registry,
    raise_load,
    read_after_close,
    read_after_commit,
)
from examples.relationships import (
    change_power_level,
    first_teams_with_heroes,
    grant_power,
    hero_with_apprentices,
    hero_with_powers,
    heroes_in_team,
    heroes_with_team,
    load_heroes_later,
    revoke_power,
    teams_with_heroes,
)
from examples.servicebase.errors import DatabaseError, classify
from examples.servicebase.service import rel
from examples.testing import counting_statements, rolled_back_session


async def add_teams(session: AsyncSession, teams: int, heroes_per_team: int) -> list[Team]:
    created = []
    for t in range(teams):
        team = Team(name=f"team {t:03}", headquarters="HQ")
        session.add(team)
        for h in range(heroes_per_team):
            session.add(Hero(name=f"hero {t:03}-{h}", secret_name=f"secret {t}-{h}", team=team))
        created.append(team)
    await session.flush()
    session.expunge_all()  # later loads must come from the database
    return created


@pytest.mark.parametrize(
    ("teams", "chunksize", "count"), [(500, None, 2), (501, None, 3), (501, 501, 2)]
)
async def test_selectinload_is_one_query_per_500_parents(
    engine: AsyncEngine, session: AsyncSession, teams: int, chunksize: int | None, count: int
) -> None:
    await add_teams(session, teams, heroes_per_team=1)
    option = selectinload(rel(Team.heroes), chunksize=chunksize)  # None: SQLAlchemy's 500
    with counting_statements(engine) as log:
        loaded = (await session.exec(select(Team).options(option))).all()
        assert sum(len(team.heroes) for team in loaded) == teams
    assert log.count == count, [statement[:60] for statement in log.statements]


@pytest.mark.parametrize("teams", [1, 50])
async def test_selectinload_statement_count_is_constant(
    engine: AsyncEngine, session: AsyncSession, teams: int
) -> None:
    await add_teams(session, teams, heroes_per_team=3)
    with counting_statements(engine) as log:
        loaded = await teams_with_heroes(session)
        assert sum(len(team.heroes) for team in loaded) == teams * 3
    assert log.count == 2, log.statements  # teams, then all their heroes in one IN query


@pytest.mark.parametrize("teams", [1, 50])
async def test_joinedload_many_to_one_is_one_statement(
    engine: AsyncEngine, session: AsyncSession, teams: int
) -> None:
    await add_teams(session, teams, heroes_per_team=2)
    with counting_statements(engine) as log:
        heroes = await heroes_with_team(session, limit=1000)
        assert {hero.team.name for hero in heroes if hero.team} == {
            f"team {t:03}" for t in range(teams)
        }
    assert log.count == 1


async def test_joinedload_collection_with_limit_returns_complete_parents(
    engine: AsyncEngine, session: AsyncSession
) -> None:
    await add_teams(session, 5, heroes_per_team=4)
    with counting_statements(engine) as log:
        teams = await first_teams_with_heroes(session, limit=2)
    assert [(team.name, len(team.heroes)) for team in teams] == [("team 000", 4), ("team 001", 4)]
    assert log.count == 1


async def test_joinedload_collection_without_unique_raises(session: AsyncSession) -> None:
    await add_teams(session, 1, heroes_per_team=2)
    result = await session.exec(select(Team).options(joinedload(rel(Team.heroes))))
    with pytest.raises(InvalidRequestError, match=r"The unique\(\) method must be invoked"):
        result.all()


async def test_chained_loaders_and_link_rows(engine: AsyncEngine, session: AsyncSession) -> None:
    hero = Hero(name="Rusty-Man", secret_name="Tommy Sharp")
    flight, strength = Power(name="Flight"), Power(name="Strength")
    session.add_all([hero, flight, strength])
    await session.flush()
    assert flight.id is not None
    assert strength.id is not None
    await grant_power(session, hero.id, flight.id, level=3)
    await grant_power(session, hero.id, strength.id, level=9)
    await change_power_level(session, hero.id, flight.id, level=4)
    session.expunge_all()

    with counting_statements(engine) as log:
        loaded = await hero_with_powers(session, hero.id)
        powers = sorted((link.power.name, link.level) for link in loaded.power_links)
    assert powers == [("Flight", 4), ("Strength", 9)]
    assert log.count == 2  # hero; links joined to their powers

    await revoke_power(session, hero.id, flight.id)
    session.expunge_all()
    loaded = await hero_with_powers(session, hero.id)
    assert [link.power.name for link in loaded.power_links] == ["Strength"]


async def test_link_extra_column_check_constraint(session: AsyncSession) -> None:
    hero, power = Hero(name="Rusty-Man", secret_name="Tommy Sharp"), Power(name="Flight")
    session.add_all([hero, power])
    await session.flush()
    assert power.id is not None
    # MariaDB raises OperationalError for a CHECK failure, the others IntegrityError: catch
    # DBAPIError and classify by code.
    with pytest.raises(DBAPIError) as caught:
        await grant_power(session, hero.id, power.id, level=11)
    assert classify(caught.value) is DatabaseError.CHECK_VIOLATION


async def test_contains_eager_filters_on_the_joined_table(
    engine: AsyncEngine, session: AsyncSession
) -> None:
    await add_teams(session, 3, heroes_per_team=2)
    with counting_statements(engine) as log:
        heroes = await heroes_in_team(session, "team 001")
        assert [(hero.name, hero.team.name if hero.team else None) for hero in heroes] == [
            ("hero 001-0", "team 001"),
            ("hero 001-1", "team 001"),
        ]
    assert log.count == 1


async def make_lineage(session: AsyncSession, generations: int) -> list[Hero]:
    lineage: list[Hero] = []
    for g in range(generations):
        hero = Hero(name=f"gen {g}", secret_name=f"gen secret {g}")
        hero.mentor_id = lineage[-1].id if lineage else None
        session.add(hero)
        await session.flush()
        lineage.append(hero)
    session.expunge_all()
    return lineage


async def test_self_referential_loading_stops_at_the_requested_depth(
    engine: AsyncEngine, session: AsyncSession
) -> None:
    lineage = await make_lineage(session, 4)
    with counting_statements(engine) as log:
        root = await hero_with_apprentices(session, lineage[0].id, depth=2)
    assert log.count == 3  # the root, then one IN query per level
    child = root.apprentices[0]
    grandchild = child.apprentices[0]
    assert (child.name, grandchild.name) == ("gen 1", "gen 2")
    with pytest.raises(InvalidRequestError, match="lazy='raise'"):
        _ = grandchild.apprentices


async def test_refresh_loads_a_relationship_on_demand(session: AsyncSession) -> None:
    await add_teams(session, 1, heroes_per_team=2)
    team = (await session.exec(select(Team))).one()
    heroes = await load_heroes_later(session, team)
    assert sorted(hero.name for hero in heroes) == ["hero 000-0", "hero 000-1"]


async def count(session: AsyncSession, model: type[Hero] | type[HeroPower]) -> int:
    return (await session.exec(select(func.count()).select_from(model))).one()


async def test_deletes_cascade_the_same_way_on_every_backend(session: AsyncSession) -> None:
    team = Team(name="Preventers", headquarters="Sharp Tower")
    mentor = Hero(name="Rusty-Man", secret_name="Tommy Sharp", team=team)
    apprentice = Hero(name="Deadpond", secret_name="Dive Wilson", team=team, mentor=mentor)
    power = Power(name="Flight")
    session.add_all([team, mentor, apprentice, power])
    await session.flush()
    assert power.id is not None
    await grant_power(session, mentor.id, power.id, level=5)
    await grant_power(session, apprentice.id, power.id, level=2)
    mentor_id, apprentice_id = mentor.id, apprentice.id
    session.expunge_all()

    # Team -> heroes: ON DELETE SET NULL; nothing loaded first (passive_deletes, lazy="raise").
    await session.delete(await session.get_one(Team, team.id))
    await session.flush()
    team_ids = await session.exec(select(Hero.team_id))
    assert team_ids.all() == [None, None]

    # Hero -> links: ON DELETE CASCADE; apprentices' mentor_id: ON DELETE SET NULL.
    await session.delete(await session.get_one(Hero, mentor_id))
    await session.flush()
    remaining = await session.exec(select(HeroPower.hero_id))
    assert remaining.all() == [apprentice_id]
    mentor_of_apprentice = await session.exec(
        select(Hero.mentor_id).where(col(Hero.id) == apprentice_id)
    )
    assert mentor_of_apprentice.one() is None

    # Power -> links: ON DELETE CASCADE.
    await session.delete(await session.get_one(Power, power.id))
    await session.flush()
    assert await count(session, HeroPower) == 0
    assert await count(session, Hero) == 1


async def test_deleting_a_hero_with_loaded_links_deletes_them_in_the_orm(
    session: AsyncSession,
) -> None:
    hero, power = Hero(name="Rusty-Man", secret_name="Tommy Sharp"), Power(name="Flight")
    session.add_all([hero, power])
    await session.flush()
    assert power.id is not None
    await grant_power(session, hero.id, power.id, level=5)
    session.expunge_all()
    loaded = await hero_with_powers(session, hero.id)
    await session.delete(loaded)
    await session.flush()
    assert await count(session, HeroPower) == 0


# ---------------------------------------------------------------- the errors, reproduced


async def test_delete_without_passive_deletes_loads_and_updates_children(
    engine: AsyncEngine,
) -> None:
    tables = [pitfall_registry.metadata.tables["guild"], pitfall_registry.metadata.tables["member"]]
    metadata = pitfall_registry.metadata
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all, tables=tables)
    try:
        async with rolled_back_session(engine) as session:
            guild = Guild()
            session.add(guild)
            await session.flush()
            session.add_all([Member(guild_id=guild.id) for _ in range(3)])
            await session.flush()
            session.expunge_all()
            doomed = await session.get_one(Guild, guild.id)
            with counting_statements(engine) as log:
                await session.delete(doomed)
                await session.flush()
            verbs = [statement.split()[0] for statement in log.statements]
            assert verbs == ["SELECT", "UPDATE", "DELETE"], log.statements

            team = Team(name="Preventers", headquarters="Sharp Tower")
            session.add_all([Hero(name=f"h{i}", secret_name=f"s{i}", team=team) for i in range(3)])
            await session.flush()
            session.expunge_all()
            doomed_team = await session.get_one(Team, team.id)
            with counting_statements(engine) as log:  # passive_deletes=True: the database does it
                await session.delete(doomed_team)
                await session.flush()
            assert [statement.split()[0] for statement in log.statements] == ["DELETE"]
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.drop_all, tables=tables)


async def saved_hero(session: AsyncSession) -> uuid.UUID:
    hero = Hero(name="Deadpond", secret_name="Dive Wilson", team=Team(name="X", headquarters="Y"))
    session.add(hero)
    await session.flush()
    session.expunge_all()
    return hero.id


# A failed implicit load leaves an un-awaited driver coroutine behind; collect it here so its
# warning is attributed to this test.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_implicit_lazy_load_raises_missing_greenlet(session: AsyncSession) -> None:
    hero_id = await saved_hero(session)
    # Wrapped in StatementError by aiosqlite and aiomysql; bare from asyncpg.
    with pytest.raises((MissingGreenlet, StatementError), match="greenlet_spawn has not been"):
        await implicit_lazy_load(session, hero_id)
    gc.collect()


async def test_lazy_raise_names_the_attribute(session: AsyncSession) -> None:
    hero_id = await saved_hero(session)
    with pytest.raises(
        InvalidRequestError, match=r"'Hero\.team' is not available due to lazy='raise'"
    ):
        await raise_load(session, hero_id)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_reading_after_commit_with_expiry_raises_missing_greenlet(
    engine: AsyncEngine,
) -> None:
    try:
        with pytest.raises(MissingGreenlet, match="greenlet_spawn has not been called"):
            await read_after_commit(engine)
        gc.collect()
    finally:
        await delete_avengers(engine)


async def test_reading_after_close_raises_detached_instance_error(engine: AsyncEngine) -> None:
    try:
        with pytest.raises(DetachedInstanceError, match="is not bound to a Session"):
            await read_after_close(engine)
    finally:
        await delete_avengers(engine)


async def delete_avengers(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(Team.__table__.delete().where(Team.__table__.c.name == "Avengers"))  # type: ignore[attr-defined]
