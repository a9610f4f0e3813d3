"""A generic async service layer for SQLModel. Imports nothing from the app: copy it whole."""
