"""A worker's settings, declared once: each field of `WorkerConfig` that users set carries its
flag, its GRIDRUN_* variable, its help and how its text is read (see gridrun.setting);
`gridrun worker` makes its options from them (gridrun.cli.worker_process)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from gridrun.model import WORKER_ID, WORKER_ID_RULE
from gridrun.setting import Form, setting
from gridrun.worker.policy import DEFAULT_ENV_ALLOW


def default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "gridrun" / "worker"


class WorkerConfig(BaseModel):
    """Every setting of a worker; the CLI fills it from flags and GRIDRUN_* variables."""

    master: str = setting(
        "127.0.0.1:50051", "Master gRPC host:port; several, comma-separated, to fail over.",
        name="master",
    )  # fmt: skip
    slots: int = setting(
        None, "Tasks run at once (default: CPU count).", name="slots", shown="",
        factory=lambda: os.cpu_count() or 1, ge=1, le=4096,
    )  # fmt: skip
    # assignments taken beyond the free slots, started the moment a slot frees; None: as
    # many as slots (see `prefetch_count`)
    prefetch: int | None = setting(
        None, "Assignments held beyond the free slots, started as one frees (default: one per"
        " slot; 0: none).", name="prefetch", ge=0, le=4096,
    )  # fmt: skip
    labels: dict[str, str] = setting(
        None, "k=v, repeatable (env: space-separated).", name="label", form=Form.LABELS,
        envvar="GRIDRUN_LABELS", factory=dict,
    )  # fmt: skip
    data_dir: Path = setting(
        None, "Worker id and outbox live here.", name="data_dir",
        shown="~/.local/share/gridrun/worker", factory=default_data_dir,
    )  # fmt: skip
    name: str | None = setting(None, "Worker id on first start.", name="name")
    base_env: dict[str, str] = Field(default_factory=dict)  # (the worker's own: not a setting)
    stop_grace_s: float = setting(
        10.0, "On stopping, seconds to wait for the master to acknowledge the results held.",
        name="stop_grace", form=Form.SECONDS, ge=0,
    )  # fmt: skip
    drain_grace_s: float = setting(
        30.0, "On SIGTERM or drain, seconds running tasks may take to finish before they are"
        " stopped.", name="drain_grace", form=Form.SECONDS, ge=0,
    )  # fmt: skip
    idle_timeout_s: float | None = setting(
        None, "Leave (exit 0) after this long with nothing to run, e.g. 5m: as a worker of a"
        " cluster's allocation gives its node back.", name="idle_timeout", form=Form.SECONDS,
        gt=0,
    )  # fmt: skip
    time_limit_s: float | None = setting(
        None, "Leave (exit 0) this long after starting, e.g. 55m (an allocation's walltime less"
        " a margin); until then it is sent only tasks whose timeout ends before it.",
        name="time_limit", form=Form.SECONDS, gt=0,
    )  # fmt: skip
    # the policy: what this worker agrees to run (see gridrun.worker.policy)
    allow: list[str] = setting(
        None, "Executables this worker runs: globs on the resolved path (/usr/bin/*) or names"
        " (python3); repeatable. Default: any.", name="allow", form=Form.LIST, factory=list,
    )  # fmt: skip
    allow_shell: bool = setting(
        False, "Run `shell: true` tasks and scripts (refused by default).", name="allow_shell",
        shown="",
    )  # fmt: skip
    run_as: str | None = setting(
        None, "user[:group] for every task (the worker must run as root); they then share that"
        " identity. A root worker runs each task as a uid of its own by default (--task-ids);"
        " give `--run-as root` to run them as root.", name="run_as",
    )  # fmt: skip
    # a root worker with no run_as: each attempt as a uid of its own from this range
    # (gridrun.worker.identities); None: tasks run as the worker or as run_as
    task_ids: str | None = setting(
        None, "FIRST-LAST: the uids a root worker runs tasks as, one per running task"
        " [default: 2000000000-2000065535; refused if an account uses any of them].",
        name="task_ids",
    )  # fmt: skip
    limit_cpu_s: int | None = setting(None, "CPU seconds per task.", name="limit_cpu", ge=1)
    limit_address_space_mb: int | None = setting(
        None, "Address space per task, MiB.", name="limit_memory", ge=1
    )
    limit_open_files: int | None = setting(None, "Open files per task.", name="limit_files", ge=1)
    limit_processes: int | None = setting(
        None, "Processes of the task's user.", name="limit_processes", ge=1
    )
    cwd_mode: Literal["worker", "fresh"] = setting(
        "worker", "worker (its own directory) or fresh (a new directory per attempt under the"
        " data dir).", name="cwd_mode",
    )  # fmt: skip
    cwd_roots: list[str] = setting(
        None, "A task's own cwd must be under one of these; repeatable.", name="cwd_root",
        form=Form.LIST, envvar="GRIDRUN_CWD_ROOTS", factory=list,
    )  # fmt: skip
    env_allow: list[str] = setting(
        None, "Worker variables tasks see (globs); repeatable. Default: "
        + " ".join(DEFAULT_ENV_ALLOW) + ".", name="env_allow", form=Form.LIST,
        factory=lambda: list(DEFAULT_ENV_ALLOW),
    )  # fmt: skip
    # joining the master (see gridrun.transport, `gridrun certs`, `gridrun token create`)
    join_token: str | None = setting(
        None, "A worker-role token the master requires (prefer the variable or"
        " --join-token-file: arguments are visible in ps).", name="join_token", repr=False,
    )  # fmt: skip
    # TLS to the master, verified with the system roots unless tls_ca
    tls: bool = setting(
        False, "TLS to the master (implied by --tls-ca/--tls-cert).", name="tls", shown=""
    )
    tls_ca: Path | None = setting(None, "CA that signed the master's certificate.", name="tls_ca")
    tls_cert: Path | None = setting(
        None, "mTLS: this worker's certificate (its name becomes the worker id).",
        name="tls_cert",
    )  # fmt: skip
    tls_key: Path | None = setting(None, "mTLS: the key of --tls-cert.", name="tls_key")
    metrics: str | None = setting(
        None, "host:port to serve this worker's Prometheus metrics on (default: off).",
        name="metrics",
    )  # fmt: skip
    # what tasks may ask of this worker; None: what the machine has (detected)
    cpus: int | None = setting(
        None, "CPU cores to offer tasks (default: all).", name="cpus", ge=0, le=65536
    )
    memory_mb: int | None = setting(
        None, "Memory (MiB) to offer (default: all).", name="memory_mb", ge=0
    )
    gpus: int | None = setting(
        None, "GPUs to offer (default: nvidia-smi -L).", name="gpus", ge=0, le=1024
    )
    max_tasks: dict[str, int] = setting(
        None, "CLASS=N: at most N tasks of that task_class at once here (repeatable).",
        name="max_tasks", form=Form.CLASS_COUNTS, factory=dict,
    )  # fmt: skip
    # containment (see gridrun.worker.containment): auto is cgroups where they can be made
    containment: Literal["auto", "cgroup", "subreaper", "none"] = setting(
        "auto", "auto (a cgroup per attempt where possible, else subreaper), cgroup, subreaper"
        " or none.", name="containment",
    )  # fmt: skip
    cgroup_root: str | None = setting(
        None, "The cgroup path under which this worker makes its attempts' groups (default:"
        " its own cgroup).", name="cgroup_root",
    )  # fmt: skip
    enforce_asks: bool = setting(
        True, "A task's cpu and memory_mb become limits of its cgroup (--no-enforce-asks:"
        " placement only).", name="enforce_asks", shown="",
    )  # fmt: skip
    task_pids: int = setting(
        4096, "Processes per task at most (0: no cap).", name="task_pids", ge=0
    )

    @field_validator("name")
    @classmethod
    def _worker_id(cls, name: str | None) -> str | None:
        if name is not None and not WORKER_ID.match(name):
            raise ValueError(f"a worker name is {WORKER_ID_RULE}")
        return name

    @field_validator("master")
    @classmethod
    def _masters(cls, master: str) -> str:
        if not [a for a in master.split(",") if a.strip()]:
            raise ValueError("give a master address host:port (or several, comma-separated)")
        return master

    @property
    def masters(self) -> list[str]:
        """The master addresses, in the order they are tried."""
        return [a.strip() for a in self.master.split(",") if a.strip()]

    @property
    def prefetch_count(self) -> int:
        """Assignments held beyond the free slots: --prefetch, else one per slot (bench/
        throughput.py: a slot that waits on the master after every task idles a round trip;
        one held task each keeps it busy, more buys nothing measurable)."""
        return self.slots if self.prefetch is None else self.prefetch

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.tls_ca is not None or self.tls_cert is not None
