"""Every setting of a master, declared once: each field of `MasterConfig` carries the name a
user gives it (the flag `--NAME`, the variable `GRIDRUN_NAME`, the config file's key `NAME` with
underscores), its help, and how its text is read (seconds as 30s/5m/14d, sizes as 10GiB,
OWNER=W pairs, host:port), as `gridrun.setting` declares. `gridrun master` makes its options
from these fields (gridrun.cli.master_process); tests and programs that embed a master build a
`MasterConfig` directly. The core's tunables default to `ServiceConfig`'s values: no default is
written twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from gridrun.auth import TokenEntry
from gridrun.master.core.config import ServiceConfig
from gridrun.master.wire.rpc import MAX_SLOTS
from gridrun.model import DEFAULT_OUTPUT_CAP
from gridrun.setting import Form, Setting, setting, settings_of
from gridrun.setting import from_user as read_settings
from gridrun.spec import MAX_GPUS

CORE = ServiceConfig()  # the core's defaults


class MasterConfig(BaseModel):
    """Every setting of a master (see the module's docstring)."""

    db: str = setting(
        "gridrun-data/gridrun.db",
        "SQLite file, or postgresql://user@host/db (several masters may share one).",
        name="db",
    )
    db_pool: int = setting(10, "PostgreSQL connections per master.", name="db_pool", ge=1, le=1000)
    db_sync: Literal["full", "normal"] = setting(
        "full", "full (fsync each commit) or normal.", name="db_sync"
    )
    http_host: str = setting(
        "127.0.0.1", "HTTP listen address host:port.", name="http", form=Form.ADDRESS,
        shown="127.0.0.1:9092",
    )  # fmt: skip
    http_port: int = Field(9092, ge=0, le=65535)  # (set by --http)
    grpc_host: str = setting(
        "127.0.0.1", "gRPC listen address host:port.", name="grpc", form=Form.ADDRESS,
        shown="127.0.0.1:50051",
    )  # fmt: skip
    grpc_port: int = Field(50051, ge=0, le=65535)  # (set by --grpc)
    insecure: bool = setting(
        False, "Allow listening beyond loopback without auth.", name="insecure"
    )
    heartbeat_interval_s: float = setting(
        CORE.heartbeat_interval_s, "How often a worker beats, seconds.", name="heartbeat_interval",
        form=Form.SECONDS, gt=0,
    )  # fmt: skip
    liveness_timeout_s: float = setting(
        CORE.liveness_timeout_s, "Seconds of silence before a worker's tasks are lost.",
        name="liveness_timeout", form=Form.SECONDS, gt=0,
    )  # fmt: skip
    max_heartbeats_per_s: float = setting(
        CORE.max_heartbeats_per_s,
        "Heartbeats a second the fleet may send in all: past it, workers beat less often and"
        " their liveness timeout grows to match.",
        name="max_heartbeats", gt=0,
    )  # fmt: skip
    kill_grace_s: float = setting(
        CORE.kill_grace_s, "SIGTERM to SIGKILL, seconds.", name="kill_grace", form=Form.SECONDS,
        ge=0,
    )  # fmt: skip
    output_cap: int = setting(
        DEFAULT_OUTPUT_CAP, "Bytes kept per stream per task (1MiB).", name="output_cap",
        form=Form.SIZE, ge=0,
    )  # fmt: skip
    max_body: int = setting(
        16 * 1024 * 1024, "Largest HTTP request body (16MiB).", name="max_body", form=Form.SIZE,
        gt=0,
    )  # fmt: skip
    shutdown_grace_s: float = setting(
        5.0, "On SIGTERM, how long open requests and worker streams may take to end, seconds.",
        name="shutdown_grace", form=Form.SECONDS, ge=0,
    )  # fmt: skip
    # security (see gridrun.auth, gridrun.transport, `gridrun certs`)
    tokens: list[TokenEntry] = Field(default_factory=list)  # (--tokens, the file's [[tokens]])
    tls_cert: Path | None = setting(None, "Serve HTTPS and gRPC TLS.", name="tls_cert")
    tls_key: Path | None = setting(None, "The key of --tls-cert.", name="tls_key")
    client_ca: Path | None = setting(
        None, "mTLS: workers need a certificate signed by this CA; their id is its name.",
        name="client_ca",
    )  # fmt: skip
    audit_log: Path | None = setting(
        None, "Append audit events (JSON lines) here.", name="audit_log"
    )
    allowed_hosts: list[str] = setting(
        [],
        "A host name clients and browsers use for this master (repeat; a load balancer's,"
        " say). IP addresses, localhost and the TLS certificate's names are always served;"
        " '*' turns the check off.",
        name="allowed_host", form=Form.LIST, envvar="GRIDRUN_ALLOWED_HOSTS",
    )  # fmt: skip
    # distrust of workers: deadlines on the master's clock, quarantine, caps on what they claim
    start_deadline_s: float = setting(
        CORE.start_deadline_s,
        "Seconds a worker has from an assignment to its start; a miss loses the attempt (and"
        " a task's timeout plus the kill grace bound its end the same way).",
        name="start_deadline", form=Form.SECONDS, gt=0,
    )  # fmt: skip
    quarantine_after: int = setting(
        CORE.quarantine_after,
        "Deadlines a worker may miss before it gets no new work for --quarantine-for.",
        name="quarantine_after", ge=1,
    )  # fmt: skip
    quarantine_s: float = setting(
        CORE.quarantine_s, "How long a quarantined worker gets no new work (1h).",
        name="quarantine_for", form=Form.SECONDS, gt=0,
    )  # fmt: skip
    forget_workers_after_s: float = setting(
        CORE.forget_workers_after_s,
        "A worker not heard from this long (and holding nothing) is no longer listed, and its"
        " id may be taken anew (7d).",
        name="forget_workers_after", form=Form.SECONDS, gt=0,
    )  # fmt: skip
    forget_unused_workers_after_s: float = setting(
        CORE.forget_unused_workers_after_s,
        "A worker id that never ran anything, not heard from this long, is forgotten (its"
        " binding too): ids minted and left cost nothing for long.",
        name="forget_unused_workers", form=Form.SECONDS, gt=0,
    )  # fmt: skip
    max_workers_per_token: int = setting(
        CORE.max_workers_per_token,
        "Most worker ids one join token may have bound at once; a new id beyond is refused.",
        name="max_workers_per_token", ge=1,
    )  # fmt: skip
    max_worker_slots: int = setting(
        MAX_SLOTS, "Most slots a worker counts.", name="max_worker_slots", ge=1, le=MAX_SLOTS
    )
    max_worker_gpus: int = setting(
        MAX_GPUS, "Most GPUs a worker counts.", name="max_worker_gpus", ge=0, le=MAX_GPUS
    )
    max_worker_cpus: int = setting(
        65536, "Most CPUs a worker counts.", name="max_worker_cpus", ge=0
    )
    max_worker_memory_mb: int = setting(
        1 << 30, "Most memory (MiB) a worker counts.", name="max_worker_memory_mb", ge=0
    )
    shares: dict[str, float] = setting(
        {},
        "OWNER=W: the owner's weight in fair share (repeat; default 1 each; an owner is a"
        " token's name, or anonymous). Among tasks of equal priority, whoever runs the fewest"
        " for their weight goes next.",
        name="share", form=Form.PAIRS_WEIGHT, envvar="GRIDRUN_SHARES",
    )  # fmt: skip
    max_queued: int = setting(
        CORE.max_queued,
        "Most tasks the grid holds queued: beyond it a submission is answered 429.",
        name="max_queued", ge=1,
    )  # fmt: skip
    retain_s: float = setting(
        CORE.retain_s,
        "Delete ended tasks (with their attempts and output) this long after they end: 30s,"
        " 5m, 12h, 14d.",
        name="retain", form=Form.SECONDS, gt=0, shown="14d",
    )  # fmt: skip
    retain_failed_s: float | None = setting(
        CORE.retain_failed_s,
        "The same for failed, timed-out, lost and rejected tasks (default: --retain).",
        name="retain_failed", form=Form.SECONDS, gt=0,
    )  # fmt: skip
    max_input: int = setting(
        CORE.max_input,
        "Most bytes of input files a task may take, all together (64MiB); an upload or a"
        " submission over it is answered 413.",
        name="max_input", form=Form.SIZE, gt=0,
    )  # fmt: skip
    max_collect: int = setting(
        CORE.max_collect,
        "Most bytes of files collected from one attempt (256MiB): the rest are dropped, and"
        " listed as dropped.",
        name="max_collect", form=Form.SIZE, ge=0,
    )  # fmt: skip
    output_budget: int | None = setting(
        CORE.output_budget,
        "Most task output kept grid-wide (10GiB, 500MiB): beyond it the oldest ended tasks'"
        " output is dropped (the tasks stay). Default: no budget.",
        name="output_budget", form=Form.SIZE, ge=0,
    )  # fmt: skip
    retain_queues: dict[str, float] = setting(
        {},
        "QUEUE=D: the ended tasks of this queue, whatever their state, are deleted D after"
        " they end instead (repeatable; e.g. nightly=90d).",
        name="retain_queue", form=Form.PAIRS_SECONDS, envvar="GRIDRUN_RETAIN_QUEUES",
    )  # fmt: skip
    history_step_s: float = setting(
        CORE.history_step_s,
        "How often the dashboard's charts sample the grid, seconds (720 samples are kept:"
        " an hour at 5 s).",
        name="history_step", form=Form.SECONDS, gt=0, le=3600,
    )  # fmt: skip
    alloc_interval_s: float = setting(
        CORE.alloc_interval_s,
        "How often the allocation queues are looked at (submissions, states), seconds.",
        name="alloc_interval", form=Form.SECONDS, gt=0, le=3600,
    )  # fmt: skip
    alloc_connect_timeout_s: float = setting(
        CORE.alloc_connect_timeout_s,
        "A running allocation none of whose workers joined within this long is cancelled"
        " and counts as a failure.",
        name="alloc_connect_timeout", form=Form.SECONDS, gt=0,
    )  # fmt: skip
    advertise: str = setting(
        CORE.advertise,
        "The gRPC host:port the workers of allocation queues dial (default: --grpc, with this"
        " host's name in place of a wildcard address).",
        name="advertise",
    )  # fmt: skip
    alloc_dir: str = setting(
        CORE.alloc_dir,
        "Where allocation queues keep their batch jobs' files, each queue's in a directory"
        " of its own (the jobs' output too: a directory the nodes share, for it to be read"
        " here). Default: alloc/ beside the SQLite file.",
        name="alloc_dir", shown="",
    )  # fmt: skip
    alloc_backends: list[str] = setting(
        CORE.alloc_backends,
        "A backend allocation queues may use (repeat; default: slurm): slurm, command."
        " command runs the queue's start command on this host as this master's user, so it"
        " is off unless listed here.",
        name="alloc_backend", form=Form.LIST, envvar="GRIDRUN_ALLOC_BACKENDS", shown="",
    )  # fmt: skip
    secret_key_file: Path | None = setting(
        None,
        "The key that seals tasks' secret_env in the database (made 0600 if missing; every"
        " master of one PostgreSQL database needs the same file). Default: secret.key beside"
        " the SQLite file.",
        name="secret_key_file",
    )  # fmt: skip

    @field_validator("db", mode="before")
    @classmethod
    def _db(cls, db: object) -> object:
        return str(db) if isinstance(db, Path) else db

    @model_validator(mode="after")
    def _tls_pairs(self) -> MasterConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("give both tls_cert and tls_key, or neither")
        if self.client_ca is not None and self.tls_cert is None:
            raise ValueError("client_ca (mTLS) needs tls_cert and tls_key")
        return self

    def core(self) -> ServiceConfig:
        """The core's settings: the fields of the same names."""
        names = ServiceConfig.__dataclass_fields__
        return ServiceConfig(**{name: getattr(self, name) for name in names})


def settings() -> dict[str, Setting]:
    """Field name -> what users call it, for every master setting users set by name."""
    return settings_of(MasterConfig)


def from_user(given: Mapping[str, Any]) -> dict[str, Any]:
    """MasterConfig's fields from settings as users write them (see gridrun.setting)."""
    return read_settings(MasterConfig, given)
