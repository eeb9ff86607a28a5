"""Alembic migrations of the results DB (packaged; run by `infersweep db upgrade`)."""
