"""Table models. Every constraint gets its name from the metadata's naming convention."""

from sqlmodel import Field, SQLModel

# --8<-- [start:naming_convention]
# Set before any table model is defined; Alembic needs named constraints to alter or drop them.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
# --8<-- [end:naming_convention]


class Team(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    headquarters: str = Field(max_length=200)
