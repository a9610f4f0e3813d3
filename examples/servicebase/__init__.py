"""A generic async service layer for SQLModel. Relative imports only: copy it into any package;
the core is service, filters, pagination, errors, transactions; cursors, upserts, web are opt-in."""
