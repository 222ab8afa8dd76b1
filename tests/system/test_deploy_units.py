"""The systemd units in deploy/systemd: `systemd-analyze verify` finds nothing wrong with them
(with ExecStart pointed at this checkout's gridrun, as an install would put it), and every
variable their env files set is one the command they start reads."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
import yaml

from gridrun.cli.main import app

pytestmark = [pytest.mark.system]
UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_the_units_verify(tmp_path: Path) -> None:
    gridrun = Path(sys.executable).parent / "gridrun"
    units = []
    for unit in sorted(UNITS.glob("*.service")):
        text = unit.read_text()
        assert "ExecStart=/opt/gridrun/bin/gridrun " in text
        copy = tmp_path / unit.name
        copy.write_text(text.replace("/opt/gridrun/bin/gridrun", str(gridrun)))
        units.append(str(copy))
    assert [Path(u).name for u in units] == ["gridrun-master.service", "gridrun-worker.service"]
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *units], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr  # not even a warning


@pytest.mark.parametrize("command", ["master", "worker"])
def test_every_variable_of_the_env_files_is_read_by_its_command(command: str) -> None:
    click_group = typer.main.get_command(app)
    params = click_group.commands[command].params  # type: ignore[attr-defined]
    known = {p.envvar for p in params if p.envvar} | {"GRIDRUN_LOG_FORMAT", "GRIDRUN_LOG_LEVEL"}
    env = (UNITS / f"gridrun-{command}.env").read_text()
    names = re.findall(r"^(?:# )?(GRIDRUN_[A-Z_]+)=", env, re.MULTILINE)
    assert names
    assert set(names) <= known, set(names) - known
    unit = (UNITS / f"gridrun-{command}.service").read_text()
    assert f"EnvironmentFile=/etc/gridrun/{command}.env" in unit


KUBERNETES = UNITS.parent / "kubernetes"


@pytest.mark.parametrize("command", ["master", "worker"])
def test_the_kubernetes_manifests_set_only_what_their_command_reads(command: str) -> None:
    """Each parses; its Deployment runs `gridrun COMMAND`, and every GRIDRUN_* variable it
    sets is one that command reads (not checked: a cluster applying them; none is here)."""
    docs = list(yaml.safe_load_all((KUBERNETES / f"{command}.yaml").read_text()))
    kinds = [d["kind"] for d in docs]
    assert "Deployment" in kinds
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == [command]
    click_group = typer.main.get_command(app)
    params = click_group.commands[command].params  # type: ignore[attr-defined]
    known = {p.envvar for p in params if p.envvar} | {"GRIDRUN_LOG_FORMAT", "GRIDRUN_LOG_LEVEL"}
    names = {e["name"] for e in container["env"]}
    assert names <= known, names - known
    if command == "worker":
        assert "HorizontalPodAutoscaler" in kinds
