"""The HTTP API: bad input gets a clear 4xx problem+json and never hurts the master."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Grid

pytestmark = pytest.mark.timeout(60)

PROBLEM = "application/problem+json"


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b'{"cmd": "echo hi"', 400, "not valid JSON"),
        (b"\xff\xfe not json", 400, "not valid JSON"),
        (b'"just a string"', 422, "JSON object"),
        (b'{"cmd": ""}', 422, "cmd must not be empty"),
        (b'{"cmd": "   "}', 422, "cmd must not be empty"),
        (b"{}", 422, "exactly one of"),
        (b'{"cmd": "a", "argv": ["a"]}', 422, "exactly one of"),
        (b'{"argv": []}', 422, "argv"),
        (b'{"cmd": "echo hi", "colour": "red"}', 422, "colour"),
        (b'{"cmd": 42}', 422, "cmd"),
        (b'{"cmd": "echo", "timeout_s": "5"}', 422, "timeout_s"),
        (b'{"cmd": "echo", "timeout_s": -1}', 422, "timeout_s"),
        (b'{"cmd": "echo", "priority": 1.5}', 422, "priority"),
        (b'{"cmd": "echo \\"unclosed"}', 422, "cannot be parsed"),
        (b'{"cmd": "echo \\u0000"}', 422, "NUL"),
        (b'{"cmd": "echo", "env": {"A=B": "x"}}', 422, "env name"),
        (b'{"tasks": []}', 422, "tasks"),
        (b'{"tasks": [{"cmd": "true"}, {"cmd": ""}]}', 422, "tasks.1"),
    ],
)
async def test_bad_submissions_get_a_4xx_problem(
    grid: Grid, body: bytes, status: int, needle: str
) -> None:
    response = await grid.api.post(
        "/v1/tasks", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == status
    assert needle in problem["detail"], problem


async def test_a_body_over_the_limit_is_413_with_or_without_content_length(tmp_path) -> None:  # type: ignore[no-untyped-def]
    grid = Grid(tmp=tmp_path)
    await grid.start_master(max_body=10_000)
    try:
        big = b'{"cmd": "echo ' + b"x" * 20_000 + b'"}'
        json_type = {"Content-Type": "application/json"}
        response = await grid.api.post("/v1/tasks", content=big, headers=json_type)
        assert response.status_code == 413
        assert response.headers["content-type"] == PROBLEM

        async def chunks():  # type: ignore[no-untyped-def]
            for _ in range(20):
                yield b"x" * 1000

        # chunked: no length
        response = await grid.api.post("/v1/tasks", content=chunks(), headers=json_type)
        assert response.status_code == 413
        # nothing was stored, and the master still serves
        listing = (await grid.api.get("/v1/tasks")).json()
        assert listing["tasks"] == []
        assert (await grid.api.post("/v1/tasks", json={"cmd": "true"})).status_code == 201
    finally:
        await grid.close()


async def test_unknown_ids_and_routes_are_404(grid: Grid) -> None:
    for path in ("/v1/tasks/nope", "/v1/tasks/nope/output", "/v1/nothing"):
        response = await grid.api.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == PROBLEM
    assert (await grid.api.post("/v1/tasks/nope/cancel")).status_code == 404


async def test_bad_query_parameters_are_422(grid: Grid) -> None:
    for params in ({"state": "exploded"}, {"limit": 0}, {"limit": 5000}, {"cursor": "abc"}):
        response = await grid.api.get("/v1/tasks", params=params)
        assert response.status_code == 422, params
        assert response.headers["content-type"] == PROBLEM


async def test_master_still_serves_after_bad_input_and_nothing_is_lost(grid: Grid) -> None:
    good = await grid.submit(cmd="echo kept")
    for body in (b"{", b"[]", b'{"cmd": ""}', b"\x00" * 100):
        await grid.api.post("/v1/tasks", content=body)
    await grid.add_worker("w1")
    assert (await grid.wait(good["id"]))["state"] == "succeeded"
    health = await grid.api.get("/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"


async def test_batch_submit_is_one_transaction_and_keeps_order(grid: Grid) -> None:
    tasks = await grid.submit_many([{"cmd": f"echo {i}", "name": f"n{i}"} for i in range(500)])
    assert [t["name"] for t in tasks] == [f"n{i}" for i in range(500)]
    assert len({t["id"] for t in tasks}) == 500
    # an invalid member rejects the whole batch: nothing from it is stored
    bad = await grid.api.post("/v1/tasks", json={"tasks": [{"cmd": "true"}] * 3 + [{"cmd": ""}]})
    assert bad.status_code == 422
    listing = (await grid.api.get("/v1/tasks", params={"limit": 1000})).json()
    assert len(listing["tasks"]) == 500


async def test_prefer_return_minimal_answers_ids_in_order(grid: Grid) -> None:
    bodies = [{"cmd": f"echo {i}", "name": f"m{i}"} for i in range(300)]
    bodies[7]["idempotency_key"] = "seven"
    minimal = {"Prefer": "return=minimal"}
    response = await grid.api.post("/v1/tasks", json={"tasks": bodies}, headers=minimal)
    assert response.status_code == 201, response.text
    assert response.headers["preference-applied"] == "return=minimal"
    assert set(response.json()) == {"ids"}
    ids = response.json()["ids"]
    listing = (await grid.api.get("/v1/tasks", params={"limit": 1000})).json()["tasks"]
    assert [t["id"] for t in reversed(listing)] == ids  # stored, in the order submitted
    assert [t["name"] for t in reversed(listing)] == [f"m{i}" for i in range(300)]
    # one task; the preference among others and in any case; a taken key answers its holder
    again = await grid.api.post(
        "/v1/tasks",
        json={"cmd": "echo again", "idempotency_key": "seven"},
        headers={"Prefer": "respond-async, RETURN = minimal; x=1"},
    )
    assert again.status_code == 200, again.text
    assert again.json() == {"ids": [ids[7]]}
    fresh = await grid.api.post("/v1/tasks", json={"cmd": "true"}, headers=minimal)
    assert fresh.status_code == 201
    (fresh_id,) = fresh.json()["ids"]
    assert (await grid.api.get(f"/v1/tasks/{fresh_id}")).json()["cmd"] == "true"
    # any other preference: the full tasks, and no Preference-Applied
    full = await grid.api.post(
        "/v1/tasks", json={"tasks": [{"cmd": "true"}]}, headers={"Prefer": "return=representation"}
    )
    assert full.status_code == 201
    assert "preference-applied" not in full.headers
    assert full.json()["tasks"][0]["state"] == "queued"


async def test_list_filters_and_cursor_pagination(grid: Grid) -> None:
    tasks = await grid.submit_many(
        [{"cmd": "true", "name": "a" if i % 2 else "b"} for i in range(25)]
    )
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 10, **({"cursor": cursor} if cursor else {})}
        page = (await grid.api.get("/v1/tasks", params=params)).json()
        seen += [t["id"] for t in page["tasks"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [t["id"] for t in reversed(tasks)]  # newest first, each once
    named = (await grid.api.get("/v1/tasks", params={"name": "a", "limit": 100})).json()
    assert len(named["tasks"]) == 12
    queued = (await grid.api.get("/v1/tasks", params={"state": ["queued"], "limit": 100})).json()
    assert len(queued["tasks"]) == 25
    none = (await grid.api.get("/v1/tasks", params={"state": "succeeded"})).json()
    assert none["tasks"] == []


async def test_wait_long_polls_until_the_task_ends(grid: Grid) -> None:
    await grid.add_worker("w1")
    task = await grid.submit(cmd="sleep 0.3")
    response = await grid.api.get(f"/v1/tasks/{task['id']}", params={"wait": 10})
    assert response.json()["state"] == "succeeded"


async def test_openapi_spec_is_served(grid: Grid) -> None:
    spec = (await grid.api.get("/openapi.json")).json()
    assert "/v1/tasks" in spec["paths"]
    assert "TaskIn" in spec["components"]["schemas"]
    # every way to submit says it may be answered 429 (a full queue, a quota): the API fuzzer
    # found the answer undocumented
    for path in ("/v1/tasks", "/v1/jobs", "/tasks"):
        assert "429" in spec["paths"][path]["post"]["responses"], path
    docs = await grid.api.get("/docs")  # served whole by the master: nothing from a CDN
    assert docs.status_code == 200
    assert "<script" not in docs.text
    assert "cdn" not in docs.text.lower()
    assert "href=/openapi.json" in docs.text
    assert "<code>/v1/tasks</code>" in docs.text
    assert "<code>/v1/concurrency/{key}</code>" in docs.text
    assert "default-src 'self'" in docs.headers["content-security-policy"]  # and it holds


async def test_a_batch_over_10000_tasks_is_refused(grid: Grid) -> None:
    response = await grid.api.post("/v1/tasks", json={"tasks": [{"cmd": "true"}] * 10_001})
    assert response.status_code == 422
    assert "10000" in response.json()["detail"]
    ok = await grid.api.post("/v1/tasks", json={"tasks": [{"cmd": "true"}] * 10_000})
    assert ok.status_code == 201
    assert len(ok.json()["tasks"]) == 10_000
