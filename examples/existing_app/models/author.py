from typing import TYPE_CHECKING

from sqlmodel import Field, Relationship

from examples.existing_app.models.base import NotesModel

# --8<-- [start:author]
if TYPE_CHECKING:  # for type checkers only: no import cycle at runtime
    from examples.existing_app.models.note import Note


class AuthorBase(NotesModel):
    name: str = Field(max_length=100, index=True)
    email: str = Field(max_length=255, unique=True)


class Author(AuthorBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    # A string: resolved by name when the mappers are configured.
    notes: list["Note"] = Relationship(
        back_populates="author", sa_relationship_kwargs={"lazy": "raise"}
    )


# --8<-- [end:author]


class AuthorCreate(AuthorBase):
    pass


class AuthorPublic(AuthorBase):
    id: int
