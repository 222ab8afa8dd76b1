"""Logging for the master and the worker: text for people, or JSON lines for log pipelines.

Ids travel with the code that handles them: `bind()` attaches fields (worker_id, task_id,
attempt) to every record logged later in the same asyncio task (and the tasks it starts);
`fields()` does so for one block. Records may also carry them via `extra=`.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from gridrun.text import visible

FORMATS = ("text", "json")
ID_FIELDS = ("worker_id", "task_id", "attempt")
_bound: ContextVar[dict[str, Any]] = ContextVar("gridrun_log_fields", default={})  # noqa: B039


def bind(**values: Any) -> None:
    """Attach fields to every record logged from now on in this asyncio task."""
    _bound.set({**_bound.get(), **values})


@contextmanager
def fields(**values: Any) -> Iterator[None]:
    token = _bound.set({**_bound.get(), **values})
    try:
        yield
    finally:
        _bound.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the bound ids, and the error if any.
    Audit records (already JSON) are nested under `audit` rather than quoted."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        message = record.getMessage()
        if record.name == "gridrun.audit":
            try:
                event["audit"] = json.loads(message)
            except ValueError:
                event["msg"] = message
        else:
            event["msg"] = message
        event.update(_bound.get())
        for name in ID_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                event[name] = value
        if record.exc_info:
            event["error"] = self.formatException(record.exc_info)
        return json.dumps(event, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """One line per record for people: time, level, logger, message. The message is escaped
    (`visible`): it carries names, labels and errors that clients and workers wrote, and a
    newline or an escape sequence in them must not forge a record or act on a terminal. A
    traceback keeps its lines, each indented under its record, its characters escaped."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        record.message = visible(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:  # noqa: N802
        lines = super().formatException(ei).split("\n")
        return "\n".join("    " + visible(line) for line in lines)

    def formatStack(self, stack_info: str) -> str:  # noqa: N802
        return "\n".join("    " + visible(line) for line in stack_info.split("\n"))


def setup(level: str, fmt: str = "text") -> None:
    if fmt not in FORMATS:
        raise ValueError(f"--log-format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
