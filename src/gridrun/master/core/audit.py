"""The audit trail: one JSON line per security-relevant event — who (token name and role), what
(submit, cancel, drain, a token used or refused, a worker joining or refused) and from where.

Lines go to the `gridrun.audit` logger, and with `--audit-log FILE` to that file as well
(appended, 0600, flushed per line), so they survive the master and can be shipped as they are.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import IO, Any

from gridrun.auth import Principal
from gridrun.clock import Clock

log = logging.getLogger("gridrun.audit")

MAX_FIELD = 200  # characters of a command kept in a line; the task itself has the whole of it


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_FIELD:
        return value[:MAX_FIELD] + "…"
    return value


class Audit:
    def __init__(self, path: Path | None, clock: Clock) -> None:
        self._clock = clock
        self._file: IO[str] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._file = os.fdopen(fd, "a", encoding="utf-8", buffering=1)

    def record(self, event: str, who: Principal | None, peer: str, **details: Any) -> None:
        line: dict[str, Any] = {
            "ts": self._clock.now_ms(),
            "event": event,
            "who": who.name if who else None,
            "role": str(who.role) if who else None,
            "from": peer,
        }
        line.update({key: _short(value) for key, value in details.items()})
        text = json.dumps(line, ensure_ascii=False, separators=(",", ":"))
        log.info("%s", text)
        if self._file is not None:
            self._file.write(text + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
