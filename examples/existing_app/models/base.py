"""The notes app's own metadata. In your app this is SQLModel.metadata itself."""

from sqlalchemy import MetaData
from sqlalchemy.orm import registry
from sqlmodel import SQLModel

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
notes_registry = registry(metadata=MetaData(naming_convention=NAMING_CONVENTION))


class NotesModel(SQLModel, registry=notes_registry):
    """Base of the notes app's models (yours derive from SQLModel directly)."""
