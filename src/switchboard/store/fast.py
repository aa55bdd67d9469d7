"""The turn's hottest writes on SQLite, straight to the DB-API cursor.

Measured on the database thread (bench/README.md, "the work phase"): for the per-turn INSERTs
and UPDATEs of `statements.py`, SQLAlchemy's execution context (parameter processing, result
set-up, events) costs four to five times what SQLite needs to run the statement. `execute`
compiles each statement once per set of parameter names, with SQLAlchemy's own compiler and
its own bind processors (so a datetime or a JSON value is stored exactly as SQLAlchemy stores
it), then hands the rows to `sqlite3` directly, in the transaction the caller holds (the same
connection: pysqlite begins it implicitly and SQLAlchemy commits it).

Anything it cannot prove it does the same way (another dialect, a statement that needs a
default SQLAlchemy would compute, RETURNING) goes through `connection.execute` as before.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Select
from sqlalchemy.sql.dml import Insert, UpdateBase


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    names: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]
    fixed: Mapping[str, Any]  # values the statement itself binds (`values(status="x")`)
    columns: type[tuple[Any, ...]] | None = None  # a SELECT's row (only plain columns)

    def row(self, params: Mapping[str, Any]) -> list[Any]:
        out = []
        for name, process in zip(self.names, self.processors, strict=True):
            value = params[name] if name in params else self.fixed[name]
            out.append(process(value) if process is not None else value)
        return out


# by statement object (held, so its id is never reused) and parameter names (the processors
# depend on the dialect's type only: every SQLite engine here has the same); the statements
# passed here are built once (module constants), so this stays small; past PLANS_MAX a
# statement built per call would only cost memory, so it goes the usual way instead
_PLANS: dict[tuple[Any, tuple[str, ...]], _Plan | None] = {}
PLANS_MAX = 256


def _plan(statement: UpdateBase | Select[Any], keys: tuple[str, ...],
          dialect: Any) -> _Plan | None:
    """How to run `statement` with parameters named `keys` on the cursor; None: it cannot."""
    cache_key = (statement, keys)
    if cache_key in _PLANS:
        return _PLANS[cache_key]
    if len(_PLANS) >= PLANS_MAX:
        return None
    plan = None
    if not getattr(statement, "_returning", ()):
        compiled: Any = statement.compile(dialect=dialect, column_keys=list(keys))
        names = tuple(compiled.positiontup or ())
        fixed = {name: bind.effective_value for name, bind in compiled.binds.items()
                 if not bind.required}
        defaults = getattr(compiled, "insert_prefetch", ()) or getattr(
            compiled, "update_prefetch", ())
        columns = None
        if isinstance(statement, Select):  # rows as they come, when no column needs converting
            result = compiled._result_columns
            if all(c.type._cached_result_processor(dialect, None) is None for c in result):
                columns = NamedTuple("Row", [(c.keyname, Any) for c in result])  # type: ignore[misc]
            else:
                defaults = True
        if not defaults and all(name in keys or name in fixed for name in names):
            processors = compiled._bind_processors
            plan = _Plan(compiled.string, names,
                         tuple(processors.get(name) for name in names), fixed, columns)
    _PLANS[cache_key] = plan
    return plan


def _on_pysqlite(connection: Any) -> bool:
    """A synchronous connection whose driver is the standard library's sqlite3 (the database
    thread's): the only one whose cursor this module may use."""
    return (connection.dialect.name == "sqlite"
            and isinstance(connection.connection.driver_connection, sqlite3.Connection))


def _sqlite_plan(connection: Any, statement: Any, params: Mapping[str, Any]) -> _Plan | None:
    if not _on_pysqlite(connection):
        return None
    return _plan(statement, tuple(params), connection.dialect)


def first(db: Any, statement: Select[Any], params: Mapping[str, Any]) -> Any:
    """The first row of a SELECT of plain columns (attribute access by column name), or
    None, in the caller's transaction."""
    connection = db.connection()
    plan = _sqlite_plan(connection, statement, params)
    if plan is None or plan.columns is None:
        return connection.execute(statement, params).first()
    row = connection.connection.driver_connection.execute(plan.sql, plan.row(params)).fetchone()
    return None if row is None else plan.columns(*row)


def insert_id(db: Any, statement: Insert, params: Mapping[str, Any]) -> int:
    """Insert one row into a table with an integer primary key; its id. (`statement` without
    RETURNING: on SQLite the cursor's lastrowid is that id.)"""
    connection = db.connection()
    plan = _sqlite_plan(connection, statement, params)
    if plan is None:
        table: Any = statement.table
        return int(connection.execute(statement.returning(table.c.id), params).scalar_one())
    cursor = connection.connection.driver_connection.execute(plan.sql, plan.row(params))
    return int(cursor.lastrowid)


def execute(db: Any, statement: UpdateBase,
            params: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> int:
    """Run an INSERT or UPDATE (one parameter set, or many) in the caller's transaction; the
    number of rows it changed, or -1 when the driver does not say (psycopg's executemany)."""
    connection = db.connection()
    rows = [params] if isinstance(params, Mapping) else list(params)
    if not rows:
        return 0
    plan = _sqlite_plan(connection, statement, rows[0])
    keys = rows[0].keys()
    if plan is None or any(row.keys() != keys for row in rows):
        return int(connection.execute(statement, params).rowcount)
    raw = connection.connection.driver_connection
    if len(rows) == 1:
        return int(raw.execute(plan.sql, plan.row(rows[0])).rowcount)
    return int(raw.executemany(plan.sql, [plan.row(row) for row in rows]).rowcount)
