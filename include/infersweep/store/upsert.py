"""Idempotent writes: `INSERT … ON CONFLICT (natural key) DO UPDATE`, the same call on Postgres and SQLite."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase

from infersweep.store.models import utcnow

#: Columns an upsert never overwrites on conflict (the row's identity and creation time).
_KEEP = {"id", "created_at"}


def _table(model: type[DeclarativeBase] | Table) -> Table:
    table = model if isinstance(model, Table) else model.__table__
    assert isinstance(table, Table)
    return table


def _insert(conn: Connection, table: Table) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"upsert is not implemented for dialect {conn.dialect.name!r}")


_STATEMENTS: dict[tuple[Any, ...], Any] = {}


def _statement(conn: Connection, table: Table, cols: frozenset[str], key: tuple[str, ...], update: frozenset[str],
               do_nothing: bool) -> Any:
    """Build (once) the upsert for this column set: values are bound at execute time, so SQLAlchemy's
    compiled-statement cache is hit and per-row cost stays small."""
    cache_key = (conn.dialect.name, table.name, cols, key, update, do_nothing)
    stmt = _STATEMENTS.get(cache_key)
    if stmt is None:
        base = _insert(conn, table)
        if do_nothing:
            stmt = base.on_conflict_do_nothing(index_elements=list(key))
        else:
            excluded = base.excluded
            stmt = base.on_conflict_do_update(index_elements=list(key),
                                              set_={c: excluded[c] for c in sorted(update)})
        if "id" in table.c:
            stmt = stmt.returning(table.c.id)
        _STATEMENTS[cache_key] = stmt
    return stmt


def upsert(
    conn: Connection,
    model: type[DeclarativeBase] | Table,
    values: Mapping[str, Any],
    *,
    key: Sequence[str],
    update: Iterable[str] | None = None,
    do_nothing: bool = False,
) -> int | None:
    """Insert `values` or update the row with the same `key`; returns the row's `id` (None if it has none).

    `update` limits which columns a conflict overwrites (default: every given column but the key).
    `do_nothing=True` keeps an existing row untouched (used when copying results: measured data wins).
    Values are always bound parameters.
    """
    table = _table(model)
    row = dict(values)
    if "updated_at" in table.c and "updated_at" not in row:
        row["updated_at"] = utcnow()
    if "created_at" in table.c and "created_at" not in row:
        row["created_at"] = row.get("updated_at", utcnow())
    cols = set(update) if update is not None else set(row) - set(key) - _KEEP
    cols &= set(row)
    if update is not None and "updated_at" in row:
        cols.add("updated_at")
    if not cols:  # nothing to change: a no-op update still lets RETURNING see the row
        cols = {key[0]}
    stmt = _statement(conn, table, frozenset(row), tuple(key), frozenset(cols), do_nothing)
    if "id" not in table.c:
        conn.execute(stmt, row)
        return None
    result = conn.execute(stmt, row).scalar_one_or_none()
    if result is None:  # do_nothing hit an existing row: look its id up by key
        where = [table.c[k] == row[k] for k in key]
        result = conn.execute(table.select().with_only_columns(table.c.id).where(*where)).scalar_one()
    return int(result)


def upsert_many(
    conn: Connection,
    model: type[DeclarativeBase] | Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    key: Sequence[str],
) -> int:
    """Bulk upsert (one executemany); returns the number of rows sent. For eval samples and copies."""
    if not rows:
        return 0
    table = _table(model)
    stmt = _insert(conn, table)
    cols = set(rows[0]) - set(key) - _KEEP
    if cols:
        stmt = stmt.on_conflict_do_update(
            index_elements=list(key), set_={c: stmt.excluded[c] for c in sorted(cols)}
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(key))
    conn.execute(stmt, [dict(r) for r in rows])
    return len(rows)
