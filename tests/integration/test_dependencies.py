"""Tasks that run after others: a whole graph in one request, skipping below a failure,
cycles and unknown names refused, waiting tasks cancelled."""

from __future__ import annotations

from datetime import datetime

from tests.integration.conftest import Grid


async def test_a_dag_of_six_with_a_failure_in_the_middle(grid: Grid) -> None:
    await grid.add_worker("w1", slots=3)
    # a -> b (fails) -> d -> f;  a -> c -> e -> f
    batch = await grid.submit_many(
        [
            {"name": "f", "cmd": "echo f", "shell": True, "after": ["d", "e"]},
            {"name": "d", "cmd": "echo d", "shell": True, "after": ["b"]},
            {"name": "a", "cmd": "sleep 0.3; echo a", "shell": True},
            {"name": "b", "cmd": "exit 3", "shell": True, "after": ["a"]},
            {"name": "c", "cmd": "echo c", "shell": True, "after": ["a"]},
            {"name": "e", "cmd": "echo e", "shell": True, "after": ["c"]},
        ]
    )
    ids = {t["name"]: t["id"] for t in batch}
    assert {t["name"]: t["state"] for t in batch} == {
        "a": "queued", "b": "waiting", "c": "waiting", "d": "waiting", "e": "waiting",
        "f": "waiting",
    }  # fmt: skip
    assert batch[0]["after"] == [ids["d"], ids["e"]]  # names became ids
    done = {name: await grid.wait(task_id) for name, task_id in ids.items()}
    assert {name: t["state"] for name, t in done.items()} == {
        "a": "succeeded", "b": "failed", "c": "succeeded", "d": "skipped", "e": "succeeded",
        "f": "skipped",
    }  # fmt: skip
    assert done["d"]["error"] == f"skipped: task {ids['b']} ended failed"
    assert done["f"]["error"] == f"skipped: task {ids['d']} ended skipped"
    when = {
        (name, key): datetime.fromisoformat(done[name][key])
        for name in ("a", "c", "e")
        for key in ("started_at", "finished_at")
    }  # as times: as text, "...:47.032000Z" sorts before "...:47Z"
    assert when["c", "started_at"] >= when["a", "finished_at"]
    assert when["e", "started_at"] >= when["c", "finished_at"]
    for name in ("d", "f"):  # never ran
        assert done[name]["attempt"] == 0
        assert (await grid.output(ids[name]))["stdout"]["text"] == ""


async def test_cycles_unknown_tasks_and_shared_names_are_refused(grid: Grid) -> None:
    cycle = await grid.api.post(
        "/v1/tasks",
        json={"tasks": [
            {"name": "x", "cmd": "true", "after": ["z"]},
            {"name": "y", "cmd": "true", "after": ["x"]},
            {"name": "z", "cmd": "true", "after": ["y"]},
        ]},
    )  # fmt: skip
    assert cycle.status_code == 422
    assert "cycle" in cycle.json()["detail"]
    for name in "xyz":
        assert f"{name} -> " in cycle.json()["detail"] or f"-> {name}" in cycle.json()["detail"]
    unknown = await grid.api.post("/v1/tasks", json={"cmd": "true", "after": ["nope"]})
    assert unknown.status_code == 422
    assert "'nope'" in unknown.json()["detail"]
    shared = await grid.api.post(
        "/v1/tasks",
        json={"tasks": [
            {"name": "n", "cmd": "true"}, {"name": "n", "cmd": "true"},
            {"cmd": "true", "after": ["n"]},
        ]},
    )  # fmt: skip
    assert shared.status_code == 422
    assert "more than one" in shared.json()["detail"]
    itself = await grid.api.post("/v1/tasks", json={"name": "s", "cmd": "true", "after": ["s"]})
    assert itself.status_code == 422
    assert (await grid.api.get("/v1/tasks")).json()["tasks"] == []  # nothing was stored


async def test_after_existing_tasks_and_cancelling_a_waiting_one(grid: Grid) -> None:
    await grid.add_worker("w1")
    ok = await grid.submit(cmd="true", shell=True)
    bad = await grid.submit(cmd="false", shell=True)
    await grid.wait(ok["id"])
    await grid.wait(bad["id"])
    runs = await grid.submit(cmd="echo ran", shell=True, after=[ok["id"]])
    assert runs["state"] == "queued"
    assert (await grid.wait(runs["id"]))["state"] == "succeeded"
    skipped = await grid.submit(cmd="echo never", shell=True, after=[ok["id"], bad["id"]])
    assert (skipped["state"], skipped["error"]) == (
        "skipped",
        f"skipped: task {bad['id']} ended failed",
    )
    slow = await grid.submit(cmd="sleep 30", shell=True)
    waiting = await grid.submit(cmd="true", shell=True, after=[slow["id"]])
    below = await grid.submit(cmd="true", shell=True, after=[waiting["id"]])
    assert (waiting["state"], below["state"]) == ("waiting", "waiting")
    cancel = await grid.api.post(f"/v1/tasks/{waiting['id']}/cancel")
    assert cancel.json()["state"] == "cancelled"
    done = await grid.wait(below["id"], 10)
    assert done["state"] == "skipped"
    assert done["error"] == f"skipped: task {waiting['id']} ended cancelled"
    await grid.api.post(f"/v1/tasks/{slow['id']}/cancel")
