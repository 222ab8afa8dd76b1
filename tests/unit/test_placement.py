"""Selectors beyond equality and resource requests: parsing, matching, placement, and the
reason a task can never be placed."""

from __future__ import annotations

import dataclasses

import pytest

from gridrun.dispatching import Candidate
from gridrun.errors import InvalidSpec
from gridrun.master.core.scheduler import Capacity, place, why_unschedulable
from gridrun.model import Placement, WorkerInfo, WorkerState
from gridrun.resources import Op, Resources, Term
from gridrun.spec import parse_selector

LABELS = {"zone": "a", "gpu": "a100", "ssd": ""}


@pytest.mark.parametrize(
    ("text", "holds"),
    [
        ("zone=a", True),
        ("zone==b", False),
        ("zone!=b", True),
        ("zone!=a", False),
        ("os!=linux", True),  # a worker without the label is not equal to anything
        ("zone in (a, b)", True),
        ("zone in (b,c)", False),
        ("zone notin (b,c)", True),
        ("os notin (linux)", True),
        ("gpu", True),
        ("ssd", True),  # an empty value is still a label
        ("spot", False),
        ("!spot", True),
        ("!gpu", False),
        ("zone in (a,b), gpu, !spot", True),
        ("zone in (a,b), !gpu", False),
    ],
)
def test_each_selector_form(text: str, holds: bool) -> None:
    terms = parse_selector(text)
    assert all(t.holds(LABELS) for t in terms) is holds


def test_terms_print_back_as_they_parse() -> None:
    terms = parse_selector(["zone in (a,b), !spot", "gpu=a100", "tier notin (x)", "ssd"])
    assert [str(t) for t in terms] == [
        "zone in (a,b)",
        "!spot",
        "gpu=a100",
        "tier notin (x)",
        "ssd",
    ]
    assert parse_selector(", ".join(map(str, terms))) == terms
    assert terms[0] == Term("zone", Op.IN, ("a", "b"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("zone in (a", "unclosed"),
        ("zone in a)", "unmatched"),
        ("a b", "is not one of"),
        ("=x", "is not one of"),
        ("k in ()", "empty value"),
        ("k in (a,,b)", "empty value"),
        ("!", "is not one of"),
    ],
)
def test_bad_selectors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InvalidSpec, match=message):
        parse_selector(text)


def candidate(n: int, on: str = "", **asks: float) -> Candidate:
    return Candidate(
        task_id=f"t{n}", priority=0, seq=n, labels={}, legacy_ok=False,
        selector=parse_selector(on), resources=Resources(**asks),  # type: ignore[arg-type]
    )  # fmt: skip


def test_selector_terms_decide_where_a_task_goes() -> None:
    workers = [
        Capacity("a", {"zone": "a"}, 4, 0),
        Capacity("b", {"zone": "b", "spot": "1"}, 4, 0),
        Capacity("c", {"zone": "c"}, 4, 0),
    ]
    placed = place(
        [candidate(0, "zone in (b,c), !spot"), candidate(1, "zone!=a, spot"), candidate(2, "x")],
        workers,
    )
    assert [(c.task_id, w) for c, w in placed] == [("t0", "c"), ("t1", "b")]


def test_a_task_is_placed_only_where_its_request_fits_what_is_free() -> None:
    one = Capacity("one-gpu", {}, 8, 0, has=Resources(8, 16000, 1))
    two = Capacity("two-gpu", {}, 8, 0, has=Resources(8, 16000, 2))
    placed = place(
        [candidate(0, gpus=2), candidate(1, gpus=1), candidate(2, gpus=1), candidate(3, gpus=1)],
        [one, two],
    )
    # the 2-GPU task only fits the 2-GPU worker, which is then full; one GPU is left on `one`
    assert [(c.task_id, w) for c, w in placed] == [("t0", "two-gpu"), ("t1", "one-gpu")]
    busy = Capacity("w", {}, 8, 1, has=Resources(4, 1000, 0), taken=Resources(3, 200, 0))
    assert [c.task_id for c, _ in place([candidate(4, cpu=2), candidate(5, cpu=1)], [busy])] == [
        "t5"
    ]
    assert place([candidate(6, memory_mb=900)], [busy]) == []  # 800 MiB free
    silent = Capacity("old", {}, 8, 0)  # said nothing about its resources
    assert place([candidate(7, cpu=1)], [silent]) == []
    assert len(place([candidate(8)], [silent])) == 1


def worker(worker_id: str, labels: dict[str, str], gpus: int = 0) -> WorkerInfo:
    return WorkerInfo(
        worker_id, "h", labels, 4, WorkerState.ONLINE,
        resources={"cpus": 4, "memory_mb": 8000, "gpus": gpus},
    )  # fmt: skip


def test_why_a_task_could_never_be_placed() -> None:
    fleet = [worker("w1", {"zone": "a"}, gpus=1), worker("w2", {"zone": "b"})]
    assert why_unschedulable(candidate(0, "zone=a", gpus=1), fleet) is None
    assert why_unschedulable(candidate(1, "zone=c"), fleet) == "no live worker matches zone=c"
    assert why_unschedulable(candidate(2, gpus=2), fleet) == (
        "no live worker has what it asks: w1 lacks 2 GPUs (has 1); w2 lacks 2 GPUs (has 0)"
    )
    assert why_unschedulable(candidate(3, memory_mb=9000, cpu=8), fleet[:1]) == (
        "no live worker has what it asks: w1 lacks 8 CPUs (has 4), 9000 MiB memory (has 8000)"
    )
    assert why_unschedulable(candidate(4), []) == "no live worker"


def test_pack_fills_the_busiest_worker_with_room_and_spread_the_least_loaded() -> None:
    def fleet() -> list[Capacity]:
        return [Capacity("a", {}, 4, 1), Capacity("b", {}, 4, 0), Capacity("c", {}, 2, 1)]

    packed = place(
        [dataclasses.replace(candidate(i), placement=Placement.PACK) for i in range(5)], fleet()
    )
    assert [w for _, w in packed] == ["c", "a", "a", "a", "b"]  # c is 50% busy, then a (25%)
    spread = place([candidate(i) for i in range(5)], fleet())
    assert [w for _, w in spread] == ["b", "a", "b", "a", "b"]  # lowest fraction busy, then id


def test_a_worker_caps_how_many_tasks_of_a_class_it_runs() -> None:
    io = Capacity("io-capped", {}, 8, 1, max_tasks={"io": 2}, by_class={"io": 1})
    tasks = [dataclasses.replace(candidate(i), task_class="io") for i in range(3)]
    tasks.append(candidate(3))  # no class: only slots count
    tasks.append(dataclasses.replace(candidate(4), task_class="cpu"))  # not capped
    assert [c.task_id for c, _ in place(tasks, [io])] == ["t0", "t3", "t4"]
