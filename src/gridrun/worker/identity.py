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
SECRET_FILE = "identity-secret"  # what the master issued this id on its first join


class Identity:
    """Holds the data dir's lock for the life of the process; `id` never changes."""

    def __init__(self, data_dir: Path, name: str | None = None) -> None:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if data_dir.stat().st_uid == os.geteuid():
            data_dir.chmod(0o700)  # its outbox, secret and tasks' output are the worker's own
        self._dir = data_dir
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

    @property
    def secret(self) -> str:
        """The secret this id is bound to ("" before the first join)."""
        try:
            return (self._dir / SECRET_FILE).read_text().strip()
        except FileNotFoundError:
            return ""

    def keep_secret(self, secret: str) -> None:
        """Keep the secret the master issued (0600, written whole and synced before use)."""
        path = self._dir / SECRET_FILE
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secret + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)

    def release(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
