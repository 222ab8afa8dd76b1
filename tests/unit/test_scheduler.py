"""Placement policy: slots, labels, least loaded, queue order, legacy workers last."""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gridrun.dispatching import Candidate
from gridrun.master.core.scheduler import Capacity, place
from gridrun.model import Placement
from gridrun.resources import Resources


def candidate(n: int, labels: dict[str, str] | None = None, legacy_ok: bool = True) -> Candidate:
    return Candidate(task_id=f"t{n}", priority=0, seq=n, labels=labels or {}, legacy_ok=legacy_ok)


def test_never_more_than_the_free_slots() -> None:
    workers = [Capacity("a", {}, slots=2, used=1), Capacity("b", {}, slots=1, used=0)]
    placed = place([candidate(i) for i in range(10)], workers)
    assert len(placed) == 2
    assert sorted(w for _, w in placed) == ["a", "b"]


def test_keeps_queue_order_and_spreads_to_the_least_loaded() -> None:
    workers = [Capacity("a", {}, slots=4, used=0), Capacity("b", {}, slots=4, used=2)]
    placed = place([candidate(i) for i in range(4)], workers)
    assert [c.task_id for c, _ in placed] == ["t0", "t1", "t2", "t3"]
    assert [w for _, w in placed] == ["a", "a", "a", "b"]  # a until it is as loaded as b


def test_load_is_a_fraction_of_slots() -> None:
    workers = [Capacity("big", {}, slots=8, used=2), Capacity("small", {}, slots=2, used=1)]
    ((_, chosen),) = place([candidate(0)], workers)
    assert chosen == "big"  # 25% busy beats 50% busy


def test_labels_must_match() -> None:
    workers = [Capacity("cpu", {}, slots=4, used=0), Capacity("gpu", {"gpu": "a100"}, 1, 0)]
    placed = place([candidate(0, {"gpu": "a100"}), candidate(1, {"gpu": "a100"})], workers)
    assert [(c.task_id, w) for c, w in placed] == [("t0", "gpu")]  # t1 waits for the gpu


def test_a_task_that_fits_nowhere_does_not_block_the_ones_behind_it() -> None:
    workers = [Capacity("cpu", {}, slots=1, used=0)]
    placed = place([candidate(0, {"gpu": "a100"}), candidate(1)], workers)
    assert [(c.task_id, w) for c, w in placed] == [("t1", "cpu")]


def test_legacy_workers_only_get_what_they_can_run_and_only_when_nobody_else_can() -> None:
    workers = [Capacity("old", {}, slots=1, used=0, legacy=True), Capacity("new", {}, 1, 0)]
    placed = place([candidate(0), candidate(1, legacy_ok=False), candidate(2)], workers)
    assert [(c.task_id, w) for c, w in placed] == [("t0", "new"), ("t2", "old")]


def _reference_place(
    tasks: list[tuple[bool, str | None, bool, str | None, int]],
    workers: list[tuple[int, int, bool, str]],
) -> list[tuple[str, str]]:
    """Placement as the scheduler's docstring defines it, written again from that text over
    plain data (nothing of the code under test): each task in queue order goes to a worker with
    a free slot, the zone it asks, room for its CPUs (each worker has 2), fewer than one `io`
    task, not a legacy worker unless the task can run there; among those, legacy workers last,
    then for spread the lowest fraction of slots in use (then the most free slots), for pack
    the highest; ties by worker id."""
    fleet = [
        {"id": f"w{i}", "zone": zone, "slots": slots, "used": min(used, slots),
         "legacy": legacy, "cpu": 0, "io": 0}
        for i, (slots, used, legacy, zone) in enumerate(workers)
    ]  # fmt: skip
    out = []
    for n, (pack, zone, legacy_ok, cls, cpu) in enumerate(tasks):
        options = [
            w for w in fleet
            if w["used"] < w["slots"]
            and (legacy_ok or not w["legacy"])
            and (zone is None or w["zone"] == zone)
            and (cls != "io" or w["io"] < 1)
            and w["cpu"] + cpu <= 2
        ]  # fmt: skip
        if not options:
            continue

        def spread(w: dict[str, Any]) -> tuple[Any, ...]:
            return (w["legacy"], w["used"] / w["slots"], w["used"] - w["slots"], w["id"])

        def packed(w: dict[str, Any]) -> tuple[Any, ...]:
            return (w["legacy"], -w["used"] / w["slots"], w["id"])

        best = min(options, key=packed if pack else spread)
        best["used"] += 1
        best["cpu"] += cpu
        best["io"] += cls == "io"
        out.append((f"t{n}", best["id"]))
    return out


@settings(max_examples=300, deadline=None)
@given(
    workers=st.lists(
        st.tuples(st.integers(0, 4), st.integers(0, 4), st.booleans(), st.sampled_from(["a", "b"])),
        min_size=1,
        max_size=12,
    ),
    tasks=st.lists(
        st.tuples(
            st.booleans(),  # pack
            st.sampled_from([None, "a", "b"]),  # zone asked
            st.booleans(),  # legacy_ok
            st.sampled_from([None, "io"]),  # class
            st.integers(0, 2),  # cpu asked
        ),
        max_size=40,
    ),
)
def test_placement_agrees_with_a_scan_of_every_worker(
    workers: list[tuple[int, int, bool, str]],
    tasks: list[tuple[bool, str | None, bool, str | None, int]],
) -> None:
    def fleet() -> list[Capacity]:
        return [
            Capacity(
                f"w{i}",
                {"zone": zone},
                slots=slots,
                used=min(used, slots),
                legacy=legacy,
                has=Resources(cpu=2, memory_mb=0, gpus=0),
                max_tasks={"io": 1},
            )
            for i, (slots, used, legacy, zone) in enumerate(workers)
        ]

    candidates = [
        Candidate(
            task_id=f"t{n}",
            priority=0,
            seq=n,
            labels={"zone": zone} if zone else {},
            legacy_ok=legacy_ok,
            placement=Placement.PACK if pack else Placement.SPREAD,
            task_class=cls,
            resources=Resources(cpu=cpu, memory_mb=0, gpus=0),
        )
        for n, (pack, zone, legacy_ok, cls, cpu) in enumerate(tasks)
    ]
    got = [(c.task_id, w) for c, w in place(candidates, fleet())]
    assert got == _reference_place(tasks, workers)


def test_a_free_slot_anywhere_comes_before_a_prefetch_place() -> None:
    # "a" is full but may hold 4 more; "b" has one free slot: spread and pack both take b's
    # slot first, then a's held places
    for placement in (Placement.SPREAD, Placement.PACK):
        workers = [
            Capacity("a", {}, slots=2, used=2, prefetch=4),
            Capacity("b", {}, slots=2, used=1, prefetch=0),
        ]
        tasks = [
            Candidate(task_id=f"t{n}", priority=0, seq=n, labels={}, legacy_ok=True,
                      placement=placement)
            for n in range(6)
        ]  # fmt: skip
        placed = [w for _, w in place(tasks, workers)]
        assert placed == ["b", "a", "a", "a", "a"], placement


@given(
    st.lists(st.tuples(st.integers(1, 4), st.integers(0, 6), st.integers(0, 3)), max_size=6),
    st.integers(0, 30),
)
@settings(max_examples=200, deadline=None)
def test_held_places_never_exceed_prefetch_and_slots_fill_first(
    shapes: list[tuple[int, int, int]], n: int
) -> None:
    workers = [
        Capacity(f"w{i}", {}, slots=slots, used=min(used, slots + prefetch), prefetch=prefetch)
        for i, (slots, used, prefetch) in enumerate(shapes)
    ]
    before = {w.worker_id: (w.slots, w.used, w.prefetch) for w in workers}
    placed = place([candidate(i) for i in range(n)], workers)
    taken = {w: sum(1 for _, x in placed if x == w) for w in before}
    for name, (slots, used, prefetch) in before.items():
        assert used + taken[name] <= slots + prefetch
    # a task goes to a held place only once no worker has a free slot left
    slots_left = sum(max(s - u, 0) for s, u, _ in before.values())
    counts = {name: used for name, (_, used, _) in before.items()}
    for _, name in placed:
        if counts[name] < before[name][0]:
            slots_left -= 1
        else:
            assert slots_left == 0
        counts[name] += 1


def test_a_task_with_stdin_goes_only_to_a_worker_that_feeds_it() -> None:
    """A worker older than stdin would run the task with stdin closed: never placed there."""
    old = Capacity("old", {}, slots=4, used=0, takes_stdin=False)
    new = Capacity("new", {}, slots=1, used=0)
    reading = dataclasses.replace(candidate(0), stdin=True)
    assert place([reading], [old]) == []
    assert [w for _, w in place([reading, candidate(1)], [old, new])] == ["new", "old"]
