"""references/models.md: types, constraints, timestamps, JSON, enums, data models, versions."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError
from sqlalchemy import inspect, text, update
from sqlalchemy.exc import ArgumentError, DataError, IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.models import Hero, HeroStatus, Team
from examples.app.schemas import HeroCreate, HeroPublic, HeroUpdate
from examples.data_models import create_hero, update_hero
from examples.pitfalls import VillainCreate, define_two_tables_with_one_column, pitfall_registry
from examples.servicebase.errors import DatabaseError, classify
from tests.conftest import Backend
from tests.support import raw_rows


def new_hero(name: str = "Deadpond", **fields: object) -> HeroCreate:
    return HeroCreate.model_validate({"name": name, "secret_name": f"{name} secret", **fields})


async def test_uuid_keys_are_generated_per_row_and_round_trip(session: AsyncSession) -> None:
    first = await create_hero(session, new_hero("Deadpond"))
    second = await create_hero(session, new_hero("Rusty-Man"))
    assert isinstance(first.id, uuid.UUID)
    assert first.id != second.id
    session.expunge_all()
    loaded = await session.get_one(Hero, first.id)
    assert (loaded.id, loaded.name) == (first.id, "Deadpond")


async def test_timestamps_are_aware_utc_from_the_database_clock(session: AsyncSession) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    hero = await create_hero(session, new_hero())
    assert hero.created_at is not None
    assert hero.updated_at is not None
    assert hero.created_at.tzinfo is not None
    assert hero.created_at.utcoffset() == timedelta(0)
    assert before <= hero.created_at <= datetime.now(UTC) + timedelta(seconds=5)

    session.expunge_all()  # read back from the database, not from the identity map
    loaded = await session.get_one(Hero, hero.id)
    assert loaded.created_at == hero.created_at
    assert loaded.updated_at is not None
    assert loaded.updated_at.utcoffset() == timedelta(0)


async def test_updated_at_moves_on_every_update(session: AsyncSession) -> None:
    hero = await create_hero(session, new_hero())
    created, first_update = hero.created_at, hero.updated_at
    await asyncio.sleep(0.01)
    await update_hero(session, hero, HeroUpdate(age=30))
    assert hero.updated_at is not None
    assert first_update is not None
    assert hero.updated_at > first_update  # read back at flush (eager_defaults): no lazy load
    assert hero.created_at == created


async def test_aware_datetimes_are_stored_as_the_same_instant(session: AsyncSession) -> None:
    hero = await create_hero(session, new_hero())
    plus_two = timezone(timedelta(hours=2))
    hero.deleted_at = datetime(2030, 1, 1, 12, 0, 0, 123456, tzinfo=plus_two)
    await session.flush()
    session.expunge_all()
    loaded = await session.get_one(Hero, hero.id)
    assert loaded.deleted_at == datetime(2030, 1, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert loaded.deleted_at.tzinfo == UTC


async def test_naive_datetimes_are_refused(session: AsyncSession) -> None:
    hero = await create_hero(session, new_hero())
    hero.deleted_at = datetime(2030, 1, 1)
    with pytest.raises(StatementError, match="naive datetime"):
        await session.flush()


async def reload(session: AsyncSession, hero: Hero) -> Hero:
    await session.flush()
    session.expunge_all()
    return await session.get_one(Hero, hero.id)


async def test_json_in_place_mutation_of_a_loaded_object_is_saved(session: AsyncSession) -> None:
    created = await create_hero(session, new_hero(attributes={"cape": "red", "gear": {"boots": 1}}))
    hero = await reload(session, created)
    hero.attributes["cape"] = "blue"  # tracked: loaded values are MutableDicts
    hero = await reload(session, hero)
    assert hero.attributes == {"cape": "blue", "gear": {"boots": 1}}
    gear = hero.attributes["gear"]
    assert isinstance(gear, dict)
    gear["boots"] = 2  # nested: NOT tracked (MutableDict is shallow)
    assert (await reload(session, hero)).attributes == {"cape": "blue", "gear": {"boots": 1}}


async def test_json_in_place_mutation_of_an_assigned_dict_is_lost(session: AsyncSession) -> None:
    # SQLModel's __setattr__ stores the plain dict after SQLAlchemy wrapped it (sqlmodel#468),
    # so in-place changes to a dict assigned in this session go unnoticed.
    hero = await create_hero(session, new_hero(attributes={"cape": "red"}))  # flushed
    hero.attributes["cape"] = "blue"
    assert (await reload(session, hero)).attributes == {"cape": "red"}

    hero = await reload(session, hero)
    hero.attributes = {**hero.attributes, "cape": "green"}  # assigning a new dict always works
    await session.flush()
    hero.attributes["mask"] = "black"  # lost: the assigned dict is a plain dict
    assert (await reload(session, hero)).attributes == {"cape": "green"}


async def test_enum_is_stored_by_value_with_a_named_type(
    backend: Backend, session: AsyncSession
) -> None:
    hero = await create_hero(session, new_hero(status=HeroStatus.RETIRED))
    raw = await raw_rows(session, "SELECT status FROM hero WHERE name = :name", name=hero.name)
    assert raw == [("retired",)]
    if backend.name == "postgresql":
        type_name = await raw_rows(
            session, "SELECT typname FROM pg_type WHERE typname = 'hero_status'"
        )
        assert type_name == [("hero_status",)]


async def test_unknown_enum_strings_are_refused_before_the_database(
    session: AsyncSession,
) -> None:
    hero = await create_hero(session, new_hero())
    hero.status = "flying"  # type: ignore[assignment]  # table models don't validate
    with pytest.raises(StatementError, match="flying"):
        await session.flush()


async def test_unique_violation_is_classified_by_code(session: AsyncSession) -> None:
    session.add(Team(name="Preventers", headquarters="Sharp Tower"))
    await session.flush()
    session.add(Team(name="Preventers", headquarters="Elsewhere"))
    with pytest.raises(IntegrityError) as caught:
        await session.flush()
    assert classify(caught.value) is DatabaseError.UNIQUE_VIOLATION


async def test_not_null_and_foreign_key_violations_are_classified(
    session: AsyncSession,
) -> None:
    errors = []
    for statement in (
        "INSERT INTO team (name, headquarters) VALUES (NULL, 'x')",
        "INSERT INTO hero (id, name, secret_name, status, attributes, team_id, version)"
        " VALUES ('00000000000000000000000000000001', 'x', 'y', 'active', '{}', 999, 1)",
    ):
        savepoint = await session.begin_nested()
        with pytest.raises(IntegrityError) as caught:
            await raw_rows(session, statement)
        await savepoint.rollback()
        errors.append(classify(caught.value))
    assert errors == [DatabaseError.NOT_NULL_VIOLATION, DatabaseError.FOREIGN_KEY_VIOLATION]


def test_sqlmodel_regex_is_silently_ignored() -> None:
    assert VillainCreate(name="nul\x00").name == "nul\x00"  # regex=... checked nothing
    with pytest.raises(ValidationError, match="should match pattern"):
        HeroCreate(name="nul\x00", secret_name="s")  # NulFreeStr (pattern=) does


def test_table_models_skip_validation_data_models_dont() -> None:
    too_long = "x" * 500
    hero = Hero(name=too_long, secret_name="s", age=-1)  # accepted as is
    assert (len(hero.name), hero.age) == (500, -1)
    with pytest.raises(ValidationError) as caught:
        HeroCreate(name=too_long, secret_name="s", age=-1)
    assert {error["loc"][0] for error in caught.value.errors()} == {"name", "age"}


async def test_partial_update_touches_only_the_fields_sent(session: AsyncSession) -> None:
    hero = await create_hero(session, new_hero(age=40, attributes={"cape": "red"}))
    await update_hero(session, hero, HeroUpdate.model_validate({}))
    assert (hero.age, hero.attributes) == (40, {"cape": "red"})
    await update_hero(session, hero, HeroUpdate.model_validate({"age": None}))
    assert (hero.age, hero.attributes) == (None, {"cape": "red"})


async def test_public_model_leaves_out_secret_columns(session: AsyncSession) -> None:
    hero = await create_hero(session, new_hero())
    public = HeroPublic.model_validate(hero).model_dump()
    assert "secret_name" not in public
    assert public["id"] == hero.id
    assert public["version"] == 1


async def test_version_column_detects_a_stale_update(session: AsyncSession) -> None:
    hero = await create_hero(session, new_hero())
    await update_hero(session, hero, HeroUpdate(age=1))
    assert hero.version == 2
    # Another transaction updates the row behind this session's back.
    bump = update(Hero).where(col(Hero.id) == hero.id).values(version=3)
    await session.exec(bump.execution_options(synchronize_session=False))
    hero.age = 2
    with pytest.raises(StaleDataError, match="expected to update 1 row"):
        await session.flush()


async def test_strings_without_a_length_differ_per_backend(
    backend: Backend, engine: AsyncEngine
) -> None:
    # SQLModel's str is VARCHAR(255) on MySQL and unbounded VARCHAR elsewhere.
    metadata = pitfall_registry.metadata
    villain_table = metadata.tables["villain"]
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all, tables=[villain_table])
    try:
        async with engine.begin() as conn:
            insert = text("INSERT INTO villain (name) VALUES (:name)")
            if backend.name == "mysql":
                with pytest.raises(DataError) as caught:
                    await conn.execute(insert, {"name": "x" * 300})
                assert caught.value.orig.args[0] == 1406  # type: ignore[union-attr]  # Data too long
            else:
                await conn.execute(insert, {"name": "x" * 300})
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.drop_all, tables=[villain_table])


async def test_uuid_column_type_per_backend(backend: Backend, engine: AsyncEngine) -> None:
    """Uuid is native on PostgreSQL and on MariaDB >= 10.7 (SQLAlchemy asks the server);
    CHAR(32) on SQLite (and on MySQL, per SQLAlchemy's dialect: not tested here)."""
    async with engine.connect() as conn:
        columns = await conn.run_sync(lambda sync: inspect(sync).get_columns("hero"))
    stored = next(str(c["type"]) for c in columns if c["name"] == "id")
    assert stored == {"sqlite": "CHAR(32)", "postgresql": "UUID", "mysql": "UUID"}[backend.name]


def test_one_sa_column_cannot_serve_two_tables() -> None:
    with pytest.raises(ArgumentError, match="already assigned to Table"):
        define_two_tables_with_one_column()
