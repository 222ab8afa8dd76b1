"""Placement policy: slots, labels, least loaded, queue order, legacy workers last."""

from __future__ import annotations

from gridrun.master.scheduler import Capacity, place
from gridrun.store import Candidate


def candidate(n: int, selector: dict[str, str] | None = None, legacy_ok: bool = True) -> Candidate:
    return Candidate(
        task_id=f"t{n}", priority=0, seq=n, selector=selector or {}, legacy_ok=legacy_ok
    )


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
