"""Upgrades: a database written by the previous release (tests/fixtures/gridrun-v13.db, made
with the code of commit 3fce96b, schema v13: two ended tasks with output, a queued one that
asks for a label, one waiting for it) migrates on start, keeps everything, and runs on."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from gridrun.errors import Unavailable
from gridrun.store import sqlite_sql
from gridrun.store.sqlite import SqliteStore
from tests.integration.conftest import Grid

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "gridrun-v13.db"


async def test_the_previous_releases_database_migrates_and_runs_on(tmp_path: Path) -> None:
    db = tmp_path / "master" / "gridrun.db"
    db.parent.mkdir()
    shutil.copy(FIXTURE, db)
    # The fixture's tasks ended in 2023: the default retention (14 days) would have the
    # master's first collection remove them while this test reads them.
    grid = Grid(tmp=tmp_path, master_overrides={"db": db, "retain_s": 100 * 365 * 86400.0})
    await grid.start_master()
    try:
        ok, bad = await grid.task("0000prev0001"), await grid.task("0000prev0002")
        assert (ok["state"], ok["exit_code"], ok["owner"], ok["queue"]) == (
            "succeeded", 0, "ci", "default"
        )  # fmt: skip
        assert (bad["state"], bad["exit_code"], bad["owner"]) == ("failed", 3, "anonymous")
        assert (await grid.output("0000prev0001"))["stdout"]["text"] == "done\n"
        assert (await grid.task("0000prev0004"))["state"] == "waiting"
        assert (await grid.api.get("/v1/quotas")).json() == {"quotas": []}
        await grid.add_worker("wb", labels={"zone": "b"})  # the queued task's label
        assert (await grid.wait("0000prev0003"))["state"] == "succeeded"
        assert (await grid.wait("0000prev0004"))["state"] == "succeeded"  # then its waiter
    finally:
        await grid.close()
    version = sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0]
    assert version == sqlite_sql.SCHEMA_VERSION


async def test_a_database_newer_than_the_master_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "gridrun.db"
    shutil.copy(FIXTURE, db)
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {sqlite_sql.SCHEMA_VERSION + 1}")
    store = SqliteStore(db)
    with pytest.raises(Unavailable, match="newer than this gridrun"):
        await store.open()
