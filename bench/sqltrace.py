"""Run a gridrun command (a master) and count the database work its store does, for
bench/statements.py: `python bench/sqltrace.py OUT master --db ...`. On SIGUSR1 it writes what
it has counted so far to OUT (JSON), so a bench takes the difference over a run.

Counted: each statement the store's steps send (SqliteTx / PgTx: one, all, run, many, with the
rows a `many` carries), by its text; on SQLite, every statement the library executes (the
trace callback: transaction control and savepoints too, and a trigger's firing, which SQLite
reports as its statement again); on PostgreSQL, every round trip asyncpg makes (BEGIN, COMMIT
and NOTIFY too).
"""

from __future__ import annotations

import collections
import json
import re
import signal
import sqlite3
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

STEP_VERBS = ("one", "all", "run", "many", "insert_tasks")
ROUND_TRIPS = ("execute", "fetch", "fetchrow", "fetchval", "executemany")

steps: collections.Counter[str] = collections.Counter()
rows: collections.Counter[str] = collections.Counter()
executed: collections.Counter[str] = collections.Counter()
round_trips: collections.Counter[str] = collections.Counter()


def shape(query: str, width: int = 110) -> str:
    """A statement with its literals taken out, on one line, cut to `width`."""
    text = re.sub(r"\s+", " ", query.strip())
    text = re.sub(r"'(?:[^']|'')*'", "?", text)
    return re.sub(r"\b\d+(?:\.\d+)?\b", "N", text)[:width]


def count_steps(tx_class: type) -> None:
    for verb in STEP_VERBS:
        original: Callable[..., Any] = getattr(tx_class, verb)

        def counted(self: object, *args: Any, _do: Any = original, _verb: str = verb) -> Any:
            if _verb == "insert_tasks":  # (its only argument: the rows)
                key, carried = "INSERT INTO tasks (a batch)", len(args[0])
            else:
                key, carried = shape(str(args[0])), len(args[1]) if _verb == "many" else 0
            if _verb == "many" and not carried:
                return _do(self, *args)  # (no rows: no statement is sent)
            steps[key] += 1
            rows[key] += carried
            return _do(self, *args)

        setattr(tx_class, verb, counted)


def count_round_trips() -> None:
    import asyncpg

    for verb in ROUND_TRIPS:
        original: Callable[..., Any] = getattr(asyncpg.Connection, verb)

        def counted(self: object, query: str, *args: Any, _do: Any = original, **kw: Any) -> Any:
            round_trips[shape(query, 60)] += 1
            return _do(self, query, *args, **kw)

        setattr(asyncpg.Connection, verb, counted)


def trace_sqlite() -> None:
    connect = sqlite3.connect

    def traced(*args: Any, **kw: Any) -> sqlite3.Connection:
        conn = connect(*args, **kw)
        conn.set_trace_callback(lambda query: executed.update([shape(query)]))
        return conn

    sqlite3.connect = traced  # type: ignore[assignment]


def main() -> None:
    out, argv = sys.argv[1], sys.argv[2:]

    def dump(_signum: int, _frame: FrameType | None) -> None:
        with open(out, "w") as f:
            json.dump(
                {"steps": steps, "rows": rows, "sqlite": executed, "postgres": round_trips}, f
            )

    signal.signal(signal.SIGUSR1, dump)
    trace_sqlite()
    from gridrun.store.postgres import PgTx
    from gridrun.store.sqlite import SqliteTx

    count_steps(SqliteTx)
    count_steps(PgTx)
    count_round_trips()
    from gridrun.cli.main import main as gridrun

    sys.argv = ["gridrun", *argv]
    gridrun()


if __name__ == "__main__":
    main()
