"""Turning a client's request into a valid `TaskSpec`: field limits, command-line parsing,
label syntax. Pure; every error is an InvalidSpec with a message a user can act on."""

from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Mapping, Sequence
from graphlib import CycleError, TopologicalSorter

from gridrun.errors import InvalidSpec
from gridrun.files import check_globs, check_inputs
from gridrun.model import (
    DEFAULT_QUEUE,
    SHELL,
    Concurrency,
    InputFile,
    Placement,
    RetryPolicy,
    Sealed,
    TaskSpec,
)
from gridrun.resources import NO_RESOURCES, Op, Resources, Term

# Field limits: generous for real commands, small enough that no request can hurt the master.
MAX_CMD_BYTES = 128 * 1024
MAX_ARGV_ITEMS = 4096
MAX_ENV_ITEMS = 256
MAX_ENV_BYTES = 64 * 1024
MAX_LABELS = 64
MAX_LABEL_BYTES = 256
MAX_NAME_BYTES = 256
MAX_CWD_BYTES = 4096
MAX_TIMEOUT_S = 7 * 24 * 3600
MAX_PRIORITY = 1_000_000
MAX_ATTEMPTS = 100
MAX_BACKOFF_S = 24 * 3600
MAX_KEY_BYTES = 256
# the idempotency keys the master gives the task of each schedule slot; no client may use one
RESERVED_KEY_PREFIX = "schedule:"
MAX_CPU = 4096
MAX_MEMORY_MB = 1 << 40
MAX_GPUS = 1024
MAX_AFTER = 1000  # tasks one task may run after
MAX_CONCURRENCY = 1_000_000
MAX_RETAIN_S = 100 * 365 * 86400
MAX_STDIN_BYTES = 1024 * 1024  # a task's standard input, stored with it
MAX_SCRIPT_BYTES = 1024 * 1024  # a script shipped with a task
NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")  # a queue's (as a token's)

_KEY = r"[^\s=!(),]+"
_TERMS = [
    (re.compile(rf"^!\s*({_KEY})$"), Op.ABSENT),
    (re.compile(rf"^({_KEY})\s+(in|notin)\s*\(([^()]*)\)$"), Op.IN),
    (re.compile(rf"^({_KEY})\s*!=\s*([^,()]*)$"), Op.NE),
    (re.compile(rf"^({_KEY})\s*==?\s*([^,()]*)$"), Op.EQ),
    (re.compile(rf"^({_KEY})$"), Op.EXISTS),
]
SELECTOR_SYNTAX = "k=v, k!=v, k in (a,b), k notin (a,b), k (has it), !k (has it not)"


def _check_text(what: str, value: str, limit: int) -> None:
    if "\x00" in value:
        raise InvalidSpec(f"{what} must not contain NUL bytes")
    if len(value.encode("utf-8", "surrogatepass")) > limit:
        raise InvalidSpec(f"{what} is longer than {limit} bytes")


def check_env(env: Mapping[str, str], what: str = "env") -> dict[str, str]:
    """Environment variables as a task may carry them (`env` or `secret_env`)."""
    env = dict(env)
    if len(env) > MAX_ENV_ITEMS:
        raise InvalidSpec(f"{what} has more than {MAX_ENV_ITEMS} variables")
    env_bytes = 0
    for key, value in env.items():
        if not key or "=" in key:
            raise InvalidSpec(f"{what} name {key!r} is invalid (empty or contains '=')")
        _check_text(f"{what} name", key, MAX_ENV_BYTES)
        # a secret's value is never repeated in an error: only its name
        _check_text(f"{what} value of {key}", value, MAX_ENV_BYTES)
        env_bytes += len(key) + len(value)
    if env_bytes > MAX_ENV_BYTES:
        raise InvalidSpec(f"{what} is larger than {MAX_ENV_BYTES} bytes")
    return env


def make_spec(
    *,
    cmd: str | None = None,
    argv: list[str] | tuple[str, ...] | None = None,
    shell: bool = False,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    timeout_s: float | None = None,
    priority: int = 0,
    labels: Mapping[str, str] | None = None,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    queue_timeout_s: float | None = None,
    idempotency_key: str | None = None,
    selector: str | Sequence[str] | None = None,
    resources: Resources = NO_RESOURCES,
    after: Sequence[str] = (),
    task_class: str | None = None,
    placement: Placement = Placement.SPREAD,
    submitted_by: str | None = None,
    secrets: Sealed | None = None,
    queue: str = DEFAULT_QUEUE,
    concurrency_key: str | None = None,
    concurrency_limit: int | None = None,
    retain_s: float | None = None,
    stdin: bytes | None = None,
    script: bytes | None = None,
    inputs: Sequence[InputFile] = (),
    collect: Sequence[str] = (),
) -> TaskSpec:
    """Validate a request and build its spec; raise InvalidSpec with a human message.
    `submitted_by` is the caller's token name, set by the master (never taken from a client)."""
    if script is not None:
        if not script:
            raise InvalidSpec("script is empty")
        if len(script) > MAX_SCRIPT_BYTES:
            raise InvalidSpec(
                f"script is {len(script):,} bytes; a script may be at most {MAX_SCRIPT_BYTES:,}"
            )
        if cmd is not None or shell:
            raise InvalidSpec("a script takes its arguments as argv, not cmd or shell")
        argv = list(argv or ())
        _check_argv(argv)
        resolved: tuple[str, ...] = tuple(argv)
    elif (cmd is None) == (argv is None):
        raise InvalidSpec("give exactly one of 'cmd' (a command line) or 'argv' (a list)")
    elif cmd is not None:
        _check_text("cmd", cmd, MAX_CMD_BYTES)
        if not cmd.strip():
            raise InvalidSpec("cmd must not be empty")
        if shell:
            resolved = (SHELL, "-c", cmd)
        else:
            try:
                resolved = tuple(shlex.split(cmd))
            except ValueError as exc:
                raise InvalidSpec(f"cmd cannot be parsed as a command line: {exc}") from None
            if not resolved:
                raise InvalidSpec("cmd must not be empty")
    else:
        assert argv is not None
        if not argv or not argv[0]:
            raise InvalidSpec("argv must be a non-empty list whose first item is the program")
        _check_argv(argv)
        resolved = (SHELL, "-c", shlex.join(argv)) if shell else tuple(argv)
    env = check_env(env or {})
    if cwd is not None:
        _check_text("cwd", cwd, MAX_CWD_BYTES)
        if not cwd:
            raise InvalidSpec("cwd must not be empty when given")
    if timeout_s is not None and not (0 < timeout_s <= MAX_TIMEOUT_S):
        raise InvalidSpec(f"timeout_s must be greater than 0 and at most {MAX_TIMEOUT_S}")
    if not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
        raise InvalidSpec(f"priority must be between -{MAX_PRIORITY} and {MAX_PRIORITY}")
    labels = dict(labels or {})
    if len(labels) > MAX_LABELS:
        raise InvalidSpec(f"labels has more than {MAX_LABELS} entries")
    for key, value in labels.items():
        if not key:
            raise InvalidSpec("label names must not be empty")
        _check_text("label name", key, MAX_LABEL_BYTES)
        _check_text(f"label value of {key}", value, MAX_LABEL_BYTES)
    if name is not None:
        _check_text("name", name, MAX_NAME_BYTES)
    retry = retry or RetryPolicy()
    if not 1 <= retry.max_attempts <= MAX_ATTEMPTS:
        raise InvalidSpec(f"max_attempts must be between 1 and {MAX_ATTEMPTS}")
    if not (0 <= retry.initial_s <= MAX_BACKOFF_S and 0 <= retry.max_s <= MAX_BACKOFF_S):
        raise InvalidSpec(f"retry delays must be between 0 and {MAX_BACKOFF_S} seconds")
    if not 1 <= retry.factor <= 100:
        raise InvalidSpec("retry factor must be between 1 and 100")
    if queue_timeout_s is not None and not (0 < queue_timeout_s <= MAX_TIMEOUT_S):
        raise InvalidSpec(f"queue_timeout_s must be greater than 0 and at most {MAX_TIMEOUT_S}")
    if idempotency_key is not None:
        _check_text("idempotency_key", idempotency_key, MAX_KEY_BYTES)
        if not idempotency_key:
            raise InvalidSpec("idempotency_key must not be empty when given")
        if idempotency_key.startswith(RESERVED_KEY_PREFIX):
            raise InvalidSpec(
                f"idempotency_key {idempotency_key!r}: keys that begin with"
                f" {RESERVED_KEY_PREFIX!r} are the master's own (one per schedule slot)"
            )
    check_name("queue", queue)
    if retain_s is not None and not 0 < retain_s <= MAX_RETAIN_S:
        raise InvalidSpec(f"retain_s must be greater than 0 and at most {MAX_RETAIN_S:g}")
    if stdin is not None and len(stdin) > MAX_STDIN_BYTES:
        raise InvalidSpec(
            f"stdin is {len(stdin):,} bytes; a task's stdin may be at most {MAX_STDIN_BYTES:,}"
            " (ship larger inputs as files the task reads)"
        )
    return TaskSpec(
        argv=resolved,
        cmd=cmd,
        shell=shell,
        env=env,
        cwd=cwd,
        timeout_s=timeout_s,
        priority=priority,
        labels=labels,
        name=name,
        retry=retry,
        queue_timeout_s=queue_timeout_s,
        idempotency_key=idempotency_key,
        selector=parse_selector(selector),
        resources=_checked_resources(resources),
        after=check_after(after) if after else (),
        task_class=_checked_class(task_class),
        placement=placement,
        submitted_by=submitted_by,
        secrets=secrets,
        queue=queue,
        concurrency=_checked_concurrency(concurrency_key, concurrency_limit),
        retain_s=retain_s,
        stdin=stdin or None,  # (empty: nothing to read, as without)
        script=script,
        inputs=check_inputs(inputs),
        collect=check_globs(collect),
    )


def _check_argv(argv: Sequence[str]) -> None:
    if len(argv) > MAX_ARGV_ITEMS:
        raise InvalidSpec(f"argv has more than {MAX_ARGV_ITEMS} items")
    total = 0
    for item in argv:
        _check_text("argv item", item, MAX_CMD_BYTES)
        total += len(item)
    if total > MAX_CMD_BYTES:
        raise InvalidSpec(f"argv is longer than {MAX_CMD_BYTES} bytes in all")


def check_name(what: str, name: str) -> None:
    """An owner's or a queue's name: as a token's."""
    if not NAME.fullmatch(name):
        raise InvalidSpec(f"{what} {name!r}: use 1-64 of A-Z a-z 0-9 _ . @ -")


def check_concurrency_key(key: str) -> None:
    _check_text("concurrency_key", key, MAX_LABEL_BYTES)
    if not key:
        raise InvalidSpec("concurrency_key must not be empty")


def _checked_concurrency(key: str | None, limit: int | None) -> Concurrency | None:
    if key is None and limit is None:
        return None
    if key is None or limit is None:
        raise InvalidSpec("give both concurrency_key and concurrency_limit, or neither")
    check_concurrency_key(key)
    if not 1 <= limit <= MAX_CONCURRENCY:
        raise InvalidSpec(f"concurrency_limit must be between 1 and {MAX_CONCURRENCY}")
    return Concurrency(key, limit)


def _checked_class(task_class: str | None) -> str | None:
    if task_class is not None:
        _check_text("task_class", task_class, MAX_LABEL_BYTES)
        if not task_class:
            raise InvalidSpec("task_class must not be empty when given")
    return task_class


def check_after(after: Sequence[str]) -> tuple[str, ...]:
    if len(after) > MAX_AFTER:
        raise InvalidSpec(f"a task may run after at most {MAX_AFTER} tasks")
    for item in after:
        _check_text("after", item, MAX_NAME_BYTES)
        if not item:
            raise InvalidSpec("after lists an empty task id or name")
    return tuple(dict.fromkeys(after))  # each once, in the order given


def resolve_after(specs: Sequence[TaskSpec], ids: Sequence[str]) -> list[TaskSpec]:
    """Point each `after` entry naming a member of this batch (by its `name`) at that member's
    id; other entries are task ids, checked by the store. A batch is one DAG: a cycle is
    refused, and so is a name two members share."""
    by_name: dict[str, str] = {}
    shared: set[str] = set()
    for spec, task_id in zip(specs, ids, strict=True):
        if spec.name is not None:
            if spec.name in by_name:
                shared.add(spec.name)
            by_name[spec.name] = task_id
    resolved = []
    graph: dict[str, list[str]] = {}
    for spec, task_id in zip(specs, ids, strict=True):
        after = []
        for item in spec.after:
            if item in shared:
                raise InvalidSpec(
                    f"after names {item!r}, which more than one task of the batch has"
                )
            after.append(by_name.get(item, item))
        if task_id in after:
            raise InvalidSpec(f"task {spec.name or task_id!r} cannot run after itself")
        graph[task_id] = after
        resolved.append(dataclasses.replace(spec, after=tuple(after)))
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        names = {task_id: spec.name or task_id for spec, task_id in zip(specs, ids, strict=True)}
        cycle = " -> ".join(names.get(t, t) for t in reversed(exc.args[1]))
        raise InvalidSpec(f"the tasks' `after` form a cycle: {cycle}") from None
    return resolved


def _split_terms(text: str) -> list[str]:
    """Split at commas outside parentheses."""
    terms: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise InvalidSpec(f"selector {text!r} has an unmatched ')'")
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth:
        raise InvalidSpec(f"selector {text!r} has an unclosed '('")
    terms.append("".join(current))
    return [t.strip() for t in terms]


def parse_term(text: str) -> Term:
    for pattern, op in _TERMS:
        match = pattern.match(text)
        if match is None:
            continue
        key = match.group(1)
        _check_text("selector label name", key, MAX_LABEL_BYTES)
        if op is Op.IN:
            values = tuple(v.strip() for v in match.group(3).split(","))
            if not all(values):
                raise InvalidSpec(f"selector term {text!r} lists an empty value")
            return Term(key, Op(match.group(2)), values)
        if op in (Op.EQ, Op.NE):
            value = match.group(2).strip()
            _check_text(f"selector value of {key}", value, MAX_LABEL_BYTES)
            return Term(key, op, (value,))
        return Term(key, op)
    raise InvalidSpec(f"selector term {text!r} is not one of: {SELECTOR_SYNTAX}")


def parse_selector(selector: str | Sequence[str] | None) -> tuple[Term, ...]:
    """Parse a selector (terms separated by commas; several strings are all ANDed)."""
    if selector is None:
        return ()
    texts = [selector] if isinstance(selector, str) else list(selector)
    terms = []
    for text in texts:
        _check_text("selector", text, MAX_LABELS * MAX_LABEL_BYTES)
        if not text.strip():
            continue
        terms += [parse_term(t) for t in _split_terms(text)]
    if len(terms) > MAX_LABELS:
        raise InvalidSpec(f"a selector has more than {MAX_LABELS} terms")
    return tuple(terms)


def _checked_resources(resources: Resources) -> Resources:
    if resources is NO_RESOURCES:  # the usual case: nothing asked
        return resources
    return check_resources(resources.cpu, resources.memory_mb, resources.gpus)


def check_resources(cpu: float, memory_mb: int, gpus: int) -> Resources:
    if not 0 <= cpu <= MAX_CPU:
        raise InvalidSpec(f"cpu must be between 0 and {MAX_CPU} cores")
    if not 0 <= memory_mb <= MAX_MEMORY_MB:
        raise InvalidSpec(f"memory_mb must be between 0 and {MAX_MEMORY_MB}")
    if not 0 <= gpus <= MAX_GPUS:
        raise InvalidSpec(f"gpus must be between 0 and {MAX_GPUS}")
    return Resources(cpu=cpu, memory_mb=memory_mb, gpus=gpus)
