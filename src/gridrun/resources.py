"""What a task asks of a worker and what a worker offers: its labels' selector terms (`Term`,
`Op`), `Resources` (CPUs, memory, GPUs), and the match of the two. Pure, part of the domain
(gridrun.model builds on it)."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


class Op(enum.StrEnum):
    """How a selector term tests one label of a worker."""

    EQ = "="
    NE = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    ABSENT = "!"


@dataclass(frozen=True, slots=True)
class Term:
    """One condition on a worker's labels: `k=v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`,
    `!k`. A task's terms must all hold."""

    key: str
    op: Op
    values: tuple[str, ...] = ()

    def holds(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        match self.op:
            case Op.EQ:
                return value == self.values[0]
            case Op.NE:
                return value != self.values[0]  # a worker without the label is not equal
            case Op.IN:
                return value in self.values
            case Op.NOT_IN:
                return value not in self.values
            case Op.EXISTS:
                return value is not None
            case Op.ABSENT:
                return value is None

    def __str__(self) -> str:
        match self.op:
            case Op.EQ | Op.NE:
                return f"{self.key}{self.op}{self.values[0]}"
            case Op.IN | Op.NOT_IN:
                return f"{self.key} {self.op} ({','.join(self.values)})"
            case Op.EXISTS:
                return self.key
            case Op.ABSENT:
                return f"!{self.key}"


@dataclass(frozen=True, slots=True)
class Resources:
    """What a task asks of a worker (or what a worker has): CPU cores, memory, GPUs.
    Zero asks for nothing of that kind."""

    cpu: float = 0.0
    memory_mb: int = 0
    gpus: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            self.cpu + other.cpu, self.memory_mb + other.memory_mb, self.gpus + other.gpus
        )

    def fits(self, free: Resources) -> bool:
        return (
            self.cpu <= free.cpu + 1e-9
            and self.memory_mb <= free.memory_mb
            and self.gpus <= free.gpus
        )

    def shortfall(self, have: Resources) -> str | None:
        """Why `have` could never hold this request, or None if it could."""
        missing = []
        if self.cpu > have.cpu + 1e-9:
            missing.append(f"{self.cpu:g} CPUs (has {have.cpu:g})")
        if self.memory_mb > have.memory_mb:
            missing.append(f"{self.memory_mb} MiB memory (has {have.memory_mb})")
        if self.gpus > have.gpus:
            missing.append(f"{self.gpus} GPUs (has {have.gpus})")
        return ", ".join(missing) or None

    def __bool__(self) -> bool:
        return bool(self.cpu or self.memory_mb or self.gpus)


NO_RESOURCES = Resources()


def labels_match(
    labels: Mapping[str, str], worker_labels: Mapping[str, str], selector: Iterable[Term] = ()
) -> bool:
    """A worker matches a task when it has every label the task requires (`labels`), with the
    same value, and every term of the task's selector holds."""
    return all(worker_labels.get(key) == value for key, value in labels.items()) and all(
        term.holds(worker_labels) for term in selector
    )


def offered(resources: Mapping[str, int]) -> Resources:
    """What a worker offers tasks, from its Hello's resources (cpus, memory_mb, gpus)."""
    return Resources(
        float(resources.get("cpus", 0)), resources.get("memory_mb", 0), resources.get("gpus", 0)
    )
