"""schemathesis against the master's own OpenAPI document: every operation, generated and
mutated requests (authorised as admin, and without a token for the auth checks), no 5xx, every
status and media type documented, auth enforced. The master has no workers, so nothing that is
submitted ever runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gridrun.auth import digest, new_token
from tests.system.conftest import SystemGrid

pytestmark = [pytest.mark.system, pytest.mark.slow]

CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.mark.timeout(600)
def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(
    system_grid: SystemGrid,
) -> None:
    token = new_token()
    system_grid.start_master("--tokens", f"fuzzer:admin:{digest(token)}")
    result = subprocess.run(
        [
            str(SCHEMATHESIS), "--config-file", str(CONFIG),
            "run", f"{system_grid.url}/openapi.json",
            # all: not_a_server_error among them, so a 5xx on any operation fails the run;
            # test_api_boundary adds what schemathesis does not generate (lone surrogates,
            # deep nesting, bodies of other media types) on every operation of the document
            "--checks", "all",
            # cmd XOR argv and the size limits are checked by hand (one clear message per
            # field), not in the schema, so schema-valid bodies may be refused with a 422
            "--exclude-checks", "positive_data_acceptance",
            # an endless stream by design (the dashboard's overview); test_observe covers it
            "--exclude-path", "/v1/events",
            "--max-examples", "60",
            "--request-timeout", "20",
            "--generation-database", "none",
            "--header", f"Authorization: Bearer {token}",
            "--no-color",
        ],
        capture_output=True, text=True, timeout=400, cwd=system_grid.tmp,
        env=system_grid.env,
    )  # fmt: skip
    report = result.stdout[-12000:] + result.stderr[-3000:]
    assert result.returncode == 0, report
    spec = httpx.get(f"{system_grid.url}/openapi.json", timeout=10).json()
    operations = sum(len(methods) for methods in spec["paths"].values())
    # every operation but the overview stream was tested
    assert f"{operations - 1} selected / {operations} total" in result.stdout, report
    # the master is still up and answering, and the fuzzer reached past validation
    auth = {"Authorization": f"Bearer {token}"}
    stats = httpx.get(f"{system_grid.url}/v1/stats", headers=auth, timeout=10).json()
    assert sum(stats["tasks"].values()) > 0
    assert stats["tasks"]["running"] == 0  # nothing submitted by the fuzzer ever ran
    log = (system_grid.tmp / "master.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-4000:]
