"""Sealing a task's `secret_env`: what a submitter hands the grid to pass to its process, and
to nobody else.

The master seals the values with its key as the task is submitted; the database, its dumps and
backups hold only the sealed token and the variables' names, and every answer of the API shows
the names alone. The master unseals them only to put them in the worker's Assign. Fernet
(AES-128-CBC with an HMAC-SHA256 over it, from `cryptography`) makes a token that cannot be
read or altered without the key.

The key is a file (`--secret-key-file`), made on first start with mode 0600. Masters that share
a PostgreSQL database must share the file too: a token sealed by one key is refused by another,
and the attempt then fails with a message that says so, instead of running without its secrets.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path

import orjson
from cryptography.fernet import Fernet, InvalidToken

from gridrun.errors import ConfigError
from gridrun.model import AttemptRef, Sealed

log = logging.getLogger("gridrun.master")


class Unsealable(Exception):
    """A sealed secret_env this master's key cannot open (another master's key, or altered)."""


class Sealer:
    def __init__(self, key: bytes) -> None:
        try:
            self._fernet = Fernet(key)
        except ValueError as exc:
            raise ConfigError(f"the secret key is not a valid key: {exc}") from None

    @classmethod
    def ephemeral(cls) -> Sealer:
        """A key kept in memory only: for a master whose store lives no longer than it."""
        return cls(Fernet.generate_key())

    @classmethod
    def from_file(cls, path: Path) -> Sealer:
        """The key in `path`, made (0600, in a directory made 0700) if there is none yet."""
        try:
            key = path.read_bytes().strip()
        except FileNotFoundError:
            key = _create_key(path)
        except OSError as exc:
            raise ConfigError(f"cannot read the secret key {path}: {exc.strerror}") from None
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning(
                "the secret key %s can be read by others (mode %o): chmod 600 it",
                path,
                stat.S_IMODE(mode),
            )
        return cls(key)

    def seal(self, values: Mapping[str, str]) -> Sealed:
        token = self._fernet.encrypt(orjson.dumps(dict(values))).decode("ascii")
        return Sealed(names=tuple(sorted(values)), token=token)

    def ticket(self, ref: AttemptRef, worker_id: str) -> str:
        """A files ticket (gridrun.master.core.files): it names one attempt and the worker
        it was sent to, and only a master with this key makes or reads one."""
        return self._fernet.encrypt(orjson.dumps([ref.task_id, ref.attempt, worker_id])).decode()

    def ticket_holder(self, ticket: str) -> tuple[AttemptRef, str] | None:
        """The attempt and worker a ticket names (None: not one of this key's)."""
        try:
            task_id, attempt, worker_id = orjson.loads(self._fernet.decrypt(ticket.encode()))
        except (InvalidToken, ValueError, TypeError):
            return None
        if not (
            isinstance(task_id, str) and isinstance(attempt, int) and isinstance(worker_id, str)
        ):
            return None
        return AttemptRef(task_id, attempt), worker_id

    def unseal(self, sealed: Sealed) -> dict[str, str]:
        try:
            values = orjson.loads(self._fernet.decrypt(sealed.token.encode("ascii")))
        except (InvalidToken, ValueError):
            raise Unsealable(
                "its secret_env was sealed with another key than this master's"
                " (--secret-key-file): every master of one database needs the same key file"
            ) from None
        if not isinstance(values, dict):
            raise Unsealable("its sealed secret_env does not hold variables")
        return {str(k): str(v) for k, v in values.items()}


def _create_key(path: Path) -> bytes:
    key = Fernet.generate_key()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another master made it first
        return path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"cannot create the secret key {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as out:
        out.write(key + b"\n")
        out.flush()
        os.fsync(out.fileno())
    log.info("made a new secret key in %s (keep it: sealed secrets need it)", path)
    return key
