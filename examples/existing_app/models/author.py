# --8<-- [start:author]
from typing import TYPE_CHECKING

from sqlmodel import Field, Relationship

from examples.existing_app.models.base import NotesModel

if TYPE_CHECKING:  # for type checkers only: at runtime note.py imports this module
    from examples.existing_app.models.note import Note


class AuthorBase(NotesModel):
    name: str = Field(max_length=100, index=True)
    email: str = Field(max_length=255, unique=True)


class Author(AuthorBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    # A string: the class is resolved by name when the mappers are configured.
    notes: list["Note"] = Relationship(
        back_populates="author", sa_relationship_kwargs={"lazy": "raise"}
    )


class AuthorCreate(AuthorBase):
    pass


class AuthorPublic(AuthorBase):
    id: int


# --8<-- [end:author]
