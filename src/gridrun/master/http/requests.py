"""What the HTTP API takes (pydantic models of request bodies) and their conversion to the
domain (`TaskIn.to_spec`). What it answers is `schemas`."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from gridrun.arrays import MAX_ARRAY
from gridrun.errors import InvalidSpec
from gridrun.files import MAX_GLOBS, MAX_INPUTS
from gridrun.master.http.file_schemas import InputIn
from gridrun.model import DEFAULT_QUEUE, Placement, RetryPolicy, Sealed, TaskSpec
from gridrun.resources import NO_RESOURCES, Resources
from gridrun.spec import (
    MAX_AFTER,
    MAX_ATTEMPTS,
    MAX_BACKOFF_S,
    MAX_CONCURRENCY,
    MAX_CPU,
    MAX_GPUS,
    MAX_MEMORY_MB,
    MAX_PRIORITY,
    MAX_RETAIN_S,
    MAX_SCRIPT_BYTES,
    MAX_STDIN_BYTES,
    check_env,
    make_spec,
)

MAX_BATCH = 10_000
Seal = Callable[[Mapping[str, str]], Sealed]


def _decoded(text: str | None, field: str) -> bytes | None:
    if text is None:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):  # (ValueError: a character beyond ASCII)
        raise InvalidSpec(f"{field} is not base64 (RFC 4648, with padding)") from None


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class RetryIn(_In):
    """Backoff between tries: initial_s, then x factor each time, at most max_s."""

    initial_s: Annotated[float, Field(ge=0, le=MAX_BACKOFF_S)] = 1.0
    factor: Annotated[float, Field(ge=1, le=100)] = 2.0
    max_s: Annotated[float, Field(ge=0, le=MAX_BACKOFF_S)] = 60.0
    on_exit_codes: Annotated[list[int], Field(max_length=256)] | None = Field(
        None,
        description="Retry a failure only for these exit codes (timeouts and lost tasks"
        " are always retried while tries remain).",
    )


class TaskIn(_In):
    """One task. Give `cmd` (a command line, split like a shell would, or run by /bin/sh when
    `shell` is true) or `argv` (the exact program and arguments)."""

    cmd: str | None = Field(None, examples=["echo hello"])
    argv: list[str] | None = Field(None, examples=[["python3", "train.py", "--epochs", "3"]])
    shell: bool = False
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Variables for the process; shown to every reader (use secret_env for"
        " secrets).",
    )
    secret_env: dict[str, str] = Field(
        default_factory=dict,
        description="Variables for the process that are never shown: the API, CLI, dashboard,"
        " logs and audit log give their names only, and the database keeps them sealed with"
        " the master's key. They win over `env` on a clash.",
    )
    cwd: str | None = None
    timeout_s: Annotated[float, Field(gt=0)] | None = None
    priority: Annotated[int, Field(ge=-MAX_PRIORITY, le=MAX_PRIORITY)] = 0
    labels: dict[str, str] = Field(
        default_factory=dict, description="Run only on workers with all these labels."
    )
    name: str | None = None
    max_attempts: Annotated[int, Field(ge=1, le=MAX_ATTEMPTS)] = Field(
        1, description="Tries in all. Default 1: a command may not be safe to run twice."
    )
    retry: RetryIn | None = None
    queue_timeout_s: Annotated[float, Field(gt=0)] | None = Field(
        None, description="End `expired` if not started within this many seconds."
    )
    idempotency_key: str | None = Field(
        None, description="Submitting the same key again returns the existing task."
    )
    on: str | None = Field(
        None,
        description="Run only on workers whose labels satisfy every term (comma-separated):"
        " k=v, k!=v, k in (a,b), k notin (a,b), k (has it), !k (has it not).",
        examples=["zone in (a,b), gpu, !spot"],
    )
    cpu: Annotated[float, Field(ge=0, le=MAX_CPU)] = Field(
        0, description="CPU cores it needs free on a worker (0: none counted)."
    )
    memory_mb: Annotated[int, Field(ge=0, le=MAX_MEMORY_MB)] = Field(
        0, description="Memory (MiB) it needs free on a worker."
    )
    gpus: Annotated[int, Field(ge=0, le=MAX_GPUS)] = Field(
        0, description="GPUs it needs; their indices are in CUDA_VISIBLE_DEVICES."
    )
    after: Annotated[list[str], Field(max_length=MAX_AFTER)] = Field(
        default_factory=list,
        description="Run only once these tasks have succeeded (it ends `skipped` if one does"
        " not). Task ids, or in a batch the `name` of another task of the batch, so a whole"
        " graph goes in one request; a cycle is refused.",
    )

    task_class: str | None = Field(
        None,
        description="Its class: a worker started with --max-tasks CLASS=N runs at most N"
        " tasks of a class at once.",
    )
    placement: Literal["spread", "pack"] = Field(
        "spread",
        description="spread: the least loaded worker that fits; pack: the busiest that has"
        " room (fill one worker before the next).",
    )
    queue: str = Field(
        DEFAULT_QUEUE,
        description="A queue name (1-64 of A-Z a-z 0-9 _ . @ -), for quotas and for finding"
        " tasks; owners are served in turn within and across queues.",
    )
    concurrency_key: str | None = Field(
        None,
        description="At most concurrency_limit tasks with this key run at once across the"
        " whole grid; the rest wait in order.",
    )
    concurrency_limit: Annotated[int, Field(ge=1, le=MAX_CONCURRENCY)] | None = None
    retain_s: Annotated[float, Field(gt=0, le=MAX_RETAIN_S)] | None = Field(
        None,
        description="Keep it this long after it ends (seconds), whatever the grid's --retain.",
    )
    stdin_base64: Annotated[str, Field(max_length=(MAX_STDIN_BYTES + 2) // 3 * 4)] | None = Field(
        None,
        description="What the process reads on its standard input, base64 (at most"
        f" {MAX_STDIN_BYTES:,} bytes once decoded); stored with the task and given to"
        " every attempt. Without it, stdin is /dev/null.",
    )
    script_base64: Annotated[str, Field(max_length=(MAX_SCRIPT_BYTES + 2) // 3 * 4)] | None = Field(
        None,
        description="A script to run as a file on the worker, base64 (at most"
        f" {MAX_SCRIPT_BYTES:,} bytes); `argv` are its arguments (none: []), no `cmd`."
        " Its #! line names the interpreter, else /bin/sh runs it. Counted as a shell task"
        " by worker policy (a worker runs it only with --allow-shell).",
    )

    inputs: Annotated[list[InputIn], Field(max_length=MAX_INPUTS)] | None = Field(
        None,
        description="Files written into each attempt's own working directory before it runs"
        " (uploaded first: PUT /v1/inputs/SHA256); at most the master's --max-input in all.",
    )
    collect: Annotated[list[str], Field(max_length=MAX_GLOBS)] | None = Field(
        None,
        description="Globs, relative to the working directory (`*` within a directory, `**`"
        " across them): after each attempt ends the matching regular files are sent back"
        " (GET /v1/tasks/ID/files), at most the master's --max-collect in all.",
        examples=[["out/*.csv", "**/*.log"]],
    )

    def to_spec(self, submitted_by: str | None = None, seal: Seal | None = None) -> TaskSpec:
        """The spec; `seal` seals secret_env (a master always passes its key's)."""
        secrets = None
        if self.secret_env:
            values = check_env(self.secret_env, "secret_env")
            if seal is None:
                raise InvalidSpec("secret_env cannot be taken here: there is no key to seal it")
            secrets = seal(values)
        return make_spec(
            cmd=self.cmd,
            argv=self.argv,
            shell=self.shell,
            env=self.env,
            cwd=self.cwd,
            timeout_s=self.timeout_s,
            priority=self.priority,
            labels=self.labels,
            name=self.name,
            retry=self._retry_policy(),
            queue_timeout_s=self.queue_timeout_s,
            idempotency_key=self.idempotency_key,
            selector=self.on,
            resources=(
                Resources(self.cpu, self.memory_mb, self.gpus)
                if self.cpu or self.memory_mb or self.gpus
                else NO_RESOURCES
            ),
            after=self.after,
            task_class=self.task_class,
            placement=Placement(self.placement),
            submitted_by=submitted_by,
            secrets=secrets,
            queue=self.queue,
            concurrency_key=self.concurrency_key,
            concurrency_limit=self.concurrency_limit,
            retain_s=self.retain_s,
            stdin=_decoded(self.stdin_base64, "stdin_base64"),
            script=_decoded(self.script_base64, "script_base64"),
            inputs=[i.to_input() for i in self.inputs or ()],
            collect=self.collect or (),
        )

    def _retry_policy(self) -> RetryPolicy:
        retry = self.retry
        if retry is None:  # the usual case: built once per max_attempts, not per task
            return _default_retry(self.max_attempts)
        return RetryPolicy(
            max_attempts=self.max_attempts,
            initial_s=retry.initial_s,
            factor=retry.factor,
            max_s=retry.max_s,
            on_exit_codes=tuple(retry.on_exit_codes) if retry.on_exit_codes else None,
        )


@functools.cache
def _default_retry(max_attempts: int) -> RetryPolicy:
    return RetryPolicy(max_attempts=max_attempts)


class BatchIn(_In):
    tasks: Annotated[list[TaskIn], Field(min_length=1, max_length=MAX_BATCH)]


class ArrayIn(_In):
    """Many tasks of one template as one job, stored in one transaction (all or none)."""

    task: TaskIn = Field(
        description="The template. With `commands` it has no cmd or argv: each command is"
        " one task's `cmd`."
    )
    array: str | None = Field(
        None,
        description="Its indexes as Slurm's --array: 1-100, 0-10:2, 2,8-10, optionally with"
        " %N (at most N run at once); with items or commands, which of them (numbered from"
        " 0). Default: one task per item or command.",
        examples=["1-100%10"],
    )
    items: Annotated[list[str], Field(max_length=MAX_ARRAY)] | None = Field(
        None,
        description="One task per item, given it in GRIDRUN_ARRAY_ITEM as it is (a file's"
        " line without its newline; a JSON item as JSON).",
    )
    commands: Annotated[list[str], Field(max_length=MAX_ARRAY)] | None = Field(
        None, description="One task per command line (gridrun submit --file)."
    )

    def specs(self, submitted_by: str, seal: Seal) -> tuple[TaskSpec, list[TaskSpec] | None]:
        """The template's spec, and (with commands) each command's."""
        if self.items is not None and self.commands is not None:
            raise InvalidSpec("give items or commands, not both")
        if self.commands is None:
            return self.task.to_spec(submitted_by, seal), None
        if self.task.cmd is not None or self.task.argv is not None:
            raise InvalidSpec("with commands, the template has no cmd or argv of its own")
        if not self.commands:
            raise InvalidSpec("commands is empty")
        # (secret_env sealed once, for all of them)
        base = self.task.model_copy(update={"cmd": self.commands[0]}).to_spec(submitted_by, seal)
        each = [base]
        for line in self.commands[1:]:
            spec = self.task.model_copy(update={"cmd": line, "secret_env": {}}).to_spec(
                submitted_by, seal
            )
            each.append(dataclasses.replace(spec, secrets=base.secrets))
        return base, each


class RetryJobIn(_In):
    states: list[Literal["failed", "timed_out", "lost", "cancelled", "rejected", "expired",
                         "skipped"]] | None = Field(
        None, description="Run again its tasks in these states (default: failed, timed_out,"
        " lost, cancelled)."
    )  # fmt: skip


class CancelIn(_In):
    """Which tasks to cancel: all that match every field given."""

    state: list[Literal["waiting", "queued", "assigned", "running"]] = Field(
        default_factory=list, description="In these states (default: any not ended)."
    )
    owner: str | None = None
    queue: str | None = None
    job: str | None = None
    label: list[str] = Field(default_factory=list, description="k=v: labels it has, each.")
    name: str | None = None
    worker: str | None = None
    all: bool = Field(False, description="With no other field: every task (the caller's own).")


class LegacyTaskIn(_In):
    """The article's request body."""

    cmd: str


class ScheduleIn(TaskIn):
    """A task to make on a cron schedule (UTC), once per slot."""

    cron: str = Field(
        description="A cron expression in UTC: 5 fields (minute hour day month weekday), or 6"
        " with seconds first.",
        examples=["*/5 * * * *"],
    )


MAX_QUOTA = 10**12


class QuotaIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    max_queued: Annotated[int, Field(ge=0, le=MAX_QUOTA)] | None = Field(
        None, description="Most tasks queued at once; beyond it a submission is answered 429."
    )
    max_running: Annotated[int, Field(ge=0, le=MAX_QUOTA)] | None = Field(
        None, description="Most tasks running at once; the rest wait in the queue."
    )


class GcIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    older_than_s: Annotated[float, Field(ge=0, le=100 * 365 * 86400)] = Field(
        description="Delete tasks that ended more than this many seconds ago."
    )
    states: list[str] | None = Field(
        None, description="Only these (ended) states; default: every ended state."
    )
    dry_run: bool = Field(False, description="Count what would be deleted; delete nothing.")


class ConcurrencyKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    limit: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        description="Most tasks naming this key that run at once, across all owners."
    )
