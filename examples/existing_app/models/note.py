from datetime import datetime
from typing import TYPE_CHECKING, Optional

from sqlmodel import Field, Relationship

from examples.app.types import UTCDateTime, utcnow
from examples.existing_app.models.base import NotesModel

if TYPE_CHECKING:
    from examples.existing_app.models.author import Author


# --8<-- [start:note]
class NoteBase(NotesModel):
    title: str = Field(max_length=200)
    body: str = Field(default="", max_length=10_000)
    author_id: int = Field(foreign_key="author.id", index=True)


class Note(NoteBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime | None = Field(  # set by the database
        default=None,
        nullable=False,
        sa_type=UTCDateTime,
        sa_column_kwargs={"server_default": utcnow()},
    )
    author: Optional["Author"] = Relationship(
        back_populates="notes", sa_relationship_kwargs={"lazy": "raise"}
    )


class NoteCreate(NoteBase):
    pass


class NotePublic(NoteBase):
    id: int
    created_at: datetime


# --8<-- [end:note]
