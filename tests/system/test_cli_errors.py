"""The CLI's errors say what went wrong and what to do, on one line of stderr, exit status 1:
no master there, a master older than the client."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gridrun import __version__
from tests.system.conftest import SystemGrid

pytestmark = [pytest.mark.system]


def test_no_master_there_says_how_to_start_one(system_grid: SystemGrid) -> None:
    url = f"http://127.0.0.1:{system_grid.http_port}"  # nothing listens there yet
    result = system_grid.cli("submit", "--url", url, "--", "true")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert f"cannot reach the master at {url}" in lines[0]
    assert "`gridrun up` starts a local grid (`make up` in a checkout)" in lines[0]


class _OldMaster(BaseHTTPRequestHandler):
    """A master of an earlier version: it knows /healthz and /v1/tasks, not /v1/quotas."""

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._answer(200, "application/json", {"status": "ok", "version": "0.0.9"})
        else:
            self._answer(404, "application/problem+json", {
                "type": "urn:gridrun:problem:not-found", "title": "Not found",
                "status": 404, "detail": f"no route {self.path}",
            })  # fmt: skip

    def _answer(self, status: int, kind: str, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def old_master() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OldMaster)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_master_older_than_the_client_is_named_with_both_versions(
    system_grid: SystemGrid, old_master: str
) -> None:
    result = system_grid.cli("quota", "show", "--url", old_master)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: the master at {old_master} (version 0.0.9) does not know /v1/quotas: it is"
        f" older than this client ({__version__}); upgrade the master"
    )
    version = system_grid.cli("--version")
    assert version.stdout.strip() == f"gridrun {__version__}"
