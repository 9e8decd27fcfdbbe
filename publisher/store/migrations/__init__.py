"""Alembic migrations of the store (see docs/operations.md, "Adding a migration")."""
