"""Endpoints in both styles: converted ones use TransactionDep, the others still commit."""

from fastapi import APIRouter

from examples.existing_app.db import SessionDep, TransactionDep
from examples.existing_app.models import (
    Author,
    AuthorCreate,
    AuthorPublic,
    Note,
    NoteCreate,
    NotePublic,
)

router = APIRouter()


# --8<-- [start:tutorial_endpoint]
@router.post("/authors/", response_model=AuthorPublic)
async def create_author(author: AuthorCreate, session: SessionDep) -> Author:
    db_author = Author.model_validate(author)
    session.add(db_author)
    await session.commit()
    await session.refresh(db_author)
    return db_author


# --8<-- [end:tutorial_endpoint]


# --8<-- [start:converted_endpoint]
@router.post("/notes/", response_model=NotePublic)
async def create_note(note: NoteCreate, session: TransactionDep) -> Note:
    db_note = Note.model_validate(note)
    session.add(db_note)
    # The INSERT runs now: its errors raise here; id and the server's created_at are read back.
    await session.flush()
    return db_note  # TransactionDep commits after this, before the response is sent


# --8<-- [end:converted_endpoint]
