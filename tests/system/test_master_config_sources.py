"""A real `gridrun master` takes each setting from a flag, a GRIDRUN_* variable or its config
file, in that order, with the names and forms its --help gives (settings declared once)."""

from __future__ import annotations

import httpx
import pytest

from tests.helpers import eventually
from tests.system.conftest import SystemGrid

pytestmark = [pytest.mark.system]


def test_flags_win_over_variables_which_win_over_the_config_file(system_grid: SystemGrid) -> None:
    config = system_grid.tmp / "master.toml"
    config.write_text(
        'retain = "1d"\n'  # the file alone says it
        'retain_failed = "5h"\n'  # a variable says otherwise
        'output_budget = "1GiB"\n'  # a flag says otherwise
        "quarantine_for = 600\n"  # a setting that had no flag before
    )
    env = {
        "GRIDRUN_CONFIG_FILE": str(config),
        "GRIDRUN_RETAIN_FAILED": "2h",
        "GRIDRUN_OUTPUT_BUDGET": "2GiB",
        "GRIDRUN_DB": str(system_grid.tmp / "data" / "gridrun.db"),
    }
    args = [
        "master", "--http", f"127.0.0.1:{system_grid.http_port}",
        "--grpc", f"127.0.0.1:{system_grid.grpc_port}", "--output-budget", "3MiB",
    ]  # fmt: skip
    system_grid.master = system_grid._spawn("master", args, env=env)
    eventually(system_grid.healthy, 20, 0.05)
    storage = httpx.get(f"{system_grid.url}/v1/storage", timeout=5).json()
    assert storage["retain_s"] == 86_400
    assert storage["retain_failed_s"] == 7_200
    assert storage["output_budget"] == 3 << 20


def test_a_config_file_naming_an_unknown_setting_is_refused_with_the_known_ones(
    system_grid: SystemGrid,
) -> None:
    config = system_grid.tmp / "master.toml"
    config.write_text('retian = "1d"\n')
    result = system_grid.cli("master", "--config", str(config), "--db", "x.db", timeout=30)
    assert result.returncode == 1
    assert "unknown setting(s) retian" in result.stderr
    assert "retain" in result.stderr
    assert "quarantine_for" in result.stderr


def test_a_bad_value_names_its_flag(system_grid: SystemGrid) -> None:
    result = system_grid.cli("master", "--retain", "a week", "--db", "x.db", timeout=30)
    assert result.returncode == 1
    assert "--retain 'a week'" in result.stderr
