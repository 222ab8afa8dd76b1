"""`gridrun worker`: the command that starts a worker process (its settings: WorkerConfig)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from gridrun.cli.common import LogFormat, LogLevel, app, fail, guard, setup_logging
from gridrun.spec import (
    parse_labels,
    parse_max_tasks,
)


@app.command()
def worker(
    master: Annotated[
        str,
        typer.Option(
            "--master",
            envvar="GRIDRUN_MASTER",
            help="Master gRPC host:port; several, comma-separated, to fail over.",
        ),
    ] = "127.0.0.1:50051",
    slots: Annotated[
        int | None,
        typer.Option(envvar="GRIDRUN_SLOTS", help="Tasks run at once (default: CPU count)."),
    ] = None,
    prefetch: Annotated[
        int | None,
        typer.Option(
            envvar="GRIDRUN_PREFETCH",
            min=0,
            max=4096,
            help="Assignments held beyond the free slots, started as one frees (default:"
            " one per slot; 0: none).",
        ),
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option(envvar="GRIDRUN_LABELS", help="k=v, repeatable (env: space-separated)."),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(envvar="GRIDRUN_DATA_DIR", help="Worker id and outbox live here."),
    ] = None,
    name: Annotated[
        str | None, typer.Option(envvar="GRIDRUN_NAME", help="Worker id on first start.")
    ] = None,
    allow: Annotated[
        list[str] | None,
        typer.Option(
            "--allow",
            envvar="GRIDRUN_ALLOW",
            help="Executables this worker runs:"
            " globs on the resolved path (/usr/bin/*) or names (python3); repeatable."
            " Default: any.",
        ),
    ] = None,
    allow_shell: Annotated[
        bool,
        typer.Option(
            "--allow-shell",
            envvar="GRIDRUN_ALLOW_SHELL",
            help="Run `shell: true` tasks (refused by default).",
        ),
    ] = False,
    run_as: Annotated[
        str | None,
        typer.Option(
            "--run-as",
            envvar="GRIDRUN_RUN_AS",
            help="user[:group] for every task (the worker must run as root); they then share"
            " that identity. A root worker runs each task as a uid of its own by default"
            " (--task-ids); give `--run-as root` to run them as root.",
        ),
    ] = None,
    task_ids: Annotated[
        str | None,
        typer.Option(
            "--task-ids",
            envvar="GRIDRUN_TASK_IDS",
            help="FIRST-LAST: the uids a root worker runs tasks as, one per running task"
            " [default: 2000000000-2000065535; refused if an account uses any of them].",
            show_default=False,
        ),
    ] = None,
    limit_cpu: Annotated[
        int | None, typer.Option(envvar="GRIDRUN_LIMIT_CPU", help="CPU seconds per task.")
    ] = None,
    limit_memory: Annotated[
        int | None,
        typer.Option(envvar="GRIDRUN_LIMIT_MEMORY", help="Address space per task, MiB."),
    ] = None,
    limit_files: Annotated[
        int | None, typer.Option(envvar="GRIDRUN_LIMIT_FILES", help="Open files per task.")
    ] = None,
    limit_processes: Annotated[
        int | None,
        typer.Option(envvar="GRIDRUN_LIMIT_PROCESSES", help="Processes of the task's user."),
    ] = None,
    cwd_mode: Annotated[
        str,
        typer.Option(
            envvar="GRIDRUN_CWD_MODE",
            help="worker (its own directory) or fresh (a"
            " new directory per attempt under the data dir).",
        ),
    ] = "worker",
    cwd_root: Annotated[
        list[str] | None,
        typer.Option(
            "--cwd-root",
            envvar="GRIDRUN_CWD_ROOTS",
            help="A task's own cwd must be under one of these; repeatable.",
        ),
    ] = None,
    env_allow: Annotated[
        list[str] | None,
        typer.Option(
            "--env-allow",
            envvar="GRIDRUN_ENV_ALLOW",
            help="Worker variables tasks"
            " see (globs); repeatable. Default: PATH HOME LANG LC_* TZ USER LOGNAME"
            " TERM TMPDIR.",
        ),
    ] = None,
    drain_grace: Annotated[
        float,
        typer.Option(
            envvar="GRIDRUN_DRAIN_GRACE",
            help="On SIGTERM or drain, seconds running"
            " tasks may take to finish before they are stopped.",
        ),
    ] = 30.0,
    join_token: Annotated[
        str | None,
        typer.Option(
            envvar="GRIDRUN_JOIN_TOKEN",
            help="A worker-role token the master requires (prefer the variable or"
            " --join-token-file: arguments are visible in ps).",
            show_default=False,
        ),
    ] = None,
    join_token_file: Annotated[
        Path | None,
        typer.Option(envvar="GRIDRUN_JOIN_TOKEN_FILE", help="Read the join token from a file."),
    ] = None,
    tls: Annotated[
        bool,
        typer.Option(
            "--tls",
            envvar="GRIDRUN_TLS",
            help="TLS to the master (implied by --tls-ca/--tls-cert).",
        ),
    ] = False,
    tls_ca: Annotated[
        Path | None,
        typer.Option(envvar="GRIDRUN_TLS_CA", help="CA that signed the master's certificate."),
    ] = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option(
            envvar="GRIDRUN_TLS_CERT",
            help="mTLS: this worker's certificate (its name becomes the worker id).",
        ),
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(envvar="GRIDRUN_TLS_KEY")] = None,
    metrics: Annotated[
        str | None,
        typer.Option(
            envvar="GRIDRUN_METRICS",
            help="host:port to serve this worker's Prometheus metrics on (default: off).",
        ),
    ] = None,
    cpus: Annotated[
        int | None,
        typer.Option(envvar="GRIDRUN_CPUS", help="CPU cores to offer tasks (default: all)."),
    ] = None,
    memory_mb: Annotated[
        int | None,
        typer.Option(envvar="GRIDRUN_MEMORY_MB", help="Memory (MiB) to offer (default: all)."),
    ] = None,
    gpus: Annotated[
        int | None,
        typer.Option(envvar="GRIDRUN_GPUS", help="GPUs to offer (default: nvidia-smi -L)."),
    ] = None,
    max_tasks: Annotated[
        list[str] | None,
        typer.Option(
            "--max-tasks",
            envvar="GRIDRUN_MAX_TASKS",
            help="CLASS=N: at most N tasks of that task_class at once here (repeatable).",
        ),
    ] = None,
    containment: Annotated[
        str,
        typer.Option(
            envvar="GRIDRUN_CONTAINMENT",
            help="auto (a cgroup per attempt where possible, else subreaper), cgroup,"
            " subreaper or none.",
        ),
    ] = "auto",
    cgroup_root: Annotated[
        str | None,
        typer.Option(
            envvar="GRIDRUN_CGROUP_ROOT",
            help="The cgroup path under which this worker makes its attempts' groups"
            " (default: its own cgroup).",
        ),
    ] = None,
    enforce_asks: Annotated[
        bool,
        typer.Option(
            envvar="GRIDRUN_ENFORCE_ASKS",
            help="A task's cpu and memory_mb become limits of its cgroup (--no-enforce-asks:"
            " placement only).",
        ),
    ] = True,
    task_pids: Annotated[
        int,
        typer.Option(
            envvar="GRIDRUN_TASK_PIDS", min=0, help="Processes per task at most (0: no cap)."
        ),
    ] = 4096,
    log_level: LogLevel = "info",
    log_format: LogFormat = "text",
) -> None:
    """Start a worker that runs what the master assigns. SIGTERM drains it, then it exits."""
    from pydantic import ValidationError

    from gridrun.worker import hardening
    from gridrun.worker.config import WorkerConfig
    from gridrun.worker.main import run_worker

    setup_logging(log_level, log_format)
    with guard:
        hardening.undumpable()  # tasks of this user cannot read its memory or /proc files
        run_as, task_ids = hardening.task_identity(run_as, task_ids)
        settings: dict[str, Any] = {
            "master": master,
            "prefetch": prefetch,
            "labels": parse_labels(label or []),
            "name": name,
            "base_env": hardening.task_base_env(os.environ),
            "drain_grace_s": drain_grace,
            "allow": allow or [],
            "allow_shell": allow_shell,
            "run_as": run_as,
            "task_ids": task_ids,
            "limit_cpu_s": limit_cpu,
            "limit_address_space_mb": limit_memory,
            "limit_open_files": limit_files,
            "limit_processes": limit_processes,
            "cwd_mode": cwd_mode,
            "cwd_roots": cwd_root or [],
            "join_token": join_token,
            "tls": tls,
            "tls_ca": tls_ca,
            "tls_cert": tls_cert,
            "tls_key": tls_key,
            "metrics": metrics,
            "cpus": cpus,
            "memory_mb": memory_mb,
            "gpus": gpus,
            "max_tasks": parse_max_tasks(max_tasks or []),
            "containment": containment,
            "cgroup_root": cgroup_root,
            "enforce_asks": enforce_asks,
            "task_pids": task_pids,
        }
        if join_token_file is not None:
            hardening.warn_if_readable(join_token_file, "the join token file")
            try:
                settings["join_token"] = join_token_file.read_text().strip()
            except OSError as exc:
                fail(f"cannot read the join token from {join_token_file}: {exc.strerror}")
        if env_allow:
            settings["env_allow"] = env_allow
        if slots is not None:
            settings["slots"] = slots
        if data_dir is not None:
            settings["data_dir"] = data_dir
        try:
            config = WorkerConfig(**settings)
        except ValidationError as exc:
            fail(f"invalid worker settings: {exc}")
        asyncio.run(run_worker(config))
