"""The database work one task costs the master: N `true` tasks (batched submit) on a grid of
2 workers x 1 slot, the master run through bench/sqltrace.py, and what its store did over the
run divided by N: the statements its steps sent (by text, with the rows a batch carried), and
on SQLite every statement the library executed (transaction control, savepoints and trigger
firings too) or on PostgreSQL every round trip (BEGIN, COMMIT, NOTIFY too).
With `--against DIR` (another checkout's src directory), the same run on that code too.
Usage: python bench/statements.py [--tasks N] [--db URL] [--against SRC] [--top K]
"""

from __future__ import annotations

import argparse
import collections
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

from grid import Grid, database, wait_for
from throughput import gridrun_rate

HERE = Path(__file__).resolve().parent
Counts = dict[str, collections.Counter[str]]


def snapshot(grid: Grid, out: Path) -> Counts:
    """What the master has counted so far (it writes `out` on SIGUSR1)."""
    out.unlink(missing_ok=True)
    grid.masters[0].send_signal(signal.SIGUSR1)
    wait_for(lambda: out.exists() and out.stat().st_size > 0, 10, "the master's counts")
    time.sleep(0.05)  # (written in one go; let it finish)
    return {k: collections.Counter(v) for k, v in json.loads(out.read_text()).items()}


def measure(n: int, db: str | None, src: str | None) -> Counts:
    with (
        tempfile.TemporaryDirectory(prefix="gridrun-bench-") as tmp,
        database(db, Path(tmp)) as url,
    ):
        out = Path(tmp) / "counts.json"
        grid = Grid(Path(tmp), url, 1, worker_args=())
        grid.master_command = (sys.executable, str(HERE / "sqltrace.py"), str(out))
        if src is not None:
            grid.env["PYTHONPATH"] = src
        try:
            grid.start_masters()
            grid.start_workers(2, 1)
            gridrun_rate(grid, ["true"], 200)  # warm up
            before = snapshot(grid, out)
            gridrun_rate(grid, ["true"], n)
            after = snapshot(grid, out)
        finally:
            grid.stop()
    return {kind: after[kind] - before.get(kind, collections.Counter()) for kind in after}


def show(label: str, counts: Counts, n: int, top: int) -> None:
    steps, rows = counts["steps"], counts["rows"]
    library = counts["postgres"] or counts["sqlite"]
    what = "PostgreSQL round trips" if counts["postgres"] else "SQLite statements executed"
    print(
        f"{label}: {sum(steps.values()) / n:.2f} store statements a task"
        f" ({sum(rows.values()) / n:.2f} rows in batches); {what} {sum(library.values()) / n:.2f}"
    )
    for query, count in steps.most_common(top):
        carried = f" [{rows[query] / n:.2f} rows]" if rows[query] else ""
        print(f"  {count / n:6.2f}{carried} {query}")
    print(f"  {what}:")
    for query, count in library.most_common(top):
        print(f"  {count / n:6.2f} {query}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--db", help="a PostgreSQL URL (default: SQLite)")
    parser.add_argument("--against", help="another checkout's src directory, measured too")
    parser.add_argument("--top", type=int, default=12, help="statements listed of each kind")
    args = parser.parse_args()
    print(f"{args.tasks} x 'true', 2 workers x 1; {'PostgreSQL' if args.db else 'SQLite'}")
    now = measure(args.tasks, args.db, None)
    if args.against:
        show("before", measure(args.tasks, args.db, args.against), args.tasks, args.top)
    show("now", now, args.tasks, args.top)


if __name__ == "__main__":
    main()
