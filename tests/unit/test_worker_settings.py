"""The worker's settings are declared once (gridrun.worker.config.WorkerConfig): every field a
user sets has its flag and variable, `gridrun worker` offers each of them, the default a user is
shown is the one the worker uses, and durations, labels and class counts are read as written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from typer.testing import CliRunner

from gridrun.cli.main import app
from gridrun.setting import from_user, settings_of
from gridrun.worker.config import WorkerConfig

NOT_SET_BY_NAME = {"base_env"}  # the worker's own environment, filtered for its tasks


def _worker_params() -> dict[str, Any]:
    command: Any = typer.main.get_command(app)
    return {p.name: p for p in command.commands["worker"].params}


def test_every_setting_of_a_worker_has_its_flag_and_variable() -> None:
    declared = settings_of(WorkerConfig)
    assert set(WorkerConfig.model_fields) - set(declared) == NOT_SET_BY_NAME
    params = _worker_params()
    for field, about in declared.items():
        param = params[field]
        assert about.flag in param.opts, field
        assert param.envvar == about.envvar, field
        assert about.envvar.startswith("GRIDRUN_")
        assert about.help, field
    names = [about.name for about in declared.values()]
    assert len(names) == len(set(names))
    # the names users had before the settings were declared stay theirs
    assert params["labels"].envvar == "GRIDRUN_LABELS"
    assert "--label" in params["labels"].opts
    assert "--limit-cpu" in params["limit_cpu_s"].opts
    assert params["cwd_roots"].envvar == "GRIDRUN_CWD_ROOTS"
    assert "--no-enforce-asks" in params["enforce_asks"].secondary_opts


def test_the_default_a_user_is_shown_is_the_default_the_worker_uses() -> None:
    defaults = WorkerConfig()
    params = _worker_params()
    for field, about in settings_of(WorkerConfig).items():
        if about.shown and params[field].default is not None:
            read = WorkerConfig(**from_user(WorkerConfig, {about.name: params[field].default}))
            assert getattr(read, field) == getattr(defaults, field), field


def test_worker_settings_are_read_as_users_write_them() -> None:
    fields = from_user(
        WorkerConfig,
        {"drain_grace": "5m", "stop_grace": "2s", "label": ["zone=a", "gpu=yes"],
         "max_tasks": ["big=2"], "allow": ["/usr/bin/*"], "data_dir": Path("/tmp/w")},
    )  # fmt: skip
    config = WorkerConfig(**fields)
    assert (config.drain_grace_s, config.stop_grace_s) == (300, 2)
    assert config.labels == {"zone": "a", "gpu": "yes"}
    assert config.max_tasks == {"big": 2}
    assert config.allow == ["/usr/bin/*"]
    assert config.data_dir == Path("/tmp/w")


def test_a_bad_worker_setting_is_a_clear_error_naming_its_flag() -> None:
    result = CliRunner().invoke(app, ["worker", "--drain-grace", "soon"])
    assert result.exit_code == 1  # (as gridrun master: a setting it cannot read)
    assert "--drain-grace" in result.output
    result = CliRunner().invoke(app, ["worker", "--label", "novalue"])
    assert result.exit_code == 1  # (as gridrun master: a setting it cannot read)
    assert "invalid worker settings" in result.output
