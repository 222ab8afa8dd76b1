"""The HTTP API's browser boundary and its answers to hostile input, over real HTTP against a
real master: what a web page may not do (cross-origin writes, text/plain and form bodies,
DNS-rebinding host names), the headers every answer carries, and that no input reaches a 500
on any route of the OpenAPI document."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.conftest import Grid

JSON = {"Content-Type": "application/json"}
TASK = json.dumps({"cmd": "echo from-a-page"})


def _unsafe_routes(spec: dict[str, Any], task_id: str) -> list[tuple[str, str]]:
    """Every state-changing operation of the API, with its path parameters filled in."""
    routes = []
    for path, operations in spec["paths"].items():
        for method in operations:
            if method.upper() in ("POST", "PUT", "PATCH", "DELETE"):
                concrete = (
                    path.replace("{task_id}", task_id)
                    .replace("{worker_id}", "w1")
                    .replace("{schedule_id}", "s1")
                )
                routes.append((method.upper(), concrete))
    return routes


async def _count(grid: Grid) -> int:
    return len((await grid.api.get("/v1/tasks")).json()["tasks"])


async def test_writes_from_another_origin_are_refused_on_every_route(grid: Grid) -> None:
    victim = await grid.submit(cmd="echo queued")  # no worker: it stays queued
    spec = (await grid.api.get("/openapi.json")).json()
    routes = _unsafe_routes(spec, victim["id"])
    assert ("POST", "/tasks") in routes
    assert ("POST", "/v1/tasks") in routes
    assert len(routes) >= 6  # submit, legacy, jobs, schedules, cancel, drain, unschedule
    for origin in ("http://evil.example", "http://127.0.0.1:1", "null"):
        for method, path in routes:
            response = await grid.api.request(
                method, path, content=TASK, headers={**JSON, "Origin": origin}
            )
            assert response.status_code == 403, (origin, method, path, response.text)
            assert "cross-origin" in response.json()["detail"]
    for method, path in routes:  # a browser that sends no Origin but says where it came from
        response = await grid.api.request(
            method, path, content=TASK, headers={**JSON, "Sec-Fetch-Site": "cross-site"}
        )
        assert response.status_code == 403, (method, path, response.text)
    assert await _count(grid) == 1
    assert (await grid.task(victim["id"]))["state"] == "queued"  # never cancelled


async def test_bodies_a_page_can_send_without_preflight_are_refused(grid: Grid) -> None:
    """text/plain, forms and a typeless Blob are what a page may POST anywhere; only JSON is
    taken, so even a browser that sent no Origin could not submit."""
    for media in ("text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                  "multipart/form-data; boundary=x", None):  # fmt: skip
        headers = {"Content-Type": media} if media else {}
        for path in ("/v1/tasks", "/tasks", "/v1/jobs", "/v1/schedules"):
            response = await grid.api.post(path, content=TASK, headers=headers)
            assert response.status_code == 415, (media, path, response.text)
            assert "application/json" in response.json()["detail"]
    assert await _count(grid) == 0
    # what clients that are not browsers send still works: the article's curl, the SDK
    response = await grid.api.post("/tasks", content=TASK, headers=JSON)
    assert response.status_code == 200, response.text
    response = await grid.api.post(
        "/v1/tasks", content=TASK, headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert response.status_code == 201, response.text
    # a same-origin page (the dashboard) says so in Origin
    own = f"http://127.0.0.1:{grid.http_port}"
    response = await grid.api.post("/v1/tasks", content=TASK, headers={**JSON, "Origin": own})
    assert response.status_code == 201, response.text
    task_id = response.json()["id"]
    response = await grid.api.post(
        f"/v1/tasks/{task_id}/cancel", headers={"Origin": own, "Sec-Fetch-Site": "same-origin"}
    )
    assert response.status_code == 200, response.text


async def test_a_rebound_host_name_can_neither_read_nor_write(grid: Grid) -> None:
    """DNS rebinding: the attacker's name resolves to 127.0.0.1, so its page is same-origin
    with the master as far as the browser knows. The Host header still carries the name."""
    await grid.submit(cmd="echo private")
    rebound = {"Host": f"attacker.example:{grid.http_port}"}
    for method, path in (("GET", "/v1/tasks"), ("GET", "/"), ("GET", "/v1/workers")):
        response = await grid.api.request(method, path, headers=rebound)
        assert response.status_code == 403, (path, response.text)
        assert "--allowed-host" in response.json()["detail"]
        assert "private" not in response.text
    response = await grid.api.post(
        "/v1/tasks",
        content=TASK,
        headers={**JSON, **rebound, "Origin": f"http://attacker.example:{grid.http_port}"},
    )
    assert response.status_code == 403
    assert await _count(grid) == 1
    # what it does serve: IP addresses, localhost, its own listen name
    for host in ("127.0.0.1", "localhost", "[::1]", "10.1.2.3", "grid.localhost"):
        response = await grid.api.get("/v1/tasks", headers={"Host": f"{host}:{grid.http_port}"})
        assert response.status_code == 200, (host, response.text)


async def test_allowed_hosts_admit_a_front_end_by_name(tmp_path) -> None:  # type: ignore[no-untyped-def]
    grid = Grid(tmp=tmp_path)
    await grid.start_master(allowed_hosts=["grid.example.com", "*.corp.example"])
    try:
        for host in ("grid.example.com", "GRID.example.com.", "a.corp.example"):
            response = await grid.api.post(
                "/v1/tasks",
                content=TASK,
                headers={**JSON, "Host": host, "Origin": f"https://{host.rstrip('.')}"},
            )
            assert response.status_code == 201, (host, response.text)
        for host in ("example.com", "corp.example.evil", "grid.example.com.evil"):
            response = await grid.api.get("/v1/tasks", headers={"Host": host})
            assert response.status_code == 403, host
    finally:
        await grid.close()


async def test_every_answer_carries_the_browser_security_headers(grid: Grid) -> None:
    for path in ("/", "/static/app.js", "/v1/tasks", "/v1/nothing", "/healthz"):
        response = await grid.api.get(path)
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp, path
        assert "script-src 'self'" in csp, path
        assert "unsafe-inline" not in csp
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
    refused = await grid.api.post("/v1/tasks", content=TASK, headers={"Origin": "null", **JSON})
    assert refused.headers["x-frame-options"] == "DENY"
    # the dashboard itself has no inline script or style the policy would block
    html = (await grid.api.get("/")).text
    assert "<script>" not in html
    assert "style=" not in html
    assert " on" not in html.lower()


HOSTILE_BODIES: list[tuple[str, bytes]] = [
    ("lone surrogate in cmd", b'{"cmd": "echo \\ud800"}'),
    ("lone surrogate in an env name", b'{"cmd": "true", "env": {"\\udfff": "x"}}'),
    ("lone surrogate in a label", b'{"cmd": "true", "labels": {"k": "\\ud800x"}}'),
    ("lone surrogate in a name", b'{"cmd": "true", "name": "a\\ud800"}'),
    ("lone surrogate in a batch", b'{"tasks": [{"cmd": "true", "idempotency_key": "\\ud800"}]}'),
    ("lone surrogate in a secret", b'{"cmd": "true", "secret_env": {"K": "\\ud800"}}'),
    ("deeply nested arrays", b"[" * 100_000 + b"]" * 100_000),
    ("deeply nested objects", b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
    ("invalid UTF-8", b'{"cmd": "echo \xff\xfe"}'),
    ("not JSON", b"{cmd: echo}"),
]


@pytest.mark.parametrize(("what", "body"), HOSTILE_BODIES, ids=[w for w, _ in HOSTILE_BODIES])
async def test_hostile_bodies_are_4xx_on_every_route_that_takes_one(
    grid: Grid, what: str, body: bytes
) -> None:
    for path in ("/v1/tasks", "/tasks", "/v1/jobs", "/v1/schedules"):
        response = await grid.api.post(path, content=body, headers=JSON)
        assert 400 <= response.status_code < 500, (what, path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["detail"]
    assert await _count(grid) == 0
    assert (await grid.api.get("/healthz")).status_code == 200


async def test_no_route_answers_5xx_to_hostile_input(grid: Grid) -> None:
    """Every operation of the OpenAPI document, with hostile path, query and body values."""
    spec = (await grid.api.get("/openapi.json")).json()
    hostile_text = ["%ED%A0%80", "%00", "%FF%FE", "a" * 5000, "..%2F..%2Fetc%2Fpasswd"]
    checked = 0
    for path, operations in spec["paths"].items():
        if path == "/v1/events":  # an endless stream by design; no input to it
            continue
        for method, operation in operations.items():
            for value in hostile_text:
                concrete = path
                for name in ("task_id", "worker_id", "schedule_id", "job_id"):
                    concrete = concrete.replace("{" + name + "}", value)
                query = "&".join(
                    f"{p['name']}={value}"
                    for p in operation.get("parameters", [])
                    if p["in"] == "query" and p["name"] not in ("follow", "wait")
                )
                url = concrete + (f"?{query}" if query else "")
                response = await grid.api.request(
                    method.upper(),
                    url,
                    content=b'{"cmd": "\\ud800", "x": [[[[' + b"[" * 3000 + b"]" * 3004 + b"}",
                    headers=JSON,
                    timeout=10,
                )
                assert response.status_code < 500, (method, url, response.text[:300])
                checked += 1
    assert checked >= 20 * len(hostile_text) // 2
    assert await _count(grid) == 0


async def test_a_body_with_a_key_twice_is_refused_on_every_route(grid: Grid) -> None:
    """Parsers disagree on which of two equal keys wins (ours took the last): a body that
    names one twice, at any depth, is a 400, not whichever the master happened to read."""
    json_type = {"content-type": "application/json"}
    for method, path, body in (
        ("POST", "/v1/tasks", b'{"cmd": "echo safe", "cmd": "rm -rf /srv"}'),
        ("POST", "/v1/tasks", b'{"tasks": [{"cmd": "a", "env": {"X": "1", "X": "2"}}]}'),
        ("POST", "/tasks", b'{"cmd": "a", "cmd": "b"}'),
        ("POST", "/v1/jobs", b'{"cmd": "a", "cmd": "b"}'),
        ("POST", "/v1/schedules", b'{"cron": "* * * * *", "cron": "0 0 * * *", "cmd": "a"}'),
        ("PUT", "/v1/quotas/owner/x", b'{"max_running": 1, "max_running": 9}'),
        ("POST", "/v1/gc", b'{"older_than_s": 9999, "older_than_s": 0}'),
    ):
        response = await grid.api.request(method, path, content=body, headers=json_type)
        assert response.status_code == 400, (path, response.text)
        assert "twice" in response.json()["detail"], path
    assert (await grid.api.get("/v1/stats")).json()["tasks"]["queued"] == 0  # nothing made
