"""A command whose options are made from a settings object's fields (see gridrun.setting):
each declared field becomes one option with its flag, its GRIDRUN_* variable, its help and its
default as a user writes it; the command is told only what the user gave."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Annotated, Any

import typer
from pydantic import BaseModel

from gridrun.setting import REPEATED, Form, Setting, settings_of

KEYWORD = inspect.Parameter.KEYWORD_ONLY
METAVARS = {
    Form.SECONDS: "DURATION", Form.SIZE: "SIZE", Form.ADDRESS: "HOST:PORT",
    Form.PAIRS_WEIGHT: "OWNER=W", Form.PAIRS_SECONDS: "QUEUE=D", Form.LIST: "TEXT",
    Form.LABELS: "K=V", Form.CLASS_COUNTS: "CLASS=N",
}  # fmt: skip


def option(model: type[BaseModel], field: str, about: Setting) -> inspect.Parameter:
    """The Typer option of one setting: text for what has a form of its own, else the field's
    type; its default as a user would write it."""
    info = model.model_fields[field]
    kind: Any
    default: Any
    if about.form in REPEATED:
        kind, default = list[str] | None, None
    elif about.form is Form.AS_IS:
        kind = info.annotation
        default = None if info.default_factory is not None else info.default
        if typing.get_origin(kind) is typing.Literal:
            kind = str  # (Typer reads no Literal: the settings object checks the value)
    else:  # read from text (seconds, sizes, host:port)
        kind, default = (str, about.shown) if about.shown else (str | None, None)
    flags = [about.flag] if kind is not bool else [f"{about.flag}/--no-{about.flag[2:]}"]
    if kind is bool and not info.default:
        flags = [about.flag]  # (off by default: only the flag that turns it on)
    # the default as a user writes it, where the option's own is None (made when needed)
    shown = about.shown if default is None and about.shown else bool(about.shown)
    option = typer.Option(
        *flags, envvar=about.envvar, help=about.help, show_default=shown,
        metavar=METAVARS.get(about.form),
    )  # fmt: skip
    return inspect.Parameter(field, KEYWORD, default=default, annotation=Annotated[kind, option])


def given(ctx: typer.Context, model: type[BaseModel], params: dict[str, Any]) -> dict[str, Any]:
    """The settings of `model` the user gave (a flag or a variable), by their user names;
    what was left at its default is not there (the settings object's default stands)."""
    names = {field: about.name for field, about in settings_of(model).items()}
    chosen = {}
    for field, value in params.items():
        source = ctx.get_parameter_source(field)
        if field in names and source is not None and source.name != "DEFAULT":
            chosen[names[field]] = value
    return chosen


def own(name: str, default: Any, annotation: Any) -> inspect.Parameter:
    """A parameter of the command beside its settings (--config, --log-level, ...)."""
    return inspect.Parameter(name, KEYWORD, default=default, annotation=annotation)


def command(
    name: str,
    model: type[BaseModel],
    run: Callable[..., None],
    before: list[inspect.Parameter],
    after: list[inspect.Parameter],
) -> Callable[..., None]:
    """`run(ctx, **params)` as a Typer command with the `before` parameters, one option per
    setting of `model`, then the `after` ones. Its help is `run`'s docstring."""
    params = [
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
        *before,
        *(option(model, field, about) for field, about in settings_of(model).items()),
        *after,
    ]

    @functools.wraps(run)
    def made(ctx: typer.Context, **params: Any) -> None:
        run(ctx, **params)

    made.__signature__ = inspect.Signature(params, return_annotation=None)  # type: ignore[attr-defined]
    made.__annotations__ = {p.name: p.annotation for p in params}
    made.__name__ = name
    return made
