"""Every model module, imported once: the mappers resolve "Note" and "Author" by name, so both
classes must be defined before anything configures them (first query, configure_mappers(),
create_all, Alembic's autogenerate)."""

# --8<-- [start:import_every_model]
from examples.existing_app.models.author import Author, AuthorCreate, AuthorPublic
from examples.existing_app.models.note import Note, NoteCreate, NotePublic

__all__ = ["Author", "AuthorCreate", "AuthorPublic", "Note", "NoteCreate", "NotePublic"]
# --8<-- [end:import_every_model]
