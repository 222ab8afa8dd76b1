"""Arrays and jobs over the API, with a real master and workers: indexes and items reach each
task byte for byte, the %N cap holds, a job is read, cancelled and retried as one, and tasks
are cancelled by a filter within the caller's rights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.helpers import eventually_async
from tests.integration.conftest import TOKENS, Grid

ECHO_ITEM = 'printf "%s|%s" "$GRIDRUN_ARRAY_INDEX" "$GRIDRUN_ARRAY_ITEM"'


async def array(grid: Grid, status: int = 201, **body: Any) -> dict[str, Any]:
    response = await grid.api.post("/v1/arrays", json=body)
    assert response.status_code == status, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def job(grid: Grid, job_id: str, **params: Any) -> dict[str, Any]:
    response = await grid.api.get(f"/v1/jobs/{job_id}", params=params)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def ended(grid: Grid, job_id: str, timeout: float = 30) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        got = await job(grid, job_id)
        return got if got["ended"] == got["size"] else None

    return await eventually_async(done, timeout)


async def test_each_index_once_with_its_item_byte_for_byte(grid: Grid) -> None:
    await grid.add_worker("w1", slots=4)
    items = ['it\'s "quoted"', "two  spaces ", "$HOME and `date`", "naïve – ✓", "back\\slash", ""]
    made = await array(grid, task={"cmd": ECHO_ITEM, "shell": True}, items=items)
    assert made["size"] == len(items)
    done = await ended(grid, made["id"])
    assert (done["kind"], done["succeeded"], done["unsuccessful"]) == ("array", 6, [])
    outputs = {}
    for task in done["tasks"]:
        outputs[task["id"]] = await grid.raw_output(task["id"])
    expected = {f"{i}|{item}".encode() for i, item in enumerate(items)}
    assert set(outputs.values()) == expected  # every index once, its item exactly

    # indexes pick items; the array syntax alone makes indexes
    picked = await array(grid, task={"cmd": ECHO_ITEM, "shell": True}, items=items, array="1,4")
    done = await ended(grid, picked["id"])
    got = {await grid.raw_output(t["id"]) for t in done["tasks"]}
    assert got == {f"1|{items[1]}".encode(), f"4|{items[4]}".encode()}
    stepped = await array(grid, task={"cmd": ECHO_ITEM, "shell": True}, array="0-9:3")
    done = await ended(grid, stepped["id"])
    assert sorted(t["env"]["GRIDRUN_ARRAY_INDEX"] for t in done["tasks"]) == ["0", "3", "6", "9"]
    listed = await grid.api.get("/v1/tasks", params={"job": stepped["id"], "index": 6})
    (six,) = listed.json()["tasks"]
    assert await grid.raw_output(six["id"]) == b"6|"


async def test_bad_arrays_are_refused_whole(grid: Grid) -> None:
    cases = [
        ({"task": {"cmd": "true"}, "array": "5-1"}, "counts down"),
        ({"task": {"cmd": "true"}, "array": "1-x"}, "is not one of"),
        ({"task": {"cmd": "true"}, "array": "1-3%0"}, "the cap after %"),
        ({"task": {"cmd": "true"}, "items": ["a", "b"], "array": "0-2"}, "past the last"),
        ({"task": {"cmd": "true"}, "items": ["a\x00b"]}, "NUL"),
        ({"task": {"cmd": "true"}}, "needs indexes"),
        ({"task": {"cmd": "true", "concurrency_key": "k", "concurrency_limit": 1},
          "array": "1-2%1"}, "not both"),
        ({"task": {"cmd": "true"}, "array": "0-2000000"}, "more than 1,000,000"),
    ]  # fmt: skip
    for body, said in cases:
        response = await grid.api.post("/v1/arrays", json=body)
        assert response.status_code == 422, (body, response.text)
        assert said in response.json()["detail"], (body, response.text)
    assert (await grid.api.get("/v1/tasks")).json()["tasks"] == []  # nothing made


async def test_the_cap_holds_and_the_job_reads_as_one(grid: Grid, tmp_path: Path) -> None:
    """%2: never three at once, by the tasks' own clocks, though four slots are free."""
    await grid.add_worker("w1", slots=4)
    log = tmp_path / "times"
    cmd = f'echo "start $(date +%s.%N)" >> {log}; sleep 0.3; echo "end $(date +%s.%N)" >> {log}'
    made = await array(grid, task={"cmd": cmd, "shell": True}, array="1-6%2")
    done = await ended(grid, made["id"])
    assert (done["size"], done["succeeded"], done["max_running"]) == (6, 6, 2)
    events = sorted(
        (float(at), 1 if what == "start" else -1)
        for what, at in (line.split() for line in log.read_text().splitlines())
    )
    running, most = 0, 0
    for _, change in events:
        running += change
        most = max(most, running)
    assert most == 2
    listed = (await grid.api.get("/v1/jobs")).json()["jobs"]
    assert [(j["id"], j["size"], j["counts"]["succeeded"]) for j in listed] == [(made["id"], 6, 6)]


async def test_retry_runs_again_only_what_did_not_succeed(grid: Grid, tmp_path: Path) -> None:
    await grid.add_worker("w1", slots=4)
    flag = tmp_path / "fixed"
    # odd indexes fail until the flag exists
    cmd = f"[ $((GRIDRUN_ARRAY_INDEX % 2)) -eq 0 ] || [ -e {flag} ] || exit 3"
    made = await array(grid, task={"cmd": cmd, "shell": True}, array="0-5")
    done = await ended(grid, made["id"])
    failed = [(t["index"], t["state"], t["exit_code"]) for t in done["unsuccessful"]]
    assert failed == [(1, "failed", 3), (3, "failed", 3), (5, "failed", 3)]
    before = {t["id"]: t for t in done["tasks"]}
    flag.touch()
    retried = await grid.api.post(f"/v1/jobs/{made['id']}/retry")
    assert retried.json() == {"retried": 3}
    done = await ended(grid, made["id"])
    assert (done["succeeded"], done["unsuccessful"]) == (6, [])
    for task in done["tasks"]:
        index = int(task["env"]["GRIDRUN_ARRAY_INDEX"])
        assert task["attempt"] == (before[task["id"]]["attempt"] + (index % 2)), task
    again = await grid.api.post(f"/v1/jobs/{made['id']}/retry")
    assert again.json() == {"retried": 0}  # nothing left to run again


async def test_cancel_a_job_whole(grid: Grid) -> None:
    await grid.add_worker("w1", slots=1)
    made = await array(grid, task={"cmd": "sleep 30", "shell": True}, array="1-5")
    first = await eventually_async(
        lambda: _running(grid, made["id"]), 10
    )  # one runs, four wait for the slot
    assert first
    cancelled = await grid.api.post(f"/v1/jobs/{made['id']}/cancel")
    said = cancelled.json()  # (one running; one may be sent ahead to the worker, held)
    assert said["cancelled"] + said["stopping"] == 5, said
    assert 1 <= said["stopping"] <= 2, said
    done = await ended(grid, made["id"])
    assert done["counts"]["cancelled"] == 5
    again = await grid.api.post(f"/v1/jobs/{made['id']}/cancel")
    assert again.json() == {"cancelled": 0, "stopping": 0}
    missing = await grid.api.post("/v1/jobs/0123456789abcdef01234567/cancel")
    assert missing.status_code == 404


async def _running(grid: Grid, job_id: str) -> bool:
    return (await job(grid, job_id))["counts"]["running"] == 1


async def test_the_same_array_submitted_twice_with_a_key_is_one_job(grid: Grid) -> None:
    body = {"task": {"cmd": "true", "idempotency_key": "sweep-7"}, "array": "1-3"}
    first, second = await array(grid, **body), await array(grid, **body)
    assert first["id"] == second["id"]
    assert len((await grid.api.get("/v1/tasks")).json()["tasks"]) == 3


async def test_bulk_cancel_within_the_callers_rights(shared: Grid) -> None:
    def as_(name: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{shared.http_port}",
            headers={"Authorization": f"Bearer {TOKENS[name]}"},
            timeout=30,
        )

    async with as_("alice") as alice, as_("bob") as bob:
        for client in (alice, bob):
            for queue in ("nightly", "adhoc"):
                body = {"tasks": [{"cmd": "true", "labels": {"zone": "none"}, "queue": queue}] * 3}
                assert (await client.post("/v1/tasks", json=body)).status_code == 201
        # alice cancels her nightly ones; bob's are untouched
        mine = await alice.post("/v1/tasks/cancel", json={"queue": "nightly"})
        assert mine.json() == {"cancelled": 3, "stopping": 0}
        theirs = await alice.post("/v1/tasks/cancel", json={"owner": "bob"})
        assert theirs.status_code == 403
        nothing = await alice.post("/v1/tasks/cancel", json={})
        assert nothing.status_code == 422
        assert "say which tasks" in nothing.json()["detail"]
        states = await _states(shared)
        assert states[("alice", "nightly")] == ["cancelled"] * 3
        assert states[("bob", "nightly")] == ["queued"] * 3
        # an admin cancels across owners, by label
        ops = await shared.api.post(
            "/v1/tasks/cancel", json={"label": ["zone=none"], "queue": "adhoc"}
        )
        assert ops.json() == {"cancelled": 6, "stopping": 0}
        states = await _states(shared)
        assert states[("bob", "nightly")] == ["queued"] * 3
        assert states[("bob", "adhoc")] == states[("alice", "adhoc")] == ["cancelled"] * 3


async def _states(grid: Grid) -> dict[tuple[str, str], list[str]]:
    tasks = (await grid.api.get("/v1/tasks", params={"limit": 100})).json()["tasks"]
    states: dict[tuple[str, str], list[str]] = {}
    for task in tasks:
        states.setdefault((task["owner"], task["queue"]), []).append(task["state"])
    return states


async def test_a_broadcast_is_a_job_like_any(grid: Grid) -> None:
    await grid.add_worker("w1")
    await grid.add_worker("w2")
    made = (await grid.api.post("/v1/jobs", json={"cmd": "true"})).json()
    assert len(made["tasks"]) == 2
    done = await ended(grid, made["id"])
    assert (done["kind"], done["size"], done["succeeded"]) == ("broadcast", 2, 2)
    brief = await job(grid, made["id"], tasks="false")
    assert (brief["tasks"], brief["size"]) == ([], 2)


async def test_short_ids_name_a_task_or_a_job_and_ambiguity_is_said(grid: Grid) -> None:
    await grid.add_worker("w1", slots=2)
    made = await array(grid, task={"cmd": "echo hi", "shell": True}, array="1-2")
    done = await ended(grid, made["id"])
    one, two = (t["id"] for t in done["tasks"])
    # a tail (what a terminal shows) or a prefix, of 6 digits or more
    for short in (one[-8:], one[-6:], one[:20]):
        got = await grid.api.get(f"/v1/tasks/{short}")
        assert got.status_code == 200, (short, got.text)
        assert got.json()["id"] == one
    out = await grid.api.get(f"/v1/tasks/{one[-8:]}/output", params={"stream": "stdout"})
    assert out.content == b"hi\n"
    assert (await job(grid, made["id"][-8:]))["id"] == made["id"]
    listed = await grid.api.get("/v1/tasks", params={"job": made["id"][-8:], "index": 2})
    assert [t["id"] for t in listed.json()["tasks"]] == [two]
    # the tasks of one submission share their first 12 digits (the time they were made)
    shared = await grid.api.get(f"/v1/tasks/{one[:12]}")
    assert shared.status_code == 409
    detail = shared.json()["detail"]
    assert one in detail
    assert two in detail
    assert "give more digits" in detail
    for unknown in ("abcdef", one[:5], "not-hex-at-all"):
        assert (await grid.api.get(f"/v1/tasks/{unknown}")).status_code == 404, unknown
    cancelled = await grid.api.post(f"/v1/jobs/{made['id'][-8:]}/cancel")
    assert cancelled.json() == {"cancelled": 0, "stopping": 0}  # (all ended: nothing to do)
