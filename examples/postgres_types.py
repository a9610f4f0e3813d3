"""PostgreSQL types and indexes from SQLModel: ARRAY, JSONB, full-text search, trigram search,
expression and partial indexes, declared so that Alembic's autogenerate leaves them alone.

PostgreSQL only. These tables live on a MetaData of their own (PostgresModel.metadata), not on
SQLModel.metadata: the reference app creates SQLModel.metadata on SQLite and MariaDB too.
"""

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.mutable import MutableDict, MutableList
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel, col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.types import UTCDateTime, uuid7
from examples.servicebase.filters import TEXT, FilterField, FilterSpec


# --8<-- [start:own_metadata]
class PostgresModel(
    SQLModel,
    registry=registry(metadata=sa.MetaData(naming_convention=SQLModel.metadata.naming_convention)),
):
    """Tables on PostgresModel.metadata, not SQLModel.metadata. Alembic's env.py:
    target_metadata = [SQLModel.metadata, PostgresModel.metadata]."""


# --8<-- [end:own_metadata]


# --8<-- [start:article]
class Article(PostgresModel, table=True):
    # `search` back from every INSERT/UPDATE (RETURNING), not by a lazy load (MissingGreenlet).
    __mapper_args__: ClassVar[dict[str, Any]] = {"eager_defaults": True}

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    title: str = Field(max_length=200)
    body: str = Field(default="", sa_type=sa.Text)
    status: str = Field(default="draft", max_length=20)
    published_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # sa_type: list[str] has no default. Mutable*: in-place changes are saved (top level only).
    tags: list[str] = Field(
        default_factory=list, sa_type=MutableList.as_mutable(postgresql.ARRAY(sa.String(50)))
    )
    document: dict[str, Any] = Field(
        default_factory=dict, sa_type=MutableDict.as_mutable(postgresql.JSONB)
    )
    # GENERATED ... STORED: PostgreSQL writes it, the app never does. 'english' is required.
    search: str | None = Field(
        default=None,
        sa_column=sa.Column(
            postgresql.TSVECTOR,
            sa.Computed(
                "to_tsvector('english', coalesce(title, '') || ' ' || coalesce(body, ''))",
                persisted=True,
            ),
        ),
    )


# --8<-- [end:article]


# --8<-- [start:indexes]
ARTICLE_INDEXES = (  # after the class, where its columns exist
    # GIN over the array: serves @> and &&, not = ANY(tags).
    sa.Index("ix_article_tags", col(Article.tags), postgresql_using="gin"),
    # jsonb_path_ops: smaller and faster for @> than the default jsonb_ops; no ? / ?| / ?&.
    sa.Index(
        "ix_article_document",
        col(Article.document),
        postgresql_using="gin",
        postgresql_ops={"document": "jsonb_path_ops"},
    ),
    sa.Index("ix_article_search", col(Article.search), postgresql_using="gin"),
    # lower(title): what icontains compiles to. An expression's operator class: by its label.
    sa.Index(
        "ix_article_title_trgm",
        func.lower(col(Article.title)).label("title_lower"),
        postgresql_using="gin",
        postgresql_ops={"title_lower": "gin_trgm_ops"},
    ),
    # (document ->> 'author') = ...: GIN serves @>, not this.
    sa.Index("ix_article_author", col(Article.document)["author"].astext),
    # Partial: only published rows.
    sa.Index(
        "ix_article_published_at",
        col(Article.published_at),
        postgresql_where=col(Article.status) == "published",
    ),
)
# --8<-- [end:indexes]


# --8<-- [start:include_object]
# Made by PostgreSQL-only migrations on shared tables; no model declares them.
POSTGRES_ONLY_INDEXES = frozenset({"ix_hero_name_trgm"})


def include_object(
    object: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """env.py: context.configure(..., include_object=include_object)."""
    return not (type_ == "index" and reflected and name in POSTGRES_ONLY_INDEXES)


# --8<-- [end:include_object]


# --8<-- [start:array_queries]
async def tagged_with_all(session: AsyncSession, tags: list[str]) -> Sequence[Article]:
    """tags @> ARRAY[...]: on an ARRAY, .contains() takes a list and means "has all of these"."""
    statement = select(Article).where(col(Article.tags).contains(tags))
    return (await session.exec(statement.order_by(col(Article.title)))).all()


async def tagged_with_scan(session: AsyncSession, tag: str) -> Sequence[Article]:
    """'tag' = ANY(tags): the same rows as tagged_with_all([tag]), every row read (no index)."""
    statement = select(Article).where(tag == sa.any_(col(Article.tags)))
    return (await session.exec(statement.order_by(col(Article.title)))).all()


# --8<-- [end:array_queries]


async def tagged_with_any(session: AsyncSession, tags: list[str]) -> Sequence[Article]:
    """tags && ARRAY[...]: at least one of these. Also served by the GIN index."""
    statement = select(Article).where(col(Article.tags).op("&&")(postgresql.array(tags)))
    return (await session.exec(statement.order_by(col(Article.title)))).all()


# --8<-- [start:jsonb_queries]
async def with_document(session: AsyncSession, fragment: dict[str, Any]) -> Sequence[Article]:
    """document @> '{"meta": {"lang": "en"}}': containment at any depth (the GIN index)."""
    statement = select(Article).where(col(Article.document).contains(fragment))
    return (await session.exec(statement.order_by(col(Article.title)))).all()


async def by_author(session: AsyncSession, author: str) -> Sequence[Article]:
    """(document ->> 'author') = :author, the exact expression of ix_article_author."""
    statement = select(Article).where(col(Article.document)["author"].astext == author)
    return (await session.exec(statement.order_by(col(Article.title)))).all()


# --8<-- [end:jsonb_queries]


# --8<-- [start:search]
async def search_articles(session: AsyncSession, text: str, limit: int = 20) -> Sequence[Article]:
    """Web-search syntax ("async -sync", "a phrase", or), best first; never a syntax error."""
    query = func.websearch_to_tsquery("english", text)  # same configuration as the column
    statement = (
        select(Article)
        .where(col(Article.search).bool_op("@@")(query))
        .order_by(func.ts_rank(col(Article.search), query).desc(), col(Article.id))
        .limit(limit)
    )
    return (await session.exec(statement)).all()


# --8<-- [end:search]


# --8<-- [start:trigram]
ARTICLE_FILTERS = FilterSpec({"title": FilterField(col(Article.title), TEXT)})


async def title_contains(session: AsyncSession, text: str) -> Sequence[Article]:
    """ServiceBase's icontains: lower(title) LIKE lower('%text%'), served by
    ix_article_title_trgm for 3 characters or more."""
    condition = ARTICLE_FILTERS.compile(ARTICLE_FILTERS.condition("title", "icontains", text))
    statement = select(Article).where(condition).order_by(col(Article.title))
    return (await session.exec(statement)).all()


# --8<-- [end:trigram]


# --8<-- [start:partial]
PUBLISHED: Literal["published"] = "published"


async def latest_published(session: AsyncSession, limit: int = 10) -> Sequence[Article]:
    """literal_execute writes 'published' into the SQL: a generic plan for `status = $1`
    (any value) can't use the partial index."""
    statement = (
        select(Article)
        .where(col(Article.status) == sa.literal(PUBLISHED, literal_execute=True))
        .order_by(col(Article.published_at).desc())
        .limit(limit)
    )
    return (await session.exec(statement)).all()


# --8<-- [end:partial]
