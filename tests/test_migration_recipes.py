"""references/migrations.md: batched backfill, expand/contract, squashing; every backend.

The recipes under examples/app/migrations/recipes/ are copied into a scratch scripts folder on top
of the app's head, as the other recipe tests do (tests/test_migrations.py).
"""

import math
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from examples.app.migrate import run, upgrade
from examples.app.migrations.recipes import backfill_in_batches, rename_app
from tests.conftest import Backend, an_empty_database
from tests.support import run_in, scripts_copy
from tests.test_migrations import BRANCH_REVISION, REVISIONS, inspect

RENAME = ("rename_expand.py", "backfill_in_batches.py", "rename_contract.py")
BATCH = backfill_in_batches.BATCH_ROWS


def with_recipes(tmp_path: Path, *names: str) -> Path:
    """A scripts copy with the recipes as revisions; the first one revises the app's head."""
    scripts = scripts_copy(tmp_path)
    head = f'down_revision: str | Sequence[str] | None = "{REVISIONS[-1]}"'
    for number, name in enumerate(names):
        text = (scripts / "recipes" / name).read_text()
        if number == 0:
            text = re.sub(r"down_revision: .*", lambda _: head, text)
        (scripts / "versions" / name).write_text(text)
    return scripts


@asynccontextmanager
async def connect(url: str) -> AsyncIterator[AsyncConnection]:
    """A plain connection of "the app" (whichever version), committing when the block ends."""
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as connection:
            yield connection
    finally:
        await engine.dispose()


async def version(url: str) -> list[str]:
    async with connect(url) as connection:
        rows = await connection.execute(sa.text("SELECT version_num FROM alembic_version"))
        return list(rows.scalars())


def sync_url(url: str) -> sa.URL:
    """The same database through a synchronous driver: an observer from inside an event."""
    parsed = make_url(url)
    driver = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql"}
    name = parsed.get_backend_name()
    return parsed.set(drivername=driver["mysql" if name == "mariadb" else name])


# ---------------------------------------------------------------- batched backfill


@contextmanager
def counting_backfill_updates(url: str, *, fail_at: int | None = None) -> Iterator[list[int]]:
    """Every backfill UPDATE of any engine in this process: the rows another connection sees
    filled just before it runs (so: what earlier batches committed). fail_at: raise instead of
    running that UPDATE (0-based), as an interrupted deploy would stop."""
    observer = sa.create_engine(sync_url(url), poolclass=NullPool)
    seen: list[int] = []

    def before(_conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.startswith("UPDATE team SET base="):
            return
        if fail_at is not None and len(seen) == fail_at:
            raise RuntimeError("deploy interrupted")
        with observer.connect() as other:
            filled = other.execute(sa.text("SELECT count(base) FROM team")).scalar_one()
        seen.append(filled)

    sa.event.listen(sa.Engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", before)
        observer.dispose()


async def insert_teams(url: str, count: int) -> None:
    rows = [{"name": f"team {n:05d}", "headquarters": f"hq {n}"} for n in range(count)]
    async with connect(url) as connection:
        await connection.execute(sa.insert(rename_app.team_v1), rows)


async def test_backfill_commits_each_batch_and_resumes(
    backend: Backend, empty_database_url: str, tmp_path: Path
) -> None:
    url = empty_database_url
    scripts = with_recipes(tmp_path, *RENAME)
    await run_in(scripts, url, "upgrade", "0100")
    rows, done_before_failure = 5_000, 3
    await insert_teams(url, rows)

    with (
        counting_backfill_updates(url, fail_at=done_before_failure) as seen,
        pytest.raises(RuntimeError, match="deploy interrupted"),
    ):
        await run_in(scripts, url, "upgrade", "0101")
    assert seen == [0, BATCH, 2 * BATCH]  # each batch committed before the next one started
    assert await version(url) == ["0100"]  # the revision didn't finish
    async with connect(url) as connection:
        filled = await connection.execute(sa.text("SELECT count(base) FROM team"))
        assert filled.scalar_one() == done_before_failure * BATCH  # and the batches stayed

    with counting_backfill_updates(url) as seen:  # the rerun skips the rows done
        await run_in(scripts, url, "upgrade", "0101")
    remaining = rows - done_before_failure * BATCH
    assert len(seen) == math.ceil(remaining / BATCH)  # one UPDATE per batch, none for done rows
    assert seen == [done_before_failure * BATCH + n * BATCH for n in range(len(seen))]
    assert await version(url) == ["0101"]
    async with connect(url) as connection:
        wrong = await connection.execute(
            sa.text("SELECT count(*) FROM team WHERE base IS NULL OR base != headquarters")
        )
        assert wrong.scalar_one() == 0


async def test_backfill_of_an_untouched_table(
    backend: Backend, empty_database_url: str, tmp_path: Path
) -> None:
    """ceil(N / batch) UPDATEs, with N not a multiple of the batch; each sees the last commit."""
    url = empty_database_url
    scripts = with_recipes(tmp_path, *RENAME)
    await run_in(scripts, url, "upgrade", "0100")
    rows = 1_234
    await insert_teams(url, rows)
    with counting_backfill_updates(url) as seen:
        await run_in(scripts, url, "upgrade", "0101")
    assert seen == [n * BATCH for n in range(math.ceil(rows / BATCH))]
    await run_in(scripts, url, "downgrade", REVISIONS[-1])


async def test_without_the_autocommit_block_the_backfill_is_one_transaction(
    backend: Backend, empty_database_url: str, tmp_path: Path
) -> None:
    """The revision's own transaction holds every batch: nothing is visible until the end, and
    an interruption would roll all of it back (every row locked for the whole run)."""
    url = empty_database_url
    scripts = with_recipes(tmp_path, *RENAME)
    source = (scripts / "versions" / "backfill_in_batches.py").read_text()
    one_transaction = source.replace(
        "with op.get_context().autocommit_block():", "if True:  # in the revision's transaction"
    )
    (scripts / "versions" / "backfill_in_batches.py").write_text(one_transaction)
    await run_in(scripts, url, "upgrade", "0100")
    await insert_teams(url, 3 * BATCH)
    with counting_backfill_updates(url) as seen:
        await run_in(scripts, url, "upgrade", "0101")
    assert seen == [0, 0, 0]


# ---------------------------------------------------------------- expand and contract


async def call(url: str, function: str, *args: str) -> Any:
    """One call of an app version's function (rename_app.py), in its own transaction."""
    async with connect(url) as connection:
        return await getattr(rename_app, function)(connection, *args)


async def side_by_side(url: str, deploy: str, old: str, new: str, expected: dict[str, str]) -> None:
    """During a rollout: each version adds a team and edits the other's; both read every team."""
    for writer in (old, new):
        expected[f"{writer} at {deploy}"] = f"Written by {writer}"
        await call(url, f"add_team_{writer}", f"{writer} at {deploy}", f"Written by {writer}")
    for editor, other in ((old, new), (new, old)):
        expected[f"{other} at {deploy}"] = f"Edited by {editor}"
        await call(url, f"set_base_{editor}", f"{other} at {deploy}", f"Edited by {editor}")
    for reader in (old, new):
        for name, value in expected.items():
            assert await call(url, f"team_base_{reader}", name) == value, (reader, name)


async def add_team_fails(url: str, version: str) -> str:
    with pytest.raises(sa.exc.DBAPIError) as caught:
        await call(url, f"add_team_{version}", f"late {version}", "x")
    return str(caught.value.orig)


OLD_APP_AFTER_BACKFILL = {  # version 1 inserting after deploy 2's revision: no base
    "sqlite": "NOT NULL constraint failed: team.base",
    "postgresql": 'null value in column "base" of relation "team" violates not-null constraint',
    "mysql": "(1364, \"Field 'base' doesn't have a default value\")",
}
OLD_APP_AFTER_CONTRACT = {  # version 3 inserting after deploy 4's revision
    "sqlite": "table team has no column named headquarters",
    "postgresql": 'column "headquarters" of relation "team" does not exist',
    "mysql": "(1054, \"Unknown column 'headquarters' in 'INSERT INTO'\")",
}


async def test_expand_and_contract_keeps_old_and_new_app_working(
    backend: Backend, empty_database_url: str, tmp_path: Path
) -> None:
    url = empty_database_url
    scripts = with_recipes(tmp_path, *RENAME)
    await run_in(scripts, url, "upgrade", REVISIONS[-1])
    expected: dict[str, str] = {}

    await run_in(scripts, url, "upgrade", "0100")  # deploy 1: expand, then version 2
    await side_by_side(url, "deploy 1", "v1", "v2", expected)

    await run_in(scripts, url, "upgrade", "0101")  # deploy 2: backfill, swap; version 3
    assert OLD_APP_AFTER_BACKFILL[backend.name] in await add_team_fails(url, "v1")
    await side_by_side(url, "deploy 2", "v2", "v3", expected)

    await side_by_side(url, "deploy 3", "v3", "v4", expected)  # deploy 3: no revision

    await run_in(scripts, url, "upgrade", "0102")  # deploy 4: contract, version 4 alone
    assert OLD_APP_AFTER_CONTRACT[backend.name] in await add_team_fails(url, "v3")
    for name, value in expected.items():
        assert await call(url, "team_base_v4", name) == value, name

    await run_in(scripts, url, "downgrade", REVISIONS[-1])  # and back, values kept
    async with connect(url) as connection:
        rows = await connection.execute(sa.text("SELECT name, headquarters FROM team"))
        assert {name: headquarters for name, headquarters in rows} == expected
    await run(url, "check")  # the app's own scripts and models: as before the rename


async def test_reading_the_new_column_first_loses_the_old_versions_edits(
    backend: Backend, empty_database_url: str, tmp_path: Path
) -> None:
    """The design this recipe replaced: version 2 read coalesce(base, headquarters). Version 1
    edits only headquarters, so version 2 kept showing what it wrote itself."""
    url = empty_database_url
    await run_in(with_recipes(tmp_path, *RENAME), url, "upgrade", "0100")
    await call(url, "add_team_v2", "Team", "Written by v2")
    await call(url, "set_base_v1", "Team", "Edited by v1")
    team = rename_app.team_v2
    query = sa.select(sa.func.coalesce(team.c.base, team.c.headquarters))
    async with connect(url) as connection:
        shown = (await connection.execute(query.where(team.c.name == "Team"))).scalar_one()
    assert shown == "Written by v2"  # not "Edited by v1"
    assert await call(url, "team_base_v2", "Team") == "Edited by v1"  # the recipe's version 2


@pytest.mark.backends("mysql")
async def test_mariadb_refuses_to_set_not_null_online_when_it_would_copy(
    empty_database_url: str,
) -> None:
    """The recipe's ALGORITHM=INPLACE, LOCK=NONE succeeds on team (the upgrades above). On a
    table with a stored generated column MariaDB can't; without ALGORITHM it copies silently."""
    async with connect(empty_database_url) as connection:
        await connection.execute(
            sa.text(
                "CREATE TABLE scratch (id INT PRIMARY KEY, c VARCHAR(200),"
                " g INT AS (id + 1) STORED)"
            )
        )
        await connection.execute(sa.text("INSERT INTO scratch (id, c) VALUES (1, 'x'), (2, 'y')"))
        not_null = "ALTER TABLE scratch MODIFY c VARCHAR(200) NOT NULL"
        with pytest.raises(sa.exc.DBAPIError) as caught:
            await connection.execute(sa.text(f"{not_null}, ALGORITHM=INPLACE, LOCK=NONE"))
        assert str(caught.value.orig) == (
            "(1845, 'ALGORITHM=INPLACE is not supported for this operation. Try ALGORITHM=COPY')"
        )
        copied = await connection.execute(sa.text(not_null))  # no ALGORITHM: accepted
        assert copied.rowcount == 2  # every row copied into a new table
        # The other way: the column NOT NULL with a default from the start, instant here too;
        # the old column made nullable (deploy 2) goes in place.
        for instant in ("ADD COLUMN d VARCHAR(200) NOT NULL DEFAULT ''", "ALTER d DROP DEFAULT"):
            await connection.execute(sa.text(f"ALTER TABLE scratch {instant}, ALGORITHM=INSTANT"))
        nullable = "MODIFY c VARCHAR(200) NULL, ALGORITHM=INPLACE, LOCK=NONE"
        assert (await connection.execute(sa.text(f"ALTER TABLE scratch {nullable}"))).rowcount == 0


@pytest.mark.backends("psycopg")
async def test_postgresql_set_not_null_skips_its_scan_after_the_check(
    empty_database_url: str, tmp_path: Path
) -> None:
    """SET NOT NULL reports at DEBUG1 whether it read the table or a valid CHECK proved it."""
    url = empty_database_url
    scripts = with_recipes(tmp_path, *RENAME)
    await run_in(scripts, url, "upgrade", "0100")
    await insert_teams(url, 10)
    notices: list[str] = []

    def debug_notices(dbapi_connection: Any, _record: Any) -> None:
        psycopg_connection = dbapi_connection.driver_connection
        psycopg_connection.add_notice_handler(lambda n: notices.append(n.message_primary))
        cursor = dbapi_connection.cursor()
        cursor.execute("SET client_min_messages = debug1")
        cursor.close()
        dbapi_connection.commit()  # else the pool's rollback undoes the SET

    sa.event.listen(sa.pool.Pool, "connect", debug_notices)
    try:
        await run_in(scripts, url, "upgrade", "0101")
    finally:
        sa.event.remove(sa.pool.Pool, "connect", debug_notices)
    proved = 'existing constraints on column "team.base" are sufficient to prove that it does'
    assert f"{proved} not contain nulls" in notices


# ---------------------------------------------------------------- squashing old revisions


BASELINE = "0007"  # squash_baseline.py's id: the newest revision it replaces
SQUASHED = REVISIONS[: REVISIONS.index(BASELINE) + 1]


def squashed(tmp_path: Path) -> Path:
    """The app's scripts with 0001-0007 replaced by the baseline; later revisions stay."""
    scripts = scripts_copy(tmp_path)
    for script in ScriptDirectory(str(scripts)).walk_revisions():
        if script.revision in SQUASHED:
            Path(script.path).unlink()
    baseline = scripts / "versions" / f"{BASELINE}_baseline.py"
    shutil.copy(scripts / "recipes" / "squash_baseline.py", baseline)
    return scripts


def schema(connection: Connection) -> dict[str, Any]:
    """Everything reflection sees, per table (column order included), plus per-backend extras."""
    inspector = sa.inspect(connection)
    found: dict[str, Any] = {}
    for table in sorted(set(inspector.get_table_names()) - {"alembic_version"}):
        found[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                for c in inspector.get_columns(table)
            ],
            "pk": inspector.get_pk_constraint(table),
            "fks": sorted(inspector.get_foreign_keys(table), key=lambda fk: fk["name"] or ""),
            "indexes": sorted(inspector.get_indexes(table), key=lambda ix: ix["name"] or ""),
            "uniques": sorted(inspector.get_unique_constraints(table), key=lambda u: u["name"]),
            "checks": sorted(inspector.get_check_constraints(table), key=lambda c: c["name"]),
        }
    dialect = connection.dialect.name
    if dialect == "postgresql":
        found["enums"] = inspector.get_enums()  # type: ignore[attr-defined]
    elif dialect in ("mysql", "mariadb"):
        found["table options"] = sorted(
            connection.execute(
                sa.text(
                    "SELECT table_name, engine, table_collation FROM information_schema.tables"
                    " WHERE table_schema = DATABASE() AND table_name != 'alembic_version'"
                )
            ).all()
        )
    else:
        # SQLite keeps the CREATE statements (defaults, CHECK bodies). Batch mode's copies
        # quote the table name and list constraints in another order: compare lines as a set.
        rows = connection.execute(sa.text("SELECT name, sql FROM sqlite_master WHERE sql != ''"))
        found["ddl"] = {
            name: sorted(line.strip(" ,") for line in sql.replace('"', "").splitlines())
            for name, sql in rows
        }
    return found


async def schema_of(url: str) -> dict[str, Any]:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(schema)
    finally:
        await engine.dispose()


async def test_a_squashed_history_builds_the_same_schema(
    backend: Backend, empty_database_url: str, tmp_path: Path
) -> None:
    scripts = squashed(tmp_path)
    assert ScriptDirectory(str(scripts)).get_bases() == [BASELINE]
    await upgrade(empty_database_url)  # the full history
    async with an_empty_database(backend, tmp_path, "another") as url:
        await run_in(scripts, url, "upgrade", "head")  # the baseline, then what came after it
        assert await version(url) == [REVISIONS[-1]]
        await run_in(scripts, url, "check")  # and the models agree
        expected, got = await schema_of(empty_database_url), await schema_of(url)
        assert got.keys() == expected.keys()
        for name in expected:  # table by table: a readable diff
            assert got[name] == expected[name], name
        await run_in(scripts, url, "downgrade", "base")
        tables, types, _ = await inspect(url)
        assert (tables, types) == ({"alembic_version"}, set())  # no enum type left behind


async def test_a_database_at_the_old_head_keeps_working(
    empty_database_url: str, tmp_path: Path
) -> None:
    """Its alembic_version already names the baseline: nothing to run, later revisions apply."""
    url = empty_database_url
    scripts = squashed(tmp_path)
    new = BRANCH_REVISION.format(message="team.rank", rev="0200", table="team", column="rank")
    new = new.replace('"0006"', f'"{REVISIONS[-1]}"').replace(": 0006", f": {REVISIONS[-1]}")
    (scripts / "versions" / "0200_rank.py").write_text(new)
    await upgrade(url, BASELINE)  # migrated with the old history, up to the old head
    statements: list[str] = []

    def record(_conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    sa.event.listen(sa.Engine, "before_cursor_execute", record)
    try:
        await run_in(scripts, url, "upgrade", BASELINE)  # the baseline: nothing to do
        assert not [s for s in statements if re.match(r"\s*(CREATE|ALTER|DROP)", s)]
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", record)
    await run_in(scripts, url, "upgrade", "head")  # the revisions after it, and a new one
    assert await version(url) == ["0200"]
    await run_in(scripts, url, "downgrade", BASELINE)


async def test_a_database_older_than_the_baseline_is_refused(
    empty_database_url: str, tmp_path: Path
) -> None:
    """Upgrade it with a release that still has the old revisions first."""
    older = REVISIONS[REVISIONS.index(BASELINE) - 1]
    await upgrade(empty_database_url, older)
    with pytest.raises(CommandError, match=f"Can't locate revision identified by '{older}'"):
        await run_in(squashed(tmp_path), empty_database_url, "upgrade", "head")


async def test_autogenerate_writes_the_baseline_from_an_empty_database(
    backend: Backend, empty_database_url: str, tmp_path: Path
) -> None:
    """How squash_baseline.py was started: no revisions, an empty database, the head's id."""
    scripts = scripts_copy(tmp_path)
    for script in (scripts / "versions").glob("*.py"):
        script.unlink()
    await run_in(
        scripts, empty_database_url, "revision", "baseline", autogenerate=True, rev_id=BASELINE
    )
    generated = (scripts / "versions" / f"{BASELINE}_baseline.py").read_text()
    assert f"revision: str = '{BASELINE}'" in generated
    assert "down_revision: str | Sequence[str] | None = None" in generated
    for table in ("hero", "hero_power", "job", "power", "team"):
        assert f"op.create_table('{table}'" in generated


@pytest.mark.backends("postgresql", "psycopg", "mysql")
async def test_alembic_check_misses_what_a_squash_can_lose(
    backend: Backend, empty_database_url: str, tmp_path: Path
) -> None:
    """Enum values out of order, a table without its options: `check` passes, the schemas differ
    (so the comparison above, not `check`, proves a baseline)."""
    scripts = squashed(tmp_path)
    baseline = scripts / "versions" / f"{BASELINE}_baseline.py"
    wrong = baseline.read_text().replace(
        '("active", "retired", "missing")', '("active", "missing", "retired")'
    )
    wrong = wrong.replace(
        'name=op.f("uq_power_name")),\n        **MYSQL_TABLE,', 'name=op.f("uq_power_name")),'
    )
    baseline.write_text(wrong)
    await run_in(scripts, empty_database_url, "upgrade", "head")
    await run_in(scripts, empty_database_url, "check")  # no diff reported
    async with an_empty_database(backend, tmp_path, "another") as url:
        await upgrade(url)
        expected, got = await schema_of(url), await schema_of(empty_database_url)
    differs = "enums" if backend.name == "postgresql" else "table options"
    assert got[differs] != expected[differs]
