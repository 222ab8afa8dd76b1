"""Results the master has not acknowledged yet, kept on disk until it has.

One file per attempt, written atomically (temp file, rename), removed on Ack. A worker that
restarts (SIGKILL included), or reconnects to a restarted master, re-sends every file here. No
fsync: a power loss of the worker's machine may lose a result, which the master then reports as
`lost` rather than inventing one.
"""

from __future__ import annotations

import os
from pathlib import Path

from gridrun.model import AttemptRef


class Outbox:
    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)
        for stale in self._dir.glob("*.tmp"):
            stale.unlink()

    def _path(self, ref: AttemptRef) -> Path:
        return self._dir / f"{ref.task_id}.{ref.attempt}.result"

    def put(self, ref: AttemptRef, payload: bytes) -> None:
        path = self._path(ref)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)

    def remove(self, ref: AttemptRef) -> None:
        self._path(ref).unlink(missing_ok=True)

    def __contains__(self, ref: AttemptRef) -> bool:
        return self._path(ref).exists()

    def pending(self) -> list[tuple[AttemptRef, bytes]]:
        items = []
        for path in sorted(self._dir.glob("*.result")):
            task_id, _, attempt = path.stem.rpartition(".")
            items.append((AttemptRef(task_id, int(attempt)), path.read_bytes()))
        return items
