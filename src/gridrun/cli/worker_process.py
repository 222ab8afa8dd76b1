"""`gridrun worker`: the command that starts a worker process. Its options are made from the
worker's settings (gridrun.worker.config.WorkerConfig, each field declaring what users call
it): a new setting is one field there, with its flag and its GRIDRUN_* variable at once."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from gridrun.cli import settings_command
from gridrun.cli.common import LogFormat, LogLevel, app, fail, guard, setup_logging
from gridrun.cli.settings_command import own
from gridrun.worker.config import WorkerConfig

JoinTokenFile = Annotated[
    Path | None,
    typer.Option(
        "--join-token-file",
        envvar="GRIDRUN_JOIN_TOKEN_FILE",
        help="Read the join token from a file.",
    ),
]


def _worker(ctx: typer.Context, **params: Any) -> None:
    """Start a worker that runs what the master assigns. SIGTERM drains it, then it exits."""
    from pydantic import ValidationError

    from gridrun.errors import InvalidSpec
    from gridrun.setting import from_user
    from gridrun.worker import hardening
    from gridrun.worker.main import run_worker

    setup_logging(params.pop("log_level"), params.pop("log_format"))
    with guard:
        hardening.undumpable()  # tasks of this user cannot read its memory or /proc files
        join_token_file: Path | None = params.pop("join_token_file")
        try:
            fields = from_user(WorkerConfig, settings_command.given(ctx, WorkerConfig, params))
        except InvalidSpec as exc:
            fail(f"invalid worker settings: {exc.message}")
        except ValueError as exc:
            fail(f"invalid worker settings: {exc}")
        fields["run_as"], fields["task_ids"] = hardening.task_identity(
            fields.get("run_as"), fields.get("task_ids")
        )
        fields["base_env"] = hardening.task_base_env(os.environ)
        if join_token_file is not None:
            hardening.warn_if_readable(join_token_file, "the join token file")
            try:
                fields["join_token"] = join_token_file.read_text().strip()
            except OSError as exc:
                fail(f"cannot read the join token from {join_token_file}: {exc.strerror}")
        try:
            config = WorkerConfig(**fields)
        except ValidationError as exc:
            fail(f"invalid worker settings: {exc}")
        asyncio.run(run_worker(config))


worker = settings_command.command(
    "worker",
    WorkerConfig,
    _worker,
    before=[],
    after=[own("join_token_file", None, JoinTokenFile), own("log_level", "info", LogLevel),
           own("log_format", "text", LogFormat)],
)  # fmt: skip
app.command(name="worker")(worker)
