"""Arrays: many tasks of one template as one job, Slurm's and HyperQueue's way.

An array says its indexes as Slurm's `--array` does (`1-100`, `0-10:2`, `2,8-10`, with an
optional `%N`: at most N of them run at once), or has one task per item (a line of a file,
an item of a JSON array), or both (the indexes pick items). Each task is the template with
`GRIDRUN_ARRAY_INDEX` (and, with items, `GRIDRUN_ARRAY_ITEM`: the item byte for byte) in its
environment; nothing is expanded by a shell at submission.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass

from gridrun.errors import InvalidSpec
from gridrun.model import Concurrency, TaskSpec
from gridrun.spec import MAX_CONCURRENCY, MAX_ENV_BYTES

MAX_ARRAY = 1_000_000  # tasks one array may make
MAX_INDEX = 100_000_000
INDEX_VAR, ITEM_VAR = "GRIDRUN_ARRAY_INDEX", "GRIDRUN_ARRAY_ITEM"
SYNTAX = "N, A-B, A-B:STEP, or several of them comma-separated (2,8-10), with an optional %CAP"
_PART = re.compile(r"(\d+)(?:-(\d+)(?::(\d+))?)?")


@dataclass(frozen=True, slots=True)
class ArraySpec:
    indexes: tuple[int, ...]  # ascending, each once
    cap: int | None = None  # at most this many run at once


def parse_array(text: str) -> ArraySpec:
    """`1-100`, `0-10:2`, `2,8-10`, `1-1000%10`, or only `%10` (a cap for the items).
    Raise InvalidSpec naming what is wrong."""
    given = text.strip()
    body, sep, cap_text = given.partition("%")
    cap = None
    if sep:
        if not cap_text.isdigit() or not 1 <= int(cap_text) <= MAX_CONCURRENCY:
            raise InvalidSpec(
                f"array {text!r}: the cap after % must be a number from 1 to {MAX_CONCURRENCY}"
            )
        cap = int(cap_text)
    indexes: set[int] = set()
    for part in body.split(",") if body.strip() else []:
        match = _PART.fullmatch(part.strip())
        if match is None:
            raise InvalidSpec(f"array {text!r}: {part.strip()!r} is not one of: {SYNTAX}")
        first = int(match[1])
        last = int(match[2]) if match[2] is not None else first
        step = int(match[3]) if match[3] is not None else 1
        if last < first or step < 1:
            raise InvalidSpec(f"array {text!r}: {part.strip()!r} counts down or by 0")
        if last > MAX_INDEX:
            raise InvalidSpec(f"array {text!r}: an index may be at most {MAX_INDEX:,}")
        if (last - first) // step + 1 + len(indexes) > MAX_ARRAY:
            raise InvalidSpec(f"array {text!r} has more than {MAX_ARRAY:,} tasks")
        indexes.update(range(first, last + 1, step))
    if not indexes and not sep:
        raise InvalidSpec(f"array {text!r} has no index: give {SYNTAX}")
    return ArraySpec(tuple(sorted(indexes)), cap)


def expand(
    base: TaskSpec,
    job: str,
    array: ArraySpec | None,
    items: Sequence[str] | None = None,
    commands: Sequence[TaskSpec] | None = None,
) -> list[TaskSpec]:
    """The tasks of a job: one per index (of `array`, else of the items or commands: 0, 1,
    ...), each the base (or its own command's spec) with its index in its environment and,
    with items, its item. The array's cap becomes a concurrency key of the job's own."""
    count = len(items) if items is not None else len(commands) if commands is not None else None
    if array is not None and array.indexes:
        indexes: Sequence[int] = array.indexes
        if count is not None and indexes[-1] >= count:
            raise InvalidSpec(
                f"array index {indexes[-1]} is past the last of the {count:,} items"
                f" (they are numbered from 0)"
            )
    elif count is not None:
        indexes = range(count)
    else:
        raise InvalidSpec(f"an array needs indexes ({SYNTAX}) or items")
    if not indexes:
        raise InvalidSpec("the array has no tasks (no items)")
    if len(indexes) > MAX_ARRAY:
        raise InvalidSpec(f"an array may have at most {MAX_ARRAY:,} tasks")
    cap = array.cap if array is not None else None
    concurrency = base.concurrency
    if cap is not None:
        if concurrency is not None:
            raise InvalidSpec(
                "an array's %N cap is a concurrency key of its own: give the cap or a"
                " concurrency key, not both"
            )
        concurrency = Concurrency(f"job:{job}", cap)
    key = base.idempotency_key
    specs: list[TaskSpec] = []
    for index in indexes:
        template = commands[index] if commands is not None else base
        env = dict(template.env)
        env[INDEX_VAR] = str(index)
        if items is not None:
            env[ITEM_VAR] = items[index]
            _check_item(index, items[index], env)
        specs.append(
            dataclasses.replace(
                template,
                env=env,
                job=job,
                job_index=index,
                concurrency=concurrency,
                idempotency_key=f"{key}-{index}" if key else None,
            )
        )
    return specs


def _check_item(index: int, item: str, env: dict[str, str]) -> None:
    """An item goes into a variable: what a variable may hold, it may."""
    if "\0" in item:
        raise InvalidSpec(f"array item {index} holds a NUL byte, which no variable may")
    size = sum(len(k) + len(v.encode("utf-8", "surrogatepass")) for k, v in env.items())
    if size > MAX_ENV_BYTES:
        raise InvalidSpec(
            f"array item {index} does not fit in a task's environment ({MAX_ENV_BYTES:,}"
            " bytes in all)"
        )
