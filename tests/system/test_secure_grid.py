"""The README's secure grid, with real `gridrun` processes: certificates from `gridrun certs`,
tokens from `gridrun token create`, a master reading its config file, a worker joining with
mTLS and a join token, and the CLI authenticating from GRIDRUN_TOKEN or its config file."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.helpers import eventually
from tests.system.conftest import SystemGrid

pytestmark = [pytest.mark.system, pytest.mark.slow, pytest.mark.timeout(240)]


def gridrun(
    grid: SystemGrid, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridrun", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=grid.tmp,
        env={**grid.env, **(env or {})},
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_secure_grid_from_the_readme(system_grid: SystemGrid) -> None:
    grid, tmp = system_grid, system_grid.tmp
    # three commands make the certificates
    ok(gridrun(grid, "certs", "init"))
    ok(gridrun(grid, "certs", "issue", "--master", "127.0.0.1", "--master", "localhost"))
    ok(gridrun(grid, "certs", "issue", "--worker", "w1"))
    pki = tmp / "gridrun-certs"
    assert sorted(p.name for p in pki.iterdir()) == [
        "ca.crt",
        "ca.key",
        "master.crt",
        "master.key",
        "worker-w1.crt",
        "worker-w1.key",
    ]
    # tokens: printed once, only their hashes land in the config file
    config = tmp / "master.toml"
    config.write_text(
        f'http = "127.0.0.1:{grid.http_port}"\ngrpc = "127.0.0.1:{grid.grpc_port}"\n'
        f'tls_cert = "{pki}/master.crt"\ntls_key = "{pki}/master.key"\n'
        f'client_ca = "{pki}/ca.crt"\naudit_log = "{tmp}/audit.jsonl"\n'
    )
    tokens = {}
    for name, role in [("ops", "admin"), ("ci", "submit"), ("fleet", "worker")]:
        created = gridrun(
            grid, "token", "create", "--role", role, "--name", name, "--config", str(config)
        )
        tokens[name] = ok(created).strip()
        assert tokens[name].startswith("grt_")
        assert tokens[name] not in config.read_text()
    assert os.stat(config).st_mode & 0o777 == 0o600
    assert config.read_text().count("[[tokens]]") == 3

    grid.master = grid._spawn(
        "master", ["master", "--config", str(config), "--db", str(tmp / "data" / "db")]
    )
    https = f"https://127.0.0.1:{grid.http_port}"
    verify = ssl.create_default_context(cafile=str(pki / "ca.crt"))

    def healthy() -> bool:
        assert grid.master is not None
        assert grid.master.poll() is None, grid.log("master")
        try:
            return httpx.get(f"{https}/healthz", verify=verify, timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    eventually(healthy, 20, 0.05)

    join = tmp / "join.token"
    join.write_text(tokens["fleet"] + "\n")
    grid.workers["w1"] = grid._spawn(
        "worker-w1",
        [
            "worker",
            "--master", f"127.0.0.1:{grid.grpc_port}",
            "--data-dir", str(tmp / "workers" / "w1"),
            "--tls-ca", str(pki / "ca.crt"),
            "--tls-cert", str(pki / "worker-w1.crt"),
            "--tls-key", str(pki / "worker-w1.key"),
            "--join-token-file", str(join),
            "--slots", "1",
        ],
    )  # fmt: skip
    ops = {"Authorization": f"Bearer {tokens['ops']}"}

    def worker_online() -> bool:
        answer = httpx.get(f"{https}/v1/workers", headers=ops, verify=verify, timeout=5)
        return [(w["id"], w["state"]) for w in answer.json()["workers"]] == [("w1", "online")]

    eventually(worker_online, 20, 0.1)

    # the CLI from the environment: runs a task and exits with its status
    ci_env = {
        "GRIDRUN_URL": https,
        "GRIDRUN_TOKEN": tokens["ci"],
        "GRIDRUN_CA": str(pki / "ca.crt"),
    }
    ran = gridrun(grid, "run", "--", "sh", "-c", "echo secure; exit 3", env=ci_env)
    assert (ran.returncode, ran.stdout) == (3, "secure\n")

    # ... or from its config file
    client_config = tmp / "client.toml"
    client_config.write_text(
        f'url = "{https}"\ntoken = "{tokens["ci"]}"\nca = "{pki / "ca.crt"}"\n'
    )
    client_config.chmod(0o600)
    listed = gridrun(grid, "ls", "--json", env={"GRIDRUN_CONFIG": str(client_config)})
    assert [t["submitted_by"] for t in json.loads(ok(listed))] == ["ci"]

    # wrong or missing tokens, wrong role: a clear message and a non-zero exit
    no_token = gridrun(grid, "ls", env={**ci_env, "GRIDRUN_TOKEN": ""})
    assert no_token.returncode == 1
    assert "requires a token" in no_token.stderr
    assert "set GRIDRUN_TOKEN" in no_token.stderr  # and what to do
    bad = gridrun(grid, "ls", env={**ci_env, "GRIDRUN_TOKEN": "grt_guess"})
    assert bad.returncode == 1
    assert "not valid" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1  # one line, however long
    drain = gridrun(grid, "drain", "w1", env=ci_env)
    assert drain.returncode == 1
    assert "role 'submit' may not drain workers" in drain.stderr
    no_ca = gridrun(grid, "ls", env={**ci_env, "GRIDRUN_CA": ""})
    assert no_ca.returncode == 1
    assert "has a TLS certificate this client does not trust: set GRIDRUN_CA" in no_ca.stderr
    plain = gridrun(grid, "ls", "--url", https.replace("https://", "http://"), env=ci_env)
    assert plain.returncode == 1  # (an http:// client on the TLS port: the server hangs up)

    events = [json.loads(line) for line in (tmp / "audit.jsonl").read_text().splitlines()]
    assert any(e["event"] == "task.submit" and e["who"] == "ci" for e in events)
    assert any(e["event"] == "auth.bad_token" for e in events)
    master_log = (tmp / "master.log").read_text()
    assert "2 API token(s), join token required, worker certificates required" in master_log


def test_token_create_checks_its_input(system_grid: SystemGrid, tmp_path: Path) -> None:
    bad_role = gridrun(system_grid, "token", "create", "--role", "root")
    assert bad_role.returncode == 1
    assert "--role must be one of admin, submit, read, worker" in bad_role.stderr
    config = tmp_path / "m.toml"
    ok(
        gridrun(
            system_grid, "token", "create", "--role", "read", "--name", "v", "--config", str(config)
        )
    )
    again = gridrun(
        system_grid, "token", "create", "--role", "read", "--name", "v", "--config", str(config)
    )
    assert again.returncode == 1
    assert "already has a token named 'v'" in again.stderr
    plain = gridrun(system_grid, "token", "create", "--role", "submit")
    assert "GRIDRUN_TOKENS: submit-" in plain.stderr
    no_ca = gridrun(system_grid, "certs", "issue", "--worker", "w1", "--dir", str(tmp_path / "x"))
    assert no_ca.returncode == 1
    assert "gridrun certs init" in no_ca.stderr
