"""Results store: SQLAlchemy models + alembic migrations, spooled idempotent writes, leases, reuse, views.

Import the pieces from their modules (`infersweep.store.api.ResultStore`, `infersweep.store.leases`,
`infersweep.store.reuse`, `infersweep.store.views`); this package stays import-light.
"""
