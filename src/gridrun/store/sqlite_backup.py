"""Backups of a SQLite store, and the lock that says a master is using one.

A master holds an exclusive lock on `<db>.lock` while it runs (a second master on the same
file is refused: SQLite serves one). `backup` copies a live database with SQLite's online
backup API (a consistent snapshot; the master goes on); `restore` puts a backup in place and
refuses while a master holds the lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from pathlib import Path

from gridrun.errors import ConfigError, Unavailable
from gridrun.store import sqlite_sql as sql


def lock_path(db: Path) -> Path:
    return db.with_name(db.name + ".lock")


def hold(db: Path) -> int:
    """Take the database's lock for this process (its fd; closing it lets go)."""
    fd = os.open(lock_path(db), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise Unavailable(
            f"{db} is in use by a running master (pid {holder}): one SQLite file serves one"
            " master (stop it first; for several masters use PostgreSQL)"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def backup(db: Path, to: Path) -> int:
    """Copy the database at `db` (in use or not) to the new file `to`; return its size."""
    if not db.is_file():
        raise ConfigError(f"{db} does not exist")
    if to.exists():
        raise ConfigError(f"{to} exists: give a new file")
    try:  # the backup holds every task's spec and output: the owner's alone, from the start
        os.close(os.open(to, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as exc:
        raise ConfigError(f"cannot create {to}: {exc.strerror}") from None
    source = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        target = sqlite3.connect(to)
        try:
            source.backup(target)  # all pages, under one read snapshot: consistent
        finally:
            target.close()
    except sqlite3.Error as exc:
        with contextlib.suppress(OSError):
            to.unlink()
        raise ConfigError(f"cannot back up {db}: {exc}") from None
    finally:
        source.close()
    check(to)
    return to.stat().st_size


def check(path: Path) -> int:
    """Raise unless `path` is a sound gridrun database this version can open; its schema
    version."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            (ok,) = conn.execute("PRAGMA quick_check").fetchone()
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise ConfigError(f"{path} is not a SQLite database: {exc}") from None
    if ok != "ok" or "tasks" not in tables:
        raise ConfigError(f"{path} is not a sound gridrun database ({ok})")
    if version > sql.SCHEMA_VERSION:
        raise ConfigError(
            f"{path} has schema version {version}, newer than this gridrun"
            f" ({sql.SCHEMA_VERSION}); upgrade gridrun"
        )
    return int(version)


def restore(source: Path, db: Path) -> None:
    """Replace the database at `db` with the backup `source`; refused while a master runs."""
    check(source)
    db.parent.mkdir(parents=True, exist_ok=True)
    fd = hold(db)  # (no master may start meanwhile either)
    try:
        backup_conn = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        target = sqlite3.connect(db)
        try:
            backup_conn.backup(target)
            target.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            target.close()
            backup_conn.close()
    finally:
        os.close(fd)
