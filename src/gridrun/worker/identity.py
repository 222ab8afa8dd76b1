"""A worker's stable identity: its id, kept in its data dir, and a lock so two worker processes
never share one data dir (and so one id)."""

from __future__ import annotations

import fcntl
import os
import secrets
import socket
from pathlib import Path

from gridrun.errors import ConfigError

ID_FILE = "worker-id"
LOCK_FILE = "lock"


class Identity:
    """Holds the data dir's lock for the life of the process; `id` never changes."""

    def __init__(self, data_dir: Path, name: str | None = None) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise ConfigError(
                f"{data_dir} is in use by another gridrun worker; give each worker its own"
                " --data-dir"
            ) from None
        path = data_dir / ID_FILE
        if path.exists():
            self.id = path.read_text().strip()
        else:
            self.id = name or f"{socket.gethostname()}-{secrets.token_hex(3)}"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(self.id + "\n")
            os.replace(tmp, path)
        if not self.id:
            raise ConfigError(f"{path} is empty; delete it to get a new worker id")

    def release(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
