"""PostgreSQL types and indexes (examples/postgres_types.py): each query returns the right rows,
EXPLAIN shows the index serves it as written, and Alembic's autogenerate stays quiet."""

import importlib.util
import secrets
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata, produce_migrations, render_python_code
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import registry
from sqlalchemy.pool import NullPool
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

import examples.app.types
from examples.app.models import Hero
from examples.app.services import HeroService
from examples.postgres_types import (
    Article,
    PostgresModel,
    by_author,
    include_object,
    latest_published,
    search_articles,
    tagged_with_all,
    tagged_with_any,
    tagged_with_scan,
    title_contains,
    with_document,
)
from tests.conftest import CURSOR_SECRET
from tests.support import a_session_on_fresh_tables, captured, plan_of

pytestmark = pytest.mark.backends("postgresql", "psycopg")

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "examples/app/migrations/recipes/hero_name_trigram.py"


@pytest_asyncio.fixture(scope="module")
async def articles_table(engine: AsyncEngine) -> AsyncIterator[None]:
    """pg_trgm and the article table on this run's database (tests roll their rows back)."""
    async with engine.begin() as connection:
        await connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        await connection.run_sync(PostgresModel.metadata.create_all)
    yield
    async with engine.begin() as connection:
        await connection.run_sync(PostgresModel.metadata.drop_all)


def articles() -> list[Article]:
    published = datetime(2025, 1, 1, tzinfo=UTC)
    return [
        Article(
            title="Async sessions in SQLModel",
            body="One AsyncSession per unit of work; engines are shared.",
            status="published",
            published_at=published,
            tags=["python", "sqlmodel", "async"],
            document={"author": "ann", "meta": {"lang": "en", "level": 2}},
        ),
        Article(
            title="Indexing JSONB",
            body="GIN indexes serve containment queries.",
            status="published",
            published_at=published.replace(month=2),
            tags=["postgresql", "jsonb"],
            document={"author": "bob", "meta": {"lang": "en"}},
        ),
        Article(
            title="Trigrammes et recherche",
            body="Une recherche approximative.",
            tags=["postgresql", "search"],
            document={"author": "ann", "meta": {"lang": "fr"}},
        ),
    ]


@pytest_asyncio.fixture
async def db(articles_table: None, session: AsyncSession) -> AsyncSession:
    session.add_all(articles())
    await session.flush()
    return session


def titles(rows: Any) -> list[str]:
    return [row.title for row in rows]


# ---------------------------------------------------------------- the queries' rows


async def test_array_containment_overlap_and_any(db: AsyncSession) -> None:
    assert titles(await tagged_with_all(db, ["postgresql"])) == [
        "Indexing JSONB",
        "Trigrammes et recherche",
    ]
    assert titles(await tagged_with_all(db, ["postgresql", "jsonb"])) == ["Indexing JSONB"]
    assert titles(await tagged_with_any(db, ["jsonb", "async"])) == [
        "Async sessions in SQLModel",
        "Indexing JSONB",
    ]
    assert titles(await tagged_with_scan(db, "postgresql")) == titles(
        await tagged_with_all(db, ["postgresql"])
    )


async def test_contains_on_an_array_takes_a_list(db: AsyncSession) -> None:
    """.contains("python") on an ARRAY is tags @> 'python', not LIKE: PostgreSQL refuses it."""
    with pytest.raises(DBAPIError, match=r"operator does not exist: character varying\[\] @>"):
        async with db.begin_nested():
            await tagged_with_all(db, "python")  # type: ignore[arg-type]


async def test_jsonb_containment_and_path(db: AsyncSession) -> None:
    assert titles(await with_document(db, {"meta": {"lang": "en"}})) == [
        "Async sessions in SQLModel",
        "Indexing JSONB",
    ]
    assert titles(await with_document(db, {"author": "ann", "meta": {"level": 2}})) == [
        "Async sessions in SQLModel"
    ]
    assert titles(await by_author(db, "ann")) == [
        "Async sessions in SQLModel",
        "Trigrammes et recherche",
    ]


async def test_full_text_search_stems_and_ranks(db: AsyncSession) -> None:
    assert titles(await search_articles(db, "index")) == ["Indexing JSONB"]  # stemmed
    assert titles(await search_articles(db, "session -jsonb")) == ["Async sessions in SQLModel"]
    assert titles(await search_articles(db, '"unit of work"')) == ["Async sessions in SQLModel"]
    assert titles(await search_articles(db, "(( or ::")) == []  # never a syntax error
    db.add(Article(title="Sessions, sessions, sessions", body="All about sessions."))
    await db.flush()
    assert titles(await search_articles(db, "sessions")) == [
        "Sessions, sessions, sessions",  # more matches rank first
        "Async sessions in SQLModel",
    ]


async def test_icontains_on_the_title(db: AsyncSession) -> None:
    assert titles(await title_contains(db, "SQLMODEL")) == ["Async sessions in SQLModel"]
    assert titles(await title_contains(db, "in")) == [
        "Async sessions in SQLModel",
        "Indexing JSONB",
    ]
    assert titles(await title_contains(db, "%")) == []  # a literal %, not a wildcard


async def test_latest_published(db: AsyncSession) -> None:
    assert titles(await latest_published(db)) == ["Indexing JSONB", "Async sessions in SQLModel"]


# ---------------------------------------------------------------- writing the columns


async def test_search_is_computed_and_read_back_after_an_update(db: AsyncSession) -> None:
    (article,) = await search_articles(db, "containment")
    article.body = "Now about sessions."
    await db.flush()
    # eager_defaults: the UPDATE returned the new tsvector (else: MissingGreenlet here).
    assert article.search is not None
    assert "'session'" in article.search
    assert "'contain'" not in article.search


async def test_without_eager_defaults_reading_search_after_an_update_fails(
    articles_table: None, session: AsyncSession
) -> None:
    mapper = sa.inspect(Article)
    session.add(article := Article(title="Lazy", body="before"))
    await session.flush()
    mapper.eager_defaults = False
    try:
        article.body = "after"
        await session.flush()
        # expired by the UPDATE; loading it is IO (psycopg wraps it in a StatementError)
        with pytest.raises(sa.exc.SQLAlchemyError, match="greenlet_spawn has not been called"):
            _ = article.search
    finally:
        mapper.eager_defaults = True


async def test_writing_the_generated_column_fails(
    articles_table: None, session: AsyncSession
) -> None:
    session.add(Article(title="Mine", search="'mine':1"))
    with pytest.raises(DBAPIError, match='cannot insert a non-DEFAULT value into column "search"'):
        async with session.begin_nested():
            await session.flush()


def test_a_list_field_needs_sa_type() -> None:
    class Throwaway(SQLModel, registry=registry()):
        pass

    with pytest.raises(ValueError, match="<class 'list'> has no matching SQLAlchemy type"):

        class Tagged(Throwaway, table=True):
            id: int | None = Field(default=None, primary_key=True)
            tags: list[str] = Field(default_factory=list)


async def test_a_generated_tsvector_needs_its_configuration(session: AsyncSession) -> None:
    """to_tsvector(text) depends on the default_text_search_config setting: not immutable."""
    table = sa.Table(
        "draft",
        sa.MetaData(),
        sa.Column("title", sa.Text),
        sa.Column("search", postgresql.TSVECTOR, sa.Computed("to_tsvector(title)", persisted=True)),
    )
    connection = await session.connection()
    with pytest.raises(DBAPIError, match="generation expression is not immutable"):
        async with connection.begin_nested():
            await connection.run_sync(table.create)


async def test_in_place_changes_to_the_array_and_jsonb(db: AsyncSession) -> None:
    (article,) = await tagged_with_all(db, ["jsonb"])
    article.document["meta"]["lang"] = "de"  # nested: nothing marks the row dirty
    await db.flush()
    await db.refresh(article)
    assert article.document == {"author": "bob", "meta": {"lang": "en"}}  # not saved
    article.tags.append("gin")  # MutableList: saved
    article.document["reviewed"] = True  # MutableDict, top level: saved
    await db.flush()
    await db.refresh(article)
    assert article.tags == ["postgresql", "jsonb", "gin"]
    assert article.document == {"author": "bob", "meta": {"lang": "en"}, "reviewed": True}


# ---------------------------------------------------------------- EXPLAIN: the index serves it


async def test_each_index_serves_its_query_as_written(db: AsyncSession) -> None:
    expected = {
        "ix_article_tags": lambda: tagged_with_all(db, ["postgresql"]),
        "ix_article_document": lambda: with_document(db, {"meta": {"lang": "en"}}),
        "ix_article_author": lambda: by_author(db, "ann"),
        "ix_article_search": lambda: search_articles(db, "session"),
        "ix_article_title_trgm": lambda: title_contains(db, "sqlmodel"),
        "ix_article_published_at": lambda: latest_published(db),
    }
    for index, query in expected.items():
        assert index in await plan_of(db, query), index
    assert "ix_article_tags" in await plan_of(db, lambda: tagged_with_any(db, ["jsonb"]))


async def test_any_reads_every_row(db: AsyncSession) -> None:
    plan = await plan_of(db, lambda: tagged_with_scan(db, "postgresql"))
    assert "Seq Scan on article" in plan
    assert "ix_article_tags" not in plan


def sql_literal(value: object) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


async def generic_plan_of(session: AsyncSession, query: Callable[[], Awaitable[object]]) -> str:
    """EXPLAIN of the plan for "any parameter values": what a prepared statement gets after
    five runs (asyncpg's statement cache, psycopg's prepare_threshold)."""
    connection = await session.connection()
    with captured(connection.sync_engine) as seen:
        await query()
    (statement, params), *_ = seen
    if isinstance(params, dict):  # psycopg's %(name)s
        for number, name in enumerate(params, 1):
            statement = statement.replace(f"%({name})s", f"${number}")
        params = list(params.values())
    await connection.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
    await connection.exec_driver_sql("PREPARE generic AS " + statement)
    arguments = ", ".join(sql_literal(value) for value in params)
    execute = f"EXECUTE generic({arguments})" if params else "EXECUTE generic"
    plan = await connection.exec_driver_sql("EXPLAIN " + execute)
    await connection.exec_driver_sql("DEALLOCATE generic")
    return "\n".join(plan.scalars())


async def test_the_partial_index_needs_its_predicate_as_a_literal(db: AsyncSession) -> None:
    """A generic plan can't prove `status = $1` implies `status = 'published'`:
    latest_published writes the literal into the SQL, so every plan can use the index."""
    assert "ix_article_published_at" in await generic_plan_of(db, lambda: latest_published(db))

    async def with_a_parameter() -> object:
        statement = (
            select(Article)
            .where(col(Article.status) == "published")
            .order_by(col(Article.published_at).desc())
            .limit(10)
        )
        return (await db.exec(statement)).all()

    assert "ix_article_published_at" in await plan_of(db, with_a_parameter)  # custom plan
    assert "ix_article_published_at" not in await generic_plan_of(db, with_a_parameter)


async def test_a_trigram_index_on_the_plain_column_does_not_serve_icontains(
    db: AsyncSession,
) -> None:
    """icontains compiles to lower(title) LIKE ...: an index on title itself isn't used."""
    connection = await db.connection()
    await connection.exec_driver_sql("DROP INDEX ix_article_title_trgm")  # rolled back
    await connection.exec_driver_sql(
        "CREATE INDEX ix_article_title_plain ON article USING gin (title gin_trgm_ops)"
    )
    plan = await plan_of(db, lambda: title_contains(db, "sqlmodel"))
    assert "ix_article_title_plain" not in plan
    assert "Seq Scan on article" in plan


def run_recipe(connection: Connection, module: ModuleType, step: str = "upgrade") -> None:
    with Operations.context(MigrationContext.configure(connection)):
        getattr(module, step)()


def load_recipe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hero_name_trigram", RECIPE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_the_recipe_makes_servicebase_icontains_use_the_trigram_index(
    empty_database_url: str,
) -> None:
    async with a_session_on_fresh_tables(empty_database_url) as session:
        connection = await session.connection()
        session.add(Hero(name="Abyss Walker", secret_name="aw"))
        rows = [{"name": f"Storm {i}", "secret_name": f"storm-{i}"} for i in range(20_000)]
        await session.exec(sa.insert(Hero), params=rows)
        # The index after the rows: no GIN pending list (test_after_a_bulk_insert_...). The
        # other way to every live hero, the deleted_at index, goes for this transaction, and so
        # do sequential scans: the plan shows whether the trigram index can serve the
        # expression ServiceBase writes, whatever the planner estimates.
        await connection.run_sync(run_recipe, load_recipe())
        await connection.exec_driver_sql("DROP INDEX ix_hero_deleted_at")
        await connection.exec_driver_sql("ANALYZE hero")
        service = HeroService(session, cursor_secret=CURSOR_SECRET.encode())
        abyss = {"field": "name", "op": "icontains", "value": "ABY"}

        async def count() -> object:  # the page's total: every match, no ORDER BY ... LIMIT
            return await service.count(abyss)

        assert "Bitmap Index Scan on ix_hero_name_trgm" in await plan_of(session, count)
        result = await service.page(abyss)
        assert [hero.name for hero in result.items] == ["Abyss Walker"]
        assert result.total == 1


async def test_after_a_bulk_insert_the_gin_pending_list_hides_the_trigram_index(
    articles_table: None, session: AsyncSession
) -> None:
    """Rows inserted into a table that has a GIN index wait in the index's pending list
    (fastupdate), which the planner prices as read in full: ANALYZE doesn't change that,
    gin_clean_pending_list (or VACUUM) does."""
    connection = await session.connection()  # everything here is rolled back
    await connection.exec_driver_sql("SET LOCAL gin_pending_list_limit = '4MB'")  # the default
    await connection.exec_driver_sql(
        "CREATE TABLE pending (id serial PRIMARY KEY, name varchar(100) NOT NULL)"
    )
    await connection.exec_driver_sql(
        "CREATE INDEX ix_pending_name_trgm ON pending USING gin (lower(name) gin_trgm_ops)"
    )
    await connection.exec_driver_sql(  # about 2.5 MB of trigrams: all of it stays pending
        "INSERT INTO pending (name)"
        " SELECT 'Storm of the northern kingdoms, number ' || i FROM generate_series(1, 3000) i"
    )
    await connection.exec_driver_sql("ANALYZE pending")
    explain = sa.text(  # the SQL icontains writes
        "EXPLAIN SELECT id FROM pending WHERE lower(name) LIKE lower(:pattern) ESCAPE '/'"
    )

    async def plan() -> str:
        return "\n".join((await connection.execute(explain, {"pattern": "%aby%"})).scalars())

    assert "Seq Scan on pending" in await plan()
    cleaned = await connection.exec_driver_sql(
        "SELECT gin_clean_pending_list('ix_pending_name_trgm')"
    )
    assert cleaned.scalar_one() > 0  # pages moved out of the pending list
    assert "Bitmap Index Scan on ix_pending_name_trgm" in await plan()


# ---------------------------------------------------------------- without pg_trgm, privileges


async def test_without_the_extension_the_index_cannot_be_created(
    empty_database_url: str,
) -> None:
    engine = create_async_engine(empty_database_url, poolclass=NullPool)
    try:
        with pytest.raises(
            DBAPIError, match='operator class "gin_trgm_ops" does not exist for access method "gin"'
        ):
            async with engine.begin() as connection:
                await connection.run_sync(PostgresModel.metadata.create_all)
    finally:
        await engine.dispose()


async def test_a_trusted_extension_needs_create_on_the_database_not_superuser(
    empty_database_url: str,
) -> None:
    role = f"asm_trgm_{secrets.token_hex(4)}"
    database = sa.make_url(empty_database_url).database
    admin = create_async_engine(
        empty_database_url, poolclass=NullPool, isolation_level="AUTOCOMMIT"
    )
    try:
        async with admin.connect() as connection:
            trusted = await connection.exec_driver_sql(
                "SELECT bool_and(trusted) FROM pg_available_extension_versions"
                " WHERE name = 'pg_trgm'"
            )
            assert trusted.scalar_one() is True
            await connection.exec_driver_sql(f"CREATE ROLE {role} NOLOGIN NOSUPERUSER")
            await connection.exec_driver_sql(f"GRANT {role} TO CURRENT_USER")

            async def as_role(statement: str) -> None:
                await connection.exec_driver_sql(f"SET ROLE {role}")
                try:
                    await connection.exec_driver_sql(statement)
                finally:
                    await connection.exec_driver_sql("RESET ROLE")

            with pytest.raises(DBAPIError, match='permission denied to create extension "pg_trgm"'):
                await as_role("CREATE EXTENSION pg_trgm")
            await connection.exec_driver_sql(f'GRANT CREATE ON DATABASE "{database}" TO {role}')
            await as_role("CREATE EXTENSION pg_trgm")
            installed = await connection.exec_driver_sql(
                "SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'"
            )
            assert installed.scalar_one() == 1
    finally:
        async with admin.connect() as connection:
            await connection.exec_driver_sql(f"DROP OWNED BY {role}")  # the extension, grants
            await connection.exec_driver_sql(f"DROP ROLE {role}")
        await admin.dispose()


# ---------------------------------------------------------------- autogenerate


def diffs(connection: Connection, /, metadata: Any, **options: Any) -> tuple[list[Any], list[str]]:
    """compare_metadata's differences and the warnings it gave."""
    tables = {
        name
        for each in (metadata if isinstance(metadata, list) else [metadata])
        for name in each.tables
    }

    def only_these_tables(name: str | None, type_: str, _parents: Any) -> bool:
        return type_ != "table" or name in tables  # this run's database has every test's tables

    context = MigrationContext.configure(
        connection,
        opts={
            "compare_server_default": True,
            "target_metadata": metadata,
            "include_name": only_these_tables,
            **options,
        },
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = compare_metadata(context, metadata)
    return found, [str(w.message) for w in caught]


async def test_autogenerate_is_quiet_about_the_declared_indexes(
    engine: AsyncEngine, articles_table: None
) -> None:
    async with engine.connect() as connection:
        assert await connection.run_sync(diffs, PostgresModel.metadata) == ([], [])


async def test_an_autogenerated_migration_creates_the_same_schema(
    empty_database_url: str,
) -> None:
    """The rendered create_index keeps the label that postgresql_ops names: running the
    generated code makes the indexes the models declare."""
    engine = create_async_engine(empty_database_url, poolclass=NullPool)

    def generate_and_run(connection: Connection) -> str:
        context = MigrationContext.configure(
            connection, opts={"target_metadata": PostgresModel.metadata}
        )
        operations = produce_migrations(context, PostgresModel.metadata).upgrade_ops
        assert operations is not None
        code = render_python_code(operations, migration_context=context)
        namespace = {
            "sa": sa,
            "postgresql": postgresql,
            "sqlmodel": __import__("sqlmodel"),
            "examples": examples,
        }
        with Operations.context(MigrationContext.configure(connection)) as op:
            exec(
                compile(code.replace("\n    ", "\n"), "autogenerated", "exec"),
                {**namespace, "op": op},
            )
        return code

    try:
        async with engine.begin() as connection:
            await connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            code = await connection.run_sync(generate_and_run)
            assert "postgresql_ops={'title_lower': 'gin_trgm_ops'}" in code
            assert "postgresql_where=sa.text(\"status = 'published'\")" in code
            assert await connection.run_sync(diffs, PostgresModel.metadata) == ([], [])
    finally:
        await engine.dispose()


def article_metadata(change: Callable[[sa.Table], None]) -> sa.MetaData:
    """A copy of the article table with one index (or column) changed."""
    metadata = sa.MetaData(naming_convention=PostgresModel.metadata.naming_convention)
    table = Article.__table__.to_metadata(metadata)  # type: ignore[attr-defined]
    change(table)
    return metadata


def without(name: str) -> Callable[[sa.Table], None]:
    def change(table: sa.Table) -> None:
        table.indexes.discard(next(ix for ix in table.indexes if ix.name == name))

    return change


def replaced(name: str, *expressions: Any, **options: Any) -> Callable[[sa.Table], None]:
    def change(table: sa.Table) -> None:
        without(name)(table)
        columns = [table.c[e] if isinstance(e, str) else e for e in expressions]
        sa.Index(name, *columns, _table=table, **options)

    return change


def computed_changed(table: sa.Table) -> None:
    computed = table.c.search.server_default
    assert isinstance(computed, sa.Computed)
    computed.sqltext = sa.text("to_tsvector('simple', title)")


TRGM = {"postgresql_using": "gin", "postgresql_ops": {"title": "gin_trgm_ops"}}

# What autogenerate reports when the model and the database disagree (database: as declared).
AUTOGENERATE_SEES = [
    # An index the database has and no model declares: autogenerate drops it.
    ("undeclared", without("ix_article_title_trgm"), ["remove_index"], None),
    # Another expression (here the plain column): drop and re-create.
    (
        "expression",
        replaced("ix_article_title_trgm", "title", **TRGM),
        ["remove_index", "add_index"],
        None,
    ),
    # Operator class, method and WHERE are not compared: a change goes unnoticed.
    (
        "operator class",
        replaced("ix_article_document", "document", postgresql_using="gin"),
        [],
        None,
    ),
    ("method", replaced("ix_article_tags", "tags"), [], None),
    (
        "where",
        replaced(
            "ix_article_published_at",
            "published_at",
            postgresql_where=sa.text("status = 'live'"),
        ),
        [],
        None,
    ),
    # The operator class written into the expression: compare skipped, with a warning.
    (
        "opclass in text",
        replaced(
            "ix_article_title_trgm", sa.text("lower(title) gin_trgm_ops"), postgresql_using="gin"
        ),
        [],
        "detected to include an operator clause",
    ),
    # A generated column's expression: a warning, never an operation.
    ("computed", computed_changed, [], "Computed default on article.search cannot be modified"),
]


@pytest.mark.parametrize(
    ("change", "operations", "warning"),
    [case[1:] for case in AUTOGENERATE_SEES],
    ids=[case[0] for case in AUTOGENERATE_SEES],
)
async def test_what_autogenerate_sees_of_a_changed_index(
    engine: AsyncEngine,
    articles_table: None,
    change: Callable[[sa.Table], None],
    operations: list[str],
    warning: str | None,
) -> None:
    async with engine.connect() as connection:
        found, warned = await connection.run_sync(diffs, article_metadata(change))
    assert [diff[0] for diff in found] == operations
    if warning is None:
        assert warned == []
    else:
        assert len(warned) == 1
        assert warning in warned[0]


async def test_include_object_keeps_autogenerate_from_dropping_the_postgres_only_index(
    articles_table: None, session: AsyncSession
) -> None:
    connection = await session.connection()
    await connection.run_sync(run_recipe, load_recipe())  # rolled back with the session
    both = [SQLModel.metadata, PostgresModel.metadata]
    found, _ = await connection.run_sync(diffs, both)
    assert [(diff[0], diff[1].name) for diff in found] == [("remove_index", "ix_hero_name_trgm")]
    assert await connection.run_sync(diffs, both, include_object=include_object) == ([], [])
    await connection.run_sync(run_recipe, load_recipe(), "downgrade")
    assert await connection.run_sync(diffs, both, include_object=include_object) == ([], [])
