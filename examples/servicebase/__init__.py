"""A generic async service layer for SQLModel. Relative imports only: copy it into any package.

Core: service, filters, pagination, errors, transactions (+ web for FastAPI). Opt-in, each a
mixin or helper that adds to the core without edits: soft_delete, versioning, cursors, upserts,
query_params.
"""
