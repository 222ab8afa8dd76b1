"""Following a task from the CLI (`run`, `logs -f`): its output as it comes, across a master
restart, and a word on stderr while it waits to start."""

from __future__ import annotations

import base64
import contextlib
import sys
import threading
import time
from datetime import datetime

from gridrun.cli.common import err, say
from gridrun.client import Client, TaskDict
from gridrun.errors import ClientError, GridrunError
from gridrun.model import TaskState

FOLLOW_PATIENCE_S = 300.0  # how long `run` and `logs -f` wait for a master that went away


WAIT_POLL_S = 1.0


class WhyItWaits:
    """While `run` follows a task that has not started: say on stderr why it waits (no live
    worker has what it asks, a quota, a concurrency key, the tasks it runs after), once, and
    again when the reason changes. A thread of its own with a client of its own, so the
    output is followed meanwhile as ever; it reads the task once a second until it starts."""

    def __init__(self, url: str, task_id: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(url, task_id), daemon=True)
        self._thread.start()

    def _watch(self, url: str, task_id: str) -> None:
        said: str | None = None
        with contextlib.suppress(GridrunError), Client(url) as client:
            while not self._stop.wait(WAIT_POLL_S):
                task = client.get(task_id)
                if task["state"] not in (TaskState.QUEUED, TaskState.WAITING):
                    return
                why = task["unschedulable"]
                if task["state"] == TaskState.WAITING:
                    why = (
                        "it runs after "
                        + ", ".join(task["after"])
                        + ", which have not succeeded yet"
                    )
                if why and why != said and not self._stop.is_set():
                    say(f"gridrun: task {task_id} is {task['state']}: {why}")
                    said = why

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


UNKNOWN_TIME = b"-".ljust(25)  # the stamp of a line whose time the worker did not say


def stamp(at_ms: int | None) -> bytes:
    """A line's time as `logs --timestamps` prints it: UTC, to the millisecond."""
    if at_ms is None:
        return UNKNOWN_TIME
    seconds, ms = divmod(at_ms, 1000)
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z ").encode()


def epoch_ms(iso: str | None) -> int | None:
    """An API time (ISO 8601) as epoch ms."""
    if iso is None:
        return None
    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


class Printer:
    """Writes a task's output as it wrote it: stdout's bytes to stdout, stderr's to stderr,
    exactly; with `stamps`, each line begun with when the worker read it."""

    def __init__(self, stamps: bool = False) -> None:
        self.stamps = stamps
        self._outs = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}
        self._line_start = {"stdout": True, "stderr": True}

    def write(self, stream: str, data: bytes, at_ms: int | None = None) -> None:
        if self.stamps and data:
            lines = data.split(b"\n")
            pieces = [line + b"\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
            stamped = bytearray()
            for piece in pieces:
                if self._line_start[stream]:
                    stamped += stamp(at_ms)
                stamped += piece
                self._line_start[stream] = piece.endswith(b"\n")
            data = bytes(stamped)
        self._outs[stream].write(data)
        self._outs[stream].flush()


def follow_output(
    client: Client,
    task_id: str,
    start: dict[str, int] | None = None,
    printer: Printer | None = None,
) -> TaskDict:
    """Print the task's output as it comes (stdout to stdout, stderr to stderr, in the order
    written) until it ends, from `start` (bytes of each stream already shown); return the
    ended task. A stream cut off (a master restart) is resumed where it stopped; after
    FOLLOW_PATIENCE_S without a master, give up with a message (the task runs on)."""
    printer = printer or Printer()
    shown = dict(start or {"stdout": 0, "stderr": 0})  # bytes shown or reported dropped
    delay, lost_since = 0.2, None
    while True:
        try:
            for event, data in client.follow(
                task_id, stdout_from=shown["stdout"], stderr_from=shown["stderr"], raw=True
            ):
                lost_since, delay = None, 0.2
                if event == "output":
                    printer.write(data["stream"], base64.b64decode(data["data"]), data.get("at"))
                    shown[data["stream"]] = data["offset"] + data["bytes"]
                elif event == "gap":
                    shown[data["stream"]] += data["dropped"]
                    err.print(
                        f"gridrun: {data['dropped']} bytes of {data['stream']} were not kept"
                        " (the master's --output-cap)",
                        highlight=False,
                    )
                elif event == "end":
                    return client.get(task_id)
        except ClientError:
            if lost_since is None:
                lost_since = time.monotonic()
            elif time.monotonic() - lost_since > FOLLOW_PATIENCE_S:
                raise ClientError(
                    f"lost the master for {FOLLOW_PATIENCE_S:.0f}s; task {task_id} goes on:"
                    f" follow it with `gridrun logs -f {task_id}`"
                ) from None
        time.sleep(delay)
        delay = min(delay * 2, 3.0)
