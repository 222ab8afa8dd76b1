"""`gridrun master`: the command that starts a master process. Its options are made from the
master's settings (gridrun.master.settings.MasterConfig, each field declaring what users call
it): a new setting is one field there, and it has its flag, its GRIDRUN_* variable and its
config-file key at once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from gridrun.auth import TokenEntry
from gridrun.cli import settings_command
from gridrun.cli.common import LogFormat, LogLevel, app, fail, guard, setup_logging
from gridrun.cli.settings_command import own
from gridrun.master.settings import MasterConfig, from_user, settings

ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        envvar="GRIDRUN_CONFIG_FILE",
        help="TOML file with any of these settings (by name, with underscores) and [[tokens]].",
    ),
]
TokensOption = Annotated[
    str | None,
    typer.Option(
        "--tokens",
        envvar="GRIDRUN_TOKENS",
        help="API and join tokens as name:role:sha256:HEX, comma-separated (from"
        " `gridrun token create`); added to the config file's.",
    ),
]


def _given(
    ctx: typer.Context, params: dict[str, Any], config: Path | None
) -> tuple[dict[str, Any], list[TokenEntry]]:
    """The settings a user gave, by their user names: flags and GRIDRUN_* variables, then
    the config file's for what those left at its default (the rest: MasterConfig's
    defaults). And the file's tokens."""
    from gridrun.cli import master_file

    chosen = settings_command.given(ctx, MasterConfig, params)
    if config is None:
        return chosen, []
    names = {about.name for about in settings().values()}
    from_file, tokens = master_file.read(config, names)
    return {**from_file, **chosen}, tokens


def _master(ctx: typer.Context, **params: Any) -> None:
    """Start a master: HTTP API, gRPC for workers, SQLite store."""
    from pydantic import ValidationError

    from gridrun.auth import parse_env_tokens
    from gridrun.errors import InvalidSpec
    from gridrun.master.app import run_master

    setup_logging(params.pop("log_level"), params.pop("log_format"))
    with guard:
        config_file, env_tokens = params.pop("config"), params.pop("tokens")
        given, file_tokens = _given(ctx, params, config_file)
        try:
            tokens = file_tokens + parse_env_tokens(env_tokens or "")
            config = MasterConfig(**from_user(given), tokens=tokens)
        except InvalidSpec as exc:
            fail(f"invalid master settings: {exc.message}")
        except (ValidationError, ValueError) as exc:
            fail(f"invalid master settings: {exc}")
        asyncio.run(run_master(config))


master = settings_command.command(
    "master",
    MasterConfig,
    _master,
    before=[own("config", None, ConfigFile)],
    after=[own("tokens", None, TokensOption), own("log_level", "info", LogLevel),
           own("log_format", "text", LogFormat)],
)  # fmt: skip
app.command(name="master")(master)
