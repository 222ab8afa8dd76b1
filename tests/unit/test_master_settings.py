"""The master's settings are declared once (gridrun.master.settings): every field has its flag,
variable and config-file name, `gridrun master` offers each of them, the default a user is
shown is the one the master uses, and the core's defaults are not written a second time."""

from __future__ import annotations

from typing import Any

import typer

from gridrun.cli.main import app
from gridrun.master.core.config import ServiceConfig
from gridrun.master.settings import Form, MasterConfig, from_user, settings

SET_OTHERWISE = {"http_port", "grpc_port", "tokens"}  # by --http / --grpc; --tokens and [[tokens]]


def _master_params() -> dict[str, Any]:
    command: Any = typer.main.get_command(app)
    return {p.name: p for p in command.commands["master"].params}


def test_every_setting_of_a_master_has_its_flag_variable_and_file_name() -> None:
    declared = settings()
    assert set(MasterConfig.model_fields) - set(declared) == SET_OTHERWISE
    params = _master_params()
    for field, about in declared.items():
        param = params[field]
        assert about.flag in param.opts, field
        assert param.envvar == about.envvar
        assert about.envvar.startswith("GRIDRUN_")
        assert about.help, field
    names = [about.name for about in declared.values()]
    assert len(names) == len(set(names))  # one name, one setting


def test_the_default_a_user_is_shown_is_the_default_the_master_uses() -> None:
    defaults = MasterConfig()
    for field, about in settings().items():
        if not about.shown:
            continue
        read = MasterConfig(**from_user({about.name: about.shown}))  # (as a flag's text)
        assert getattr(read, field) == getattr(defaults, field), field
        if about.form is Form.ADDRESS:
            port = field.removesuffix("_host") + "_port"
            assert getattr(read, port) == getattr(defaults, port), field


def test_the_core_takes_its_defaults_from_one_place() -> None:
    assert MasterConfig().core() == ServiceConfig()
    assert set(ServiceConfig.__dataclass_fields__) <= set(MasterConfig.model_fields)


def test_settings_are_read_as_users_write_them() -> None:
    fields = from_user(
        {"http": "[::1]:9000", "retain": "2d", "output_budget": "1GiB", "share": ["ci=3"],
         "retain_queue": ["nightly=90d"], "quarantine_for": "30m", "allowed_host": ["a.b"]}
    )  # fmt: skip
    config = MasterConfig(**fields)
    assert (config.http_host, config.http_port) == ("::1", 9000)
    assert config.retain_s == 2 * 86400
    assert config.output_budget == 1 << 30
    assert config.shares == {"ci": 3.0}
    assert config.retain_queues == {"nightly": 90 * 86400}
    assert config.quarantine_s == 1800
    assert config.allowed_hosts == ["a.b"]
