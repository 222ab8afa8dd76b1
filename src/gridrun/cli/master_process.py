"""`gridrun master`: the command that starts a master process (its settings: MasterSettings)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from gridrun.cli import render
from gridrun.cli.common import LogFormat, LogLevel, app, fail, guard, setup_logging
from gridrun.spec import (
    parse_duration,
    parse_retain_queues,
    parse_shares,
    parse_size,
)


@app.command()
def master(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            envvar="GRIDRUN_CONFIG_FILE",
            help="TOML file with any of these settings (by name) and \\[\\[tokens]].",
        ),
    ] = None,
    db: Annotated[
        str,
        typer.Option(
            envvar="GRIDRUN_DB",
            help="SQLite file, or postgresql://user@host/db (several masters may share one).",
        ),
    ] = "gridrun-data/gridrun.db",
    http: Annotated[
        str, typer.Option(envvar="GRIDRUN_HTTP", help="HTTP listen address host:port.")
    ] = "127.0.0.1:9092",
    grpc: Annotated[
        str, typer.Option(envvar="GRIDRUN_GRPC", help="gRPC listen address host:port.")
    ] = "127.0.0.1:50051",
    insecure: Annotated[
        bool,
        typer.Option(
            envvar="GRIDRUN_INSECURE", help="Allow listening beyond loopback without auth."
        ),
    ] = False,
    db_sync: Annotated[
        str, typer.Option(envvar="GRIDRUN_DB_SYNC", help="full (fsync each commit) or normal.")
    ] = "full",
    db_pool: Annotated[
        int, typer.Option(envvar="GRIDRUN_DB_POOL", help="PostgreSQL connections per master.")
    ] = 10,
    heartbeat_interval: Annotated[
        float, typer.Option(envvar="GRIDRUN_HEARTBEAT_INTERVAL", help="Seconds.")
    ] = 2.0,
    liveness_timeout: Annotated[
        float,
        typer.Option(
            envvar="GRIDRUN_LIVENESS_TIMEOUT",
            help="Seconds of silence before a worker's tasks are lost.",
        ),
    ] = 10.0,
    max_heartbeats: Annotated[
        float,
        typer.Option(
            envvar="GRIDRUN_MAX_HEARTBEATS",
            help="Heartbeats a second the fleet may send in all: past it, workers beat less"
            " often and their liveness timeout grows to match.",
        ),
    ] = 100.0,
    kill_grace: Annotated[
        float, typer.Option(envvar="GRIDRUN_KILL_GRACE", help="SIGTERM to SIGKILL, seconds.")
    ] = 5.0,
    output_cap: Annotated[
        int, typer.Option(envvar="GRIDRUN_OUTPUT_CAP", help="Bytes kept per stream per task.")
    ] = 1024 * 1024,
    max_body: Annotated[
        int, typer.Option(envvar="GRIDRUN_MAX_BODY", help="Largest HTTP request body, bytes.")
    ] = 16 * 1024 * 1024,
    tokens: Annotated[
        str | None,
        typer.Option(
            envvar="GRIDRUN_TOKENS",
            help="API and join tokens as name:role:sha256:HEX, comma-separated (from"
            " `gridrun token create`); added to the config file's.",
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option(envvar="GRIDRUN_TLS_CERT", help="Serve HTTPS and gRPC TLS.")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(envvar="GRIDRUN_TLS_KEY")] = None,
    client_ca: Annotated[
        Path | None,
        typer.Option(
            envvar="GRIDRUN_CLIENT_CA",
            help="mTLS: workers need a certificate signed by this CA; their id is its name.",
        ),
    ] = None,
    audit_log: Annotated[
        Path | None,
        typer.Option(envvar="GRIDRUN_AUDIT_LOG", help="Append audit events (JSON lines) here."),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            envvar="GRIDRUN_ALLOWED_HOSTS",
            help="A host name clients and browsers use for this master (repeat; a load"
            " balancer's, say). IP addresses, localhost and the TLS certificate's names are"
            " always served; '*' turns the check off.",
        ),
    ] = None,
    secret_key_file: Annotated[
        Path | None,
        typer.Option(
            envvar="GRIDRUN_SECRET_KEY_FILE",
            help="The key that seals tasks' secret_env in the database (made 0600 if missing;"
            " every master of one PostgreSQL database needs the same file). Default:"
            " secret.key beside the SQLite file.",
        ),
    ] = None,
    start_deadline: Annotated[
        float,
        typer.Option(
            envvar="GRIDRUN_START_DEADLINE",
            help="Seconds a worker has from an assignment to its start; a miss loses the"
            " attempt (and a task's timeout plus the kill grace bound its end the same way).",
        ),
    ] = 60.0,
    quarantine_after: Annotated[
        int,
        typer.Option(
            envvar="GRIDRUN_QUARANTINE_AFTER",
            help="Deadlines a worker may miss before it gets no new work for an hour.",
        ),
    ] = 3,
    max_worker_slots: Annotated[
        int, typer.Option(envvar="GRIDRUN_MAX_WORKER_SLOTS", help="Most slots a worker counts.")
    ] = 4096,
    max_worker_gpus: Annotated[
        int, typer.Option(envvar="GRIDRUN_MAX_WORKER_GPUS", help="Most GPUs a worker counts.")
    ] = 1024,
    forget_workers_after: Annotated[
        float,
        typer.Option(
            envvar="GRIDRUN_FORGET_WORKERS_AFTER",
            help="Seconds after which a worker not heard from (and holding nothing) is no"
            " longer listed, and its id may be taken anew.",
        ),
    ] = 7 * 24 * 3600.0,
    forget_unused_workers: Annotated[
        float,
        typer.Option(
            envvar="GRIDRUN_FORGET_UNUSED_WORKERS",
            help="Seconds after which a worker id that never ran anything, not heard from,"
            " is forgotten (its binding too): ids minted and left cost nothing for long.",
        ),
    ] = 600.0,
    max_workers_per_token: Annotated[
        int,
        typer.Option(
            envvar="GRIDRUN_MAX_WORKERS_PER_TOKEN",
            min=1,
            help="Most worker ids one join token may have bound at once; a new id beyond"
            " is refused.",
        ),
    ] = 10_000,
    share: Annotated[
        list[str] | None,
        typer.Option(
            envvar="GRIDRUN_SHARES",
            help="OWNER=W: the owner's weight in fair share (repeat; default 1 each; an owner is"
            " a token's name, or anonymous). Among tasks of equal priority, whoever runs the"
            " fewest for their weight goes next.",
        ),
    ] = None,
    max_queued: Annotated[
        int,
        typer.Option(
            envvar="GRIDRUN_MAX_QUEUED",
            help="Most tasks the grid holds queued: beyond it a submission is answered 429.",
        ),
    ] = 10_000_000,
    retain: Annotated[
        str,
        typer.Option(
            envvar="GRIDRUN_RETAIN",
            help="Delete ended tasks (with their attempts and output) this long after they end:"
            " 30s, 5m, 12h, 14d.",
        ),
    ] = "14d",
    retain_failed: Annotated[
        str | None,
        typer.Option(
            envvar="GRIDRUN_RETAIN_FAILED",
            help="The same for failed, timed-out, lost and rejected tasks (default: --retain).",
        ),
    ] = None,
    retain_queue: Annotated[
        list[str] | None,
        typer.Option(
            envvar="GRIDRUN_RETAIN_QUEUES",
            help="QUEUE=D: the ended tasks of this queue, whatever their state, are deleted D"
            " after they end instead (repeatable; e.g. nightly=90d).",
        ),
    ] = None,
    output_budget: Annotated[
        str | None,
        typer.Option(
            envvar="GRIDRUN_OUTPUT_BUDGET",
            help="Most task output kept grid-wide (10GiB, 500MiB): beyond it the oldest ended"
            " tasks' output is dropped (the tasks stay). Default: no budget.",
        ),
    ] = None,
    log_level: LogLevel = "info",
    log_format: LogFormat = "text",
) -> None:
    """Start a master: HTTP API, gRPC for workers, SQLite store."""
    from pydantic import ValidationError

    from gridrun.auth import parse_env_tokens
    from gridrun.cli import master_file
    from gridrun.master.app import MasterConfig, run_master

    setup_logging(log_level, log_format)
    with guard:
        s, file_tokens = master_file.merge(ctx, dict(ctx.params), config)
        try:
            http_host, http_port = render.split_address(str(s["http"]))
            grpc_host, grpc_port = render.split_address(str(s["grpc"]))
            settings = MasterConfig(
                db=s["db"],
                db_sync=s["db_sync"],
                db_pool=s["db_pool"],
                http_host=http_host,
                http_port=http_port,
                grpc_host=grpc_host,
                grpc_port=grpc_port,
                insecure=s["insecure"],
                heartbeat_interval_s=s["heartbeat_interval"],
                liveness_timeout_s=s["liveness_timeout"],
                max_heartbeats_per_s=s["max_heartbeats"],
                kill_grace_s=s["kill_grace"],
                output_cap=s["output_cap"],
                max_body=s["max_body"],
                tokens=file_tokens + parse_env_tokens(s["tokens"] or ""),
                tls_cert=s["tls_cert"],
                tls_key=s["tls_key"],
                client_ca=s["client_ca"],
                audit_log=s["audit_log"],
                allowed_hosts=list(s["allowed_host"] or []),
                secret_key_file=s["secret_key_file"],
                start_deadline_s=s["start_deadline"],
                quarantine_after=s["quarantine_after"],
                max_worker_slots=s["max_worker_slots"],
                max_worker_gpus=s["max_worker_gpus"],
                forget_workers_after_s=s["forget_workers_after"],
                forget_unused_workers_after_s=s["forget_unused_workers"],
                max_workers_per_token=s["max_workers_per_token"],
                shares=parse_shares(s["share"] or []),
                max_queued=s["max_queued"],
                retain_s=parse_duration(s["retain"], "--retain"),
                retain_failed_s=(
                    parse_duration(s["retain_failed"], "--retain-failed")
                    if s["retain_failed"]
                    else None
                ),
                retain_queues=parse_retain_queues(s["retain_queue"] or []),
                output_budget=(
                    parse_size(s["output_budget"], "--output-budget")
                    if s["output_budget"]
                    else None
                ),
            )
        except (ValidationError, ValueError) as exc:
            fail(f"invalid master settings: {exc}")
        asyncio.run(run_master(settings))
