"""A small FastAPI + async SQLModel service in the tutorial style (correct code)."""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from sqlalchemy import DateTime
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import selectinload
from sqlmodel import Field, Relationship, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

engine = create_async_engine("sqlite+aiosqlite:///./notes.db")
session_factory = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


class Folder(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=200)
    notes: list["Note"] = Relationship(back_populates="folder", sa_relationship_kwargs={"lazy": "raise"})


class Note(SQLModel, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    body: str = Field(max_length=5000)
    created_at: datetime = Field(
        default_factory=lambda: datetime.now(UTC), sa_type=DateTime(timezone=True)
    )
    folder_id: int | None = Field(default=None, foreign_key="folder.id")
    folder: Folder | None = Relationship(back_populates="notes", sa_relationship_kwargs={"lazy": "raise"})


class NoteCreate(SQLModel):
    body: str = Field(max_length=5000)
    folder_id: int | None = None


async def get_session() -> AsyncIterator[AsyncSession]:
    async with session_factory() as session, session.begin():
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    yield
    await engine.dispose()


app = FastAPI(lifespan=lifespan)


@app.post("/notes")
async def create_note(data: NoteCreate, session: SessionDep) -> Note:
    note = Note.model_validate(data)
    session.add(note)
    await session.flush()
    return note


@app.get("/folders/{folder_id}")
async def read_folder(folder_id: int, session: SessionDep) -> Folder:
    statement = select(Folder).where(Folder.id == folder_id).options(selectinload(Folder.notes))
    folder = (await session.exec(statement)).first()
    if folder is None:
        raise HTTPException(404, "folder not found")
    return folder


@app.get("/notes")
async def search_notes(term: str, session: SessionDep) -> list[Note]:
    statement = select(Note).where(col(Note.body).contains(term, autoescape=True)).limit(50)
    return list((await session.exec(statement)).all())
