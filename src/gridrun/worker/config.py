"""A worker's settings: one object the CLI fills from flags and GRIDRUN_* variables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from gridrun.model import WORKER_ID, WORKER_ID_RULE
from gridrun.worker.policy import DEFAULT_ENV_ALLOW


def default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "gridrun" / "worker"


class WorkerConfig(BaseModel):
    """Every setting of a worker; the CLI fills it from flags and GRIDRUN_* variables."""

    master: str = "127.0.0.1:50051"  # host:port, or several comma-separated to fail over
    slots: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=4096)
    # assignments taken beyond the free slots, started the moment a slot frees; None: as
    # many as slots (see `prefetch_count`)
    prefetch: int | None = Field(None, ge=0, le=4096)
    labels: dict[str, str] = Field(default_factory=dict)
    data_dir: Path = Field(default_factory=default_data_dir)
    name: str | None = None
    base_env: dict[str, str] = Field(default_factory=dict)
    stop_grace_s: float = Field(10.0, ge=0)  # waiting for the master to acknowledge results
    drain_grace_s: float = Field(30.0, ge=0)  # running tasks may finish within this on a drain
    # the policy: what this worker agrees to run (see gridrun.worker.policy)
    allow: list[str] = Field(default_factory=list)
    allow_shell: bool = False
    run_as: str | None = None
    # a root worker with no run_as: each attempt as a uid of its own from this range
    # (gridrun.worker.identities); None: tasks run as the worker or as run_as
    task_ids: str | None = None
    limit_cpu_s: int | None = Field(None, ge=1)
    limit_address_space_mb: int | None = Field(None, ge=1)
    limit_open_files: int | None = Field(None, ge=1)
    limit_processes: int | None = Field(None, ge=1)
    cwd_mode: Literal["worker", "fresh"] = "worker"
    cwd_roots: list[str] = Field(default_factory=list)
    env_allow: list[str] = Field(default_factory=lambda: list(DEFAULT_ENV_ALLOW))
    # joining the master (see gridrun.transport, `gridrun certs`, `gridrun token create`)
    join_token: str | None = Field(None, repr=False)
    tls: bool = False  # TLS to the master, verified with the system roots unless tls_ca
    tls_ca: Path | None = None
    tls_cert: Path | None = None  # mTLS: this worker's certificate; its id is the common name
    tls_key: Path | None = None
    metrics: str | None = None  # host:port for Prometheus metrics; off by default
    # what tasks may ask of this worker; None: what the machine has (detected)
    cpus: int | None = Field(None, ge=0, le=65536)
    memory_mb: int | None = Field(None, ge=0)
    gpus: int | None = Field(None, ge=0, le=1024)
    max_tasks: dict[str, int] = Field(default_factory=dict)  # task class -> at most at once
    # containment (see gridrun.worker.containment): auto is cgroups where they can be made
    containment: Literal["auto", "cgroup", "subreaper", "none"] = "auto"
    cgroup_root: str | None = None  # a cgroup path for this worker's subtree (else its own)
    enforce_asks: bool = True  # a task's cpu and memory_mb become limits of its cgroup
    task_pids: int = Field(4096, ge=0)  # processes per task at most (pids.max; 0: no cap)

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
