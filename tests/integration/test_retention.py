"""Retention on a running grid: the master deletes ended tasks after --retain by itself (and
failures after --retain-failed), in small batches; `POST /v1/gc` (`gridrun gc`) does it by
hand; an SQLite database stays within bounds over a simulated week of work."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from gridrun.model import AttemptRef, Outcome, Report
from gridrun.spec import make_spec
from gridrun.store import NewTask
from gridrun.store.sqlite import SqliteStore
from tests.helpers import claim, eventually_async
from tests.integration.conftest import Grid


async def test_the_master_deletes_ended_tasks_after_their_time(tmp_path: Path) -> None:
    grid = Grid(tmp=tmp_path, master_overrides={"retain_s": 1.0, "retain_failed_s": 600.0})
    await grid.start_master()
    try:
        await grid.add_worker("w1")
        ok = await grid.submit(cmd="true")
        bad = await grid.submit(cmd="exit 3", shell=True)
        running = await grid.submit(cmd="sleep 30", shell=True)
        for task in (ok, bad):
            await grid.wait(task["id"])
        await grid.wait_state(running["id"], "running")

        async def gone() -> bool:
            return (await grid.api.get(f"/v1/tasks/{ok['id']}")).status_code == 404

        assert await eventually_async(gone, 15)
        assert (await grid.task(bad["id"]))["state"] == "failed"  # kept 600 s
        assert (await grid.task(running["id"]))["state"] == "running"
        metrics = (await grid.api.get("/metrics")).text
        assert "gridrun_tasks_collected_total 1.0" in metrics
    finally:
        await grid.close()


async def test_gc_by_hand_counts_then_deletes_and_refuses_what_is_not_ended(grid: Grid) -> None:
    await grid.add_worker("w1")
    done = [await grid.submit(cmd="true") for _ in range(3)]
    for task in done:
        await grid.wait(task["id"])
    queued = await grid.submit(cmd="true", on="zone=nowhere")
    dry = await grid.api.post("/v1/gc", json={"older_than_s": 0, "dry_run": True})
    assert dry.json() == {"deleted": 3, "dry_run": True}
    assert (await grid.task(done[0]["id"]))["state"] == "succeeded"
    young = await grid.api.post("/v1/gc", json={"older_than_s": 3600})
    assert young.json()["deleted"] == 0
    wrong = await grid.api.post("/v1/gc", json={"older_than_s": 0, "states": ["queued"]})
    assert wrong.status_code == 422
    assert "only ended tasks" in wrong.json()["detail"]
    assert await grid.client.gc(0, ["failed"]) == 0
    assert await grid.client.gc(0) == 3
    assert (await grid.api.get(f"/v1/tasks/{done[0]['id']}")).status_code == 404
    assert (await grid.task(queued["id"]))["state"] == "queued"


@pytest.mark.slow
async def test_a_week_of_work_keeps_the_database_within_bounds(tmp_path: Path) -> None:
    """7 simulated days of 5,000 tasks each (1 KiB of output apiece), retention 1 day: the
    file after day 7 is within 10% of its size after day 2 (once a day is deleted per day)."""
    db = tmp_path / "gridrun.db"
    store = SqliteStore(db, synchronous="normal", origin="m1")
    await store.open()
    day_ms = 86_400_000
    sizes = []
    try:
        await store.workers.upsert_worker(_worker("w1"), lease_until=10**15)
        for day in range(1, 8):
            now = day * day_ms
            ids = [f"d{day}-{i}" for i in range(5_000)]
            await store.tasks.add_tasks([NewTask(i, make_spec(cmd="true")) for i in ids], now=now)
            for start in range(0, len(ids), 1000):
                chunk = ids[start : start + 1000]
                await claim(store, [(i, "w1") for i in chunk], now=now)
                for task_id in chunk:
                    ref = AttemptRef(task_id, 1)
                    await store.attempts.append_output(ref, "w1", [(1, 0, b"x" * 1024)], cap=4096)
                    await store.attempts.record_finish(
                        ref, "w1", Report(Outcome.EXITED, exit_code=0), now
                    )
            while await store.retention.collect(now - day_ms + 1, _ended()):
                pass
            await store.retention.reclaim()
            sizes.append(os.path.getsize(db) + _wal(db))
    finally:
        await store.close()
    assert sizes[6] <= sizes[1] * 1.10, [s // 1024 for s in sizes]


def _ended() -> list:  # type: ignore[type-arg]
    from gridrun.model import TERMINAL

    return sorted(TERMINAL)


def _wal(db: Path) -> int:
    wal = db.with_name(db.name + "-wal")
    return os.path.getsize(wal) if wal.exists() else 0


def _worker(worker_id: str):  # type: ignore[no-untyped-def]
    from gridrun.model import WorkerInfo, WorkerState

    return WorkerInfo(
        id=worker_id, hostname="h", labels={}, slots=10_000, state=WorkerState.ONLINE,
        version="t", legacy=False, connected_at=1, last_seen=1,
    )  # fmt: skip


async def test_storage_figures_in_metrics(grid: Grid) -> None:
    await grid.add_worker("w1")
    tasks = [await grid.submit(cmd=f"printf %0{n}d 0", shell=True) for n in (100, 200, 300)]
    for task in tasks:
        await grid.wait(task["id"])
    text = (await grid.api.get("/metrics")).text

    def value(name: str) -> float:
        match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
        assert match is not None, name
        return float(match.group(1))

    assert value("gridrun_output_bytes") == 600
    assert value("gridrun_tasks_kept") == 3
    assert value("gridrun_db_bytes") > 10_000
    assert 0 <= value("gridrun_oldest_task_age_seconds") < 60
    assert 0 < value("gridrun_db_disk_used_ratio") < 1
    assert 0 <= value("gridrun_next_retention_seconds") <= 60


async def test_the_output_budget_drops_the_oldest_ended_tasks_output_first(
    tmp_path: Path,
) -> None:
    grid = Grid(tmp=tmp_path, master_overrides={"output_budget": 2500})
    master = await grid.start_master()
    try:
        await grid.add_worker("w1", slots=1)
        tasks = []
        for _ in range(5):  # 1,000 bytes each, one after the other: oldest first
            task = await grid.submit(cmd="printf %01000d 0", shell=True)
            await grid.wait(task["id"])
            tasks.append(task)
        running = await grid.submit(cmd="printf %01000d 0; sleep 10", shell=True)
        await grid.wait_state(running["id"], "running")

        async def stored() -> bool:
            return len((await grid.output(running["id"]))["stdout"]["text"]) == 1000

        await eventually_async(stored, 10)  # 6,000 kept, 2,500 allowed
        freed = await master.core.retention.keep_output_budget()
        assert freed == 4000  # the four oldest; what is left (the last's and running's) fits
        outputs = [await grid.output(t["id"]) for t in tasks]
        assert [o["stdout"]["expired"] for o in outputs] == [True, True, True, True, False]
        oldest = outputs[0]["stdout"]
        assert (oldest["text"], oldest["bytes_total"], oldest["bytes_dropped"]) == ("", 1000, 1000)
        assert (await grid.task(tasks[0]["id"]))["state"] == "succeeded"  # the task stays
        assert len(outputs[4]["stdout"]["text"]) == 1000
        assert await master.core.retention.keep_output_budget() == 0  # within it now
        metrics = (await grid.api.get("/metrics")).text
        assert "gridrun_output_expired_bytes_total 4000.0" in metrics
        assert len((await grid.output(running["id"]))["stdout"]["text"]) == 1000  # not ended
    finally:
        await grid.close()


async def test_a_queue_can_keep_its_tasks_for_its_own_time(tmp_path: Path) -> None:
    """--retain-queue fast=1s beside --retain 600s: the fast queue's ended tasks go after a
    second, whatever their state; the others stay."""
    grid = Grid(tmp=tmp_path, master_overrides={"retain_s": 600.0, "retain_queues": {"fast": 1.0}})
    await grid.start_master()
    try:
        await grid.add_worker("w1")
        fast_ok = await grid.submit(cmd="true", queue="fast")
        fast_bad = await grid.submit(cmd="exit 2", shell=True, queue="fast")
        slow = await grid.submit(cmd="true")
        for task in (fast_ok, fast_bad, slow):
            await grid.wait(task["id"])

        async def gone(task_id: str) -> bool:
            return (await grid.api.get(f"/v1/tasks/{task_id}")).status_code == 404

        assert await eventually_async(lambda: gone(fast_ok["id"]), 15)
        assert await eventually_async(lambda: gone(fast_bad["id"]), 15)
        assert (await grid.task(slow["id"]))["state"] == "succeeded"
    finally:
        await grid.close()


async def test_a_task_can_say_how_long_it_is_kept(tmp_path: Path) -> None:
    """A task submitted with retain_s goes by it, whatever the grid's --retain (longer or
    shorter); `gridrun gc` by hand does not ask."""
    grid = Grid(tmp=tmp_path, master_overrides={"retain_s": 1.0})
    await grid.start_master()
    try:
        await grid.add_worker("w1")
        brief = await grid.submit(cmd="true")
        kept = await grid.submit(cmd="true", retain_s=3600)
        assert kept["retain_s"] == 3600
        for task in (brief, kept):
            await grid.wait(task["id"])

        async def gone(task_id: str) -> bool:
            return (await grid.api.get(f"/v1/tasks/{task_id}")).status_code == 404

        assert await eventually_async(lambda: gone(brief["id"]), 15)
        assert (await grid.task(kept["id"]))["state"] == "succeeded"  # its own hour
        bad = await grid.api.post("/v1/tasks", json={"cmd": "true", "retain_s": -1})
        assert bad.status_code == 422
        assert (await grid.api.post("/v1/gc", json={"older_than_s": 0})).json()["deleted"] == 1
    finally:
        await grid.close()


async def test_a_tasks_own_short_retention_wins_over_the_grids(tmp_path: Path) -> None:
    grid = Grid(tmp=tmp_path, master_overrides={"retain_s": 3600.0})
    await grid.start_master()
    try:
        await grid.add_worker("w1")
        brief = await grid.submit(cmd="true", retain_s=0.5)
        await grid.wait(brief["id"])

        async def gone() -> bool:
            return (await grid.api.get(f"/v1/tasks/{brief['id']}")).status_code == 404

        assert await eventually_async(gone, 70)  # (passes run each minute here)
    finally:
        await grid.close()


async def test_a_job_says_how_many_of_its_tasks_expired(grid: Grid) -> None:
    await grid.add_worker("w1")
    await grid.add_worker("w2")
    job = (await grid.api.post("/v1/jobs", json={"cmd": "true"})).json()
    assert len(job["tasks"]) == 2
    for task in job["tasks"]:
        await grid.wait(task["id"])
    await grid.client.gc(0, ["succeeded"])
    after = (await grid.api.get(f"/v1/jobs/{job['id']}")).json()
    assert (after["tasks"], after["expired"]) == ([], 2)  # not a 404: the job was, and ran
