"""references/models.md: types, constraints, timestamps, JSON, enums, data models, versions."""

import asyncio
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy import insert, inspect, text, update
from sqlalchemy.exc import ArgumentError, DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.models import Hero, HeroStatus, Team
from examples.app.schemas import HeroCreate, HeroPublic, HeroUpdate
from examples.app.types import uuid7
from examples.data_models import VillainRegister, create_hero, update_hero
from examples.pitfalls import (
    Sighting,
    VillainCreate,
    define_two_tables_with_one_column,
    pitfall_registry,
)
from examples.servicebase.errors import DatabaseError, classify
from tests.conftest import Backend
from tests.support import raw_rows

PYPROJECT = Path(__file__).parents[1] / "pyproject.toml"  # mypy --strict with the pydantic plugin


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
    with pytest.raises(StatementError, match="Datetime values must have timezone information"):
        await session.flush()


async def test_datetime_types_per_backend(backend: Backend, engine: AsyncEngine) -> None:
    """SQLModel's own datetime type, ours, and NaiveDatetime: what each stores and returns."""
    table = pitfall_registry.metadata.tables["sighting"]
    async with engine.begin() as conn:
        await conn.run_sync(pitfall_registry.metadata.create_all, tables=[table])
    plus_two = timezone(timedelta(hours=2))
    at = datetime(2030, 1, 1, 12, 0, 0, 123456, tzinfo=plus_two)
    in_utc = datetime(2030, 1, 1, 10, 0, 0, 123456, tzinfo=UTC)
    local = datetime(2030, 1, 1, 12, 0, 0, 654321)
    try:
        async with AsyncSession(engine) as session:
            if backend.name == "postgresql":  # still UTC when the session's zone isn't
                await (await session.connection()).exec_driver_sql("SET TIME ZONE 'Asia/Kolkata'")
            session.add(Sighting(seen_at=at, logged_at=at, local_time=local))
            await session.flush()
            session.expunge_all()
            row = (await session.exec(select(Sighting))).one()
            whole_seconds = backend.name == "mysql"  # plain DATETIME
            assert row.seen_at == (in_utc.replace(microsecond=0) if whole_seconds else in_utc)
            assert row.logged_at == in_utc  # DATETIME(6) on MySQL
            assert row.seen_at.tzinfo is UTC
            assert row.logged_at is not None
            assert row.logged_at.tzinfo is UTC
            assert row.local_time == (local.replace(microsecond=0) if whole_seconds else local)
            assert row.local_time is not None
            assert row.local_time.tzinfo is None

            session.add(Sighting(seen_at=datetime(2030, 1, 1)))  # naive: refused before SQL
            with pytest.raises(StatementError) as caught:
                await session.flush()
            assert str(caught.value.orig) == (
                "Datetime values must have timezone information. Use datetime.now(timezone.utc),"
                " or annotate the field with NaiveDatetime for naive storage."
            )
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(pitfall_registry.metadata.drop_all, tables=[table])


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


# ---------------------------------------------------------------- what SQLModel's Field accepts


def test_sqlmodel_field_has_no_pattern_argument() -> None:
    with pytest.raises(TypeError, match=r"Field\(\) got an unexpected keyword argument 'pattern'"):
        Field(max_length=3, pattern=r"^[A-Z]{3}$")  # type: ignore[call-overload]


def test_extra_forbid_as_a_class_keyword_is_dropped() -> None:
    assert VillainCreate.model_validate({"name": "Loki", "lair": "Asgard"}).name == "Loki"
    assert "extra" not in VillainCreate.model_config


@pytest.mark.parametrize(
    "data",
    [
        {"code": "abc"},  # StringConstraints(pattern=...)
        {"code": "ABCD"},  # Field(max_length=3)
        {"code": "ABC", "lair": "nul\x00"},  # pydantic.Field(pattern=...) in Annotated
        {"code": "ABC", "henchmen": 3},  # model_config = {"extra": "forbid"}
    ],
)
def test_patterns_in_the_type_and_extra_in_model_config_are_enforced(
    data: dict[str, object],
) -> None:
    with pytest.raises(ValidationError):
        VillainRegister.model_validate(data)
    assert VillainRegister.model_validate({"code": "ABC", "lair": "Moon"}).code == "ABC"


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("primary_key", True),
        ("nullable", False),
        ("unique", True),
        ("index", True),
        ("foreign_key", "team.id"),
    ],
)
def test_sa_column_refuses_other_column_arguments(argument: str, value: object) -> None:
    message = f"Passing {argument} is not supported when also passing a sa_column"
    with pytest.raises(RuntimeError, match=message):
        Field(sa_column=sa.Column(sa.String(20)), **{argument: value})  # type: ignore[call-overload]


async def test_core_insert_applies_python_defaults_raw_sql_does_not(session: AsyncSession) -> None:
    connection = await session.connection()
    rows = [{"name": f"Core {n}", "secret_name": f"core {n}"} for n in range(2)]
    await connection.execute(insert(Hero), rows)  # no id, status, attributes or version given
    query = sa.select(Hero.__table__).order_by(col(Hero.name))  # type: ignore[attr-defined]
    stored = (await connection.execute(query)).mappings().all()
    assert [(r["name"], r["status"], r["attributes"], r["version"]) for r in stored] == [
        ("Core 0", HeroStatus.ACTIVE, {}, 1),
        ("Core 1", HeroStatus.ACTIVE, {}, 1),
    ]
    assert stored[0]["id"] != stored[1]["id"]  # default_factory=uuid4, called per row
    raw = text("INSERT INTO hero (id, name, secret_name) VALUES (:id, 'Raw', 'raw')")
    with pytest.raises(DBAPIError) as caught:  # the database has no default for status
        async with session.begin_nested():
            await (await session.connection()).execute(raw, {"id": uuid.uuid4().hex})
    assert "status" in str(caught.value.orig)  # NOT NULL, or MySQL's "doesn't have a default"


def test_model_config_as_configdict_fails_mypy_strict(tmp_path: Path) -> None:
    module = tmp_path / "config_styles.py"
    module.write_text(
        "from pydantic import ConfigDict\nfrom sqlmodel import SQLModel\n\n\n"
        "class Typed(SQLModel):\n"
        '    model_config = {"extra": "forbid"}\n\n\n'
        "class Untyped(SQLModel):\n"
        '    model_config = ConfigDict(extra="forbid")\n'
    )
    mypy = [sys.executable, "-m", "mypy", "--no-incremental", "--config-file", str(PYPROJECT)]
    result = subprocess.run(
        [*mypy, str(module)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1, result.stdout
    assert errors[0].startswith(f"{module}:10: error: Incompatible types in assignment")
    assert 'base class "SQLModel" defined the type as "SQLModelConfig"' in errors[0]


def test_composite_uniques_sharing_a_first_column_get_distinct_names() -> None:
    metadata = sa.MetaData(naming_convention=SQLModel.metadata.naming_convention)
    table = sa.Table(
        "listing",
        metadata,
        sa.Column("owner", sa.Integer),
        sa.Column("slug", sa.String(50)),
        sa.Column("title", sa.String(50)),
        sa.UniqueConstraint("owner", "slug"),
        sa.UniqueConstraint("owner", "title"),
        sa.UniqueConstraint("title"),
    )
    names = sorted(str(c.name) for c in table.constraints if isinstance(c, sa.UniqueConstraint))
    assert names == ["uq_listing_owner_slug", "uq_listing_owner_title", "uq_listing_title"]
    hero_uniques = {
        str(c.name): [col.name for col in c.columns]
        for c in Hero.__table__.constraints  # type: ignore[attr-defined]
        if isinstance(c, sa.UniqueConstraint)
    }
    assert hero_uniques == {
        "uq_hero_name_team_id_live": ["name", "team_id", "live"],
        "uq_hero_secret_name_live": ["secret_name", "live"],
    }


def test_uuid7_keys_are_time_ordered_rfc_9562_version_7() -> None:
    before = time.time()
    keys = []
    for _ in range(5):
        keys.append(uuid7())
        time.sleep(0.002)  # a new millisecond each time: order by time
    assert keys == sorted(keys)
    assert {(key.version, key.variant) for key in keys} == {(7, uuid.RFC_4122)}
    stamp = (keys[0].int >> 80) / 1000  # the first 48 bits: Unix time in ms
    assert before - 1 <= stamp <= time.time()
    burst = [uuid7() for _ in range(10_000)]  # many in one millisecond: the counter orders them
    assert burst == sorted(burst)
    assert len(set(burst)) == 10_000


async def test_new_heroes_get_time_ordered_keys(session: AsyncSession) -> None:
    names = [f"hero {i}" for i in range(6)]
    for name in names:
        session.add(Hero(name=name, secret_name=name))
        await asyncio.sleep(0.002)
    await session.flush()
    stored = (await session.exec(select(Hero.name).order_by(col(Hero.id)))).all()
    assert list(stored) == names  # the key's order is the creation order, on every backend
