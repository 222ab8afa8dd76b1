"""`make test` needs no database server: where nothing answers on 127.0.0.1:5432 (and
PG_TEST_URL is unset), the PostgreSQL tests start a throwaway server of their own (tests/pg.py)
and remove it afterwards. Proved in a network namespace, whose loopback has nothing on 5432."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.system,
    pytest.mark.pg,
    pytest.mark.slow,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("ip") is None,
        reason="a network namespace needs root and iproute2",
    ),
]
REPO = Path(__file__).resolve().parents[2]


def in_namespace(
    ns: str, *argv: str, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *argv],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_the_postgres_tests_bring_their_own_server_where_none_runs(tmp_path: Path) -> None:
    ns = f"gridrun-nopg-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        env = {k: v for k, v in os.environ.items() if k != "PG_TEST_URL"}
        env["TMPDIR"] = str(tmp_path)  # where the throwaway server lives, to see it go
        probe = "import socket; socket.create_connection(('127.0.0.1', 5432), timeout=2)"
        nothing = in_namespace(ns, sys.executable, "-c", probe, env=env, timeout=30)
        assert nothing.returncode != 0
        assert "Connection refused" in nothing.stderr
        run = in_namespace(
            ns, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "pg",
            "tests/integration/test_store.py", "tests/integration/test_store_outage.py",
            env=env, timeout=480,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        passed = re.search(r"(\d+) passed", run.stdout)
        assert passed is not None
        assert int(passed.group(1)) >= 15, run.stdout[-2000:]
        assert "failed" not in run.stdout
        assert not list(tmp_path.glob("gridrun-pg-*"))  # the server and its data are gone
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False)
