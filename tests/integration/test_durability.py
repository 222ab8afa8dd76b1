"""What "accepted" means: a master answers a submission only after the task is committed, and
by default every commit is fsynced (SQLite synchronous=FULL), so an answered task survives a
crash of the master and of the machine."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import httpx

from gridrun.master.app import Master, MasterConfig
from tests.integration.conftest import Grid


async def test_a_master_fsyncs_every_commit_unless_told_otherwise(tmp_path: Path) -> None:
    assert MasterConfig().db_sync == "full"
    master = Master(MasterConfig(db=tmp_path / "gridrun.db", http_port=0, grpc_port=0))
    await master.start()
    try:
        db = master.store._db  # type: ignore[attr-defined]
        mode = await db.run(lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0])
        assert mode == 2  # FULL (NORMAL is 1: a power cut may lose the last commits)
    finally:
        await master.close()


def committed(db: Path, task_ids: list[str]) -> set[str]:
    """The tasks another connection sees: only what has been committed."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        marks = ",".join("?" * len(task_ids))
        rows = conn.execute(f"SELECT id FROM tasks WHERE id IN ({marks})", task_ids)
        return {row[0] for row in rows}
    finally:
        conn.close()


async def test_a_submission_is_answered_only_after_its_commit(grid: Grid) -> None:
    """Each answer is checked the moment it arrives, from a connection of our own: a master
    that answered 201 before its (group) commit would be caught with a task nobody can see."""
    db = grid.tmp / "master" / "gridrun.db"
    unseen: list[str] = []

    async def submit_and_look(http: httpx.AsyncClient, n: int) -> None:
        body = {"tasks": [{"cmd": f"echo {n}-{i}", "labels": {"pool": "none"}} for i in range(5)]}
        response = await http.post("/v1/tasks", json=body)
        assert response.status_code == 201, response.text
        ids = [task["id"] for task in response.json()["tasks"]]
        unseen.extend(set(ids) - committed(db, ids))  # at once: no await in between

    for _ in range(3):  # concurrent submissions share group commits
        await asyncio.gather(*(submit_and_look(grid.api, n) for n in range(20)))
    assert not unseen, f"{len(unseen)} tasks answered 201 before they were committed"
