"""`gridrun master`: the command that starts a master process. Its options are made from the
master's settings (gridrun.master.settings.MasterConfig, each field declaring what users call
it): a new setting is one field there, and it has its flag, its GRIDRUN_* variable and its
config-file key at once."""

from __future__ import annotations

import asyncio
import functools
import inspect
import typing
from pathlib import Path
from typing import Annotated, Any

import typer

from gridrun.auth import TokenEntry
from gridrun.cli.common import LogFormat, LogLevel, app, fail, guard, setup_logging
from gridrun.master.settings import Form, MasterConfig, Setting, from_user, settings

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


KEYWORD = inspect.Parameter.KEYWORD_ONLY
METAVARS = {
    Form.SECONDS: "DURATION", Form.SIZE: "SIZE", Form.ADDRESS: "HOST:PORT",
    Form.PAIRS_WEIGHT: "OWNER=W", Form.PAIRS_SECONDS: "QUEUE=D", Form.LIST: "HOST",
}  # fmt: skip


def _option(field: str, about: Setting) -> inspect.Parameter:
    """The Typer option of one setting: text for what has a form of its own, else the field's
    type; its default as a user would write it."""
    info = MasterConfig.model_fields[field]
    kind: Any
    default: Any
    if about.form in (Form.PAIRS_WEIGHT, Form.PAIRS_SECONDS, Form.LIST):
        kind, default = list[str] | None, None
    elif about.form is Form.AS_IS:
        kind, default = info.annotation, info.default
        if typing.get_origin(kind) is typing.Literal:
            kind = str  # (Typer reads no Literal: MasterConfig checks the value)
    else:  # read from text (seconds, sizes, host:port)
        kind, default = (str, about.shown) if about.shown else (str | None, None)
    option = typer.Option(
        about.flag, envvar=about.envvar, help=about.help, show_default=bool(about.shown),
        metavar=METAVARS.get(about.form),
    )  # fmt: skip
    return inspect.Parameter(field, KEYWORD, default=default, annotation=Annotated[kind, option])


def _given(
    ctx: typer.Context, params: dict[str, Any], config: Path | None
) -> tuple[dict[str, Any], list[TokenEntry]]:
    """The settings a user gave, by their user names: flags and GRIDRUN_* variables, then
    the config file's for what those left at its default (the rest: MasterConfig's
    defaults). And the file's tokens."""
    from gridrun.cli import master_file

    names = {field: about.name for field, about in settings().items()}
    chosen = {}
    for field, value in params.items():
        source = ctx.get_parameter_source(field)
        if source is not None and source.name != "DEFAULT":
            chosen[names[field]] = value
    if config is None:
        return chosen, []
    from_file, tokens = master_file.read(config, set(names.values()))
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


def _command() -> Any:
    """`_master` with one keyword parameter per setting."""

    def own(name: str, default: Any, annotation: Any) -> inspect.Parameter:
        return inspect.Parameter(name, KEYWORD, default=default, annotation=annotation)

    params = [
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
        own("config", None, ConfigFile),
        *(_option(field, about) for field, about in settings().items()),
        own("tokens", None, TokensOption),
        own("log_level", "info", LogLevel),
        own("log_format", "text", LogFormat),
    ]

    @functools.wraps(_master)
    def master(ctx: typer.Context, **params: Any) -> None:
        _master(ctx, **params)

    master.__signature__ = inspect.Signature(params, return_annotation=None)  # type: ignore[attr-defined]
    master.__annotations__ = {p.name: p.annotation for p in params}
    master.__name__ = "master"
    return master


app.command(name="master")(_command())
