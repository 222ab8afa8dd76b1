"""Rows of the SQL stores <-> domain objects (tasks, specs, attempts)."""

from __future__ import annotations

import base64
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from gridrun.model import (
    DEFAULT_QUEUE,
    Attempt,
    AttemptRef,
    Concurrency,
    InputFile,
    Placement,
    Report,
    RetryPolicy,
    Sealed,
    Stream,
    Task,
    TaskSpec,
    TaskState,
    Usage,
)
from gridrun.output import Mark
from gridrun.resources import Op, Resources, Term

# the spec's fields that are a JSON scalar or None (None: not written): (key in the column,
# field); a new option of that kind is one line here
OPTIONAL_SCALARS = (
    ("cmd", "cmd"),
    ("cwd", "cwd"),
    ("timeout_s", "timeout_s"),
    ("name", "name"),
    ("queue_timeout_s", "queue_timeout_s"),
    ("idempotency_key", "idempotency_key"),
    ("submitted_by", "submitted_by"),
    ("worker", "worker"),
    ("job", "job"),
    ("index", "job_index"),
    ("class", "task_class"),
    ("retain_s", "retain_s"),
)


def spec_to_json(spec: TaskSpec) -> str:
    """The `spec` column: only what differs from the defaults (a plain task is about 40 bytes
    instead of 540, so a batch writes a third of the pages), encoded by orjson (about 8x
    faster than the standard encoder). `spec_from_json` reads this and the full form that
    earlier versions wrote."""
    raw: dict[str, Any] = {"argv": spec.argv}
    for key, name in OPTIONAL_SCALARS:
        value = getattr(spec, name)
        if value is not None:
            raw[key] = value
    if spec.shell:
        raw["shell"] = True
    if spec.env:
        raw["env"] = dict(spec.env)
    if spec.priority:
        raw["priority"] = spec.priority
    if spec.labels:
        raw["labels"] = dict(spec.labels)
    if spec.after:
        raw["after"] = spec.after
    if spec.placement is Placement.PACK:
        raw["pack"] = True
    if spec.retry != DEFAULT_RETRY:
        retry = spec.retry
        raw["retry"] = {
            "max_attempts": retry.max_attempts,
            "initial_s": retry.initial_s,
            "factor": retry.factor,
            "max_s": retry.max_s,
            "on_exit_codes": retry.on_exit_codes,
        }
    if spec.selector:
        raw["selector"] = terms_to_json(spec.selector)
    if spec.resources:
        raw["resources"] = resources_to_json(spec.resources)
    if spec.secrets is not None:
        raw["secrets"] = {"names": spec.secrets.names, "sealed": spec.secrets.token}
    if spec.queue != DEFAULT_QUEUE:
        raw["queue"] = spec.queue
    if spec.concurrency is not None:
        raw["concurrency"] = [spec.concurrency.key, spec.concurrency.limit]
    for key, data in (("stdin", spec.stdin), ("script", spec.script)):
        if data is not None:
            raw[key] = base64.b64encode(data).decode("ascii")
    if spec.inputs:
        raw["inputs"] = [[f.name, f.digest, f.size, f.mode] for f in spec.inputs]
    if spec.collect:
        raw["collect"] = list(spec.collect)
    return orjson.dumps(raw).decode()


@functools.lru_cache(maxsize=4096)
def spec_from_json(text: str) -> TaskSpec:
    """A stored spec, parsed (specs never change, so the same text gives the same object:
    a task is loaded several times over its life, and batches share one spec)."""
    raw = orjson.loads(text)
    return TaskSpec(
        argv=tuple(raw["argv"]),
        shell=raw.get("shell", False),
        env=raw.get("env", {}),
        priority=raw.get("priority", 0),
        labels=raw.get("labels", {}),
        retry=retry_from_json(raw.get("retry")),
        selector=terms_from_json(raw.get("selector", [])),
        resources=resources_from_json(raw.get("resources", {})),
        after=tuple(raw.get("after", ())),
        placement=Placement.PACK if raw.get("pack") else Placement.SPREAD,
        secrets=sealed_from_json(raw.get("secrets")),
        queue=raw.get("queue", DEFAULT_QUEUE),
        concurrency=concurrency_from_json(raw.get("concurrency")),
        stdin=base64.b64decode(raw["stdin"]) if "stdin" in raw else None,
        script=base64.b64decode(raw["script"]) if "script" in raw else None,
        inputs=tuple(InputFile(*item) for item in raw.get("inputs", ())),
        collect=tuple(raw.get("collect", ())),
        **{name: raw.get(key) for key, name in OPTIONAL_SCALARS},
    )


def concurrency_to_json(concurrency: Concurrency) -> list[Any]:
    return [concurrency.key, concurrency.limit, concurrency.scope]


def concurrency_from_json(raw: list[Any] | None) -> Concurrency | None:
    """[key, limit, scope]; written before keys had owners, [key, limit]: grid-wide."""
    return None if raw is None else Concurrency(raw[0], raw[1], raw[2] if len(raw) > 2 else "")


def sealed_from_json(raw: dict[str, Any] | None) -> Sealed | None:
    return None if raw is None else Sealed(tuple(raw["names"]), raw["sealed"])


DEFAULT_RETRY = RetryPolicy()


def labels_to_json(labels: Mapping[str, str]) -> str:
    """A task's labels as stored (its `labels` column, matched by the label filter), keys
    sorted."""
    return orjson.dumps(dict(labels), option=orjson.OPT_SORT_KEYS).decode()


def terms_to_json(terms: Sequence[Term]) -> list[list[Any]]:
    return [[t.key, str(t.op), list(t.values)] for t in terms]


def terms_from_json(raw: list[list[Any]]) -> tuple[Term, ...]:
    return tuple(Term(key, Op(op), tuple(values)) for key, op, values in raw)


def resources_to_json(resources: Resources) -> dict[str, Any]:
    return {"cpu": resources.cpu, "memory_mb": resources.memory_mb, "gpus": resources.gpus}


def resources_from_json(raw: dict[str, Any]) -> Resources:
    return Resources(raw.get("cpu", 0.0), raw.get("memory_mb", 0), raw.get("gpus", 0))


def placement_to_json(spec: TaskSpec) -> str:
    """What the scheduler reads of a queued task besides its labels (the `placement` column)."""
    placement: dict[str, Any] = {}
    if spec.selector:
        placement["on"] = terms_to_json(spec.selector)
    if spec.resources:
        placement["resources"] = resources_to_json(spec.resources)
    if spec.worker is not None:
        placement["worker"] = spec.worker
    if spec.task_class is not None:
        placement["class"] = spec.task_class
    if spec.placement is Placement.PACK:
        placement["pack"] = True
    if spec.concurrency is not None:
        placement["concurrency"] = concurrency_to_json(spec.concurrency)
    if spec.stdin is not None:
        placement["stdin"] = True  # only a worker that feeds stdin may take it
    if spec.script is not None:
        placement["script"] = True  # only a worker that runs scripts may take it
    if spec.files:
        placement["files"] = True  # only a worker that stages and collects files may take it
    if spec.timeout_s is not None:
        placement["timeout"] = spec.timeout_s  # a worker that leaves sooner may not take it
    return orjson.dumps(placement).decode()


def placement_from_json(text: str) -> dict[str, Any]:
    """The `placement` column as Candidate fields: terms, resources, worker, task_class, pack,
    concurrency, stdin, script, files, timeout."""
    raw = orjson.loads(text)
    return {
        "selector": terms_from_json(raw.get("on", [])),
        "resources": resources_from_json(raw.get("resources", {})),
        "worker": raw.get("worker"),
        "task_class": raw.get("class"),
        "placement": Placement.PACK if raw.get("pack") else Placement.SPREAD,
        "concurrency": concurrency_from_json(raw.get("concurrency")),
        "stdin": bool(raw.get("stdin")),
        "script": bool(raw.get("script")),
        "files": bool(raw.get("files")),
        "timeout_s": raw.get("timeout"),
    }


def retry_from_json(raw: dict[str, Any] | None) -> RetryPolicy:
    if raw is None:  # the default (or written by schema v1)
        return DEFAULT_RETRY
    codes = raw["on_exit_codes"]
    return RetryPolicy(
        max_attempts=raw["max_attempts"],
        initial_s=raw["initial_s"],
        factor=raw["factor"],
        max_s=raw["max_s"],
        on_exit_codes=tuple(codes) if codes is not None else None,
    )


def attempt_key(ref: AttemptRef) -> tuple[str, int]:
    return ref.task_id, ref.attempt


def describe(ended: TaskState, report: Report) -> str:
    if ended is TaskState.FAILED and report.exit_code is not None:
        return f"failed (exit {report.exit_code})"
    if ended is TaskState.FAILED and report.signal:
        return f"failed (signal {report.signal})"
    return str(ended).replace("_", " ")


def attempt_from_row(row: Sequence[Any]) -> Attempt:
    return Attempt(
        task_id=row[0],
        attempt=row[1],
        worker_id=row[2],
        state=TaskState(row[3]),
        assigned_at=row[4],
        started_at=row[5],
        finished_at=row[6],
        exit_code=row[7],
        signal=row[8],
        error=row[9],
        usage=Usage(row[10], row[11], row[12], row[13])
        if any(v is not None for v in row[10:14])
        else None,
    )


def task_from_row(row: Sequence[Any]) -> Task:
    return Task(
        seq=row[0],
        id=row[1],
        spec=spec_from_json(row[2]),
        state=TaskState(row[3]),
        attempt=row[4],
        worker_id=row[5],
        cancel_requested=bool(row[6]),
        created_at=row[7],
        assigned_at=row[8],
        started_at=row[9],
        finished_at=row[10],
        exit_code=row[11],
        signal=row[12],
        error=row[13],
        not_before=row[14] or None,
        unschedulable=row[15],
        usage=Usage(cpu_s=row[16], peak_memory_bytes=row[17])
        if row[16] is not None or row[17] is not None
        else None,
    )


# the marks of one stream's output row: [[n, offset, at], ...], n their order across streams
MAX_MARKS = 20_000  # per stream: past it the oldest go (their bytes then show first)
RunMarks = list[list[int]]


def marks_from_json(text: str) -> RunMarks:
    return list(orjson.loads(text)) if text else []


def marks_to_json(marks: RunMarks) -> str:
    return orjson.dumps(marks).decode() if marks else ""


def output_marks(rows: Sequence[tuple[Stream, RunMarks]]) -> tuple[Mark, ...]:
    """The marks of a task's output rows, in the order they were made."""
    every = sorted((n, stream, offset, at) for stream, marks in rows for n, offset, at in marks)
    return tuple(Mark(Stream(stream), offset, at) for _, stream, offset, at in every)


def kept_marks(marks: RunMarks, first_kept: int) -> RunMarks:
    """Those that still say something of the kept bytes: from the last one at or before the
    first byte kept; at most MAX_MARKS."""
    start = 0
    for i, (_, offset, _) in enumerate(marks):
        if offset <= first_kept:
            start = i
    kept = marks[start:]
    return kept[-MAX_MARKS:]
