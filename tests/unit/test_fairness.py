"""Who goes next on a shared grid (gridrun.master.core.fairness): priority, then each owner in turn
by running / share, then age; quotas and concurrency limits hold lanes back, with a reason."""

from __future__ import annotations

from collections import Counter
from itertools import count

from gridrun.dispatching import Active, Candidate, Quota
from gridrun.master.core.fairness import is_waiting, plan
from gridrun.master.core.scheduler import Capacity
from gridrun.model import Concurrency
from gridrun.resources import Resources

NOBODY_RUNS = Active({}, {}, {})
_seq = count(1)


def lane(
    owner: str, n: int, priority: int = 0, queue: str = "default", **kw: object
) -> list[Candidate]:
    return [
        Candidate(f"{owner}{i}", priority, next(_seq), {}, True, owner=owner, queue=queue, **kw)  # type: ignore[arg-type]
        for i in range(n)
    ]


def slots(n: int) -> list[Capacity]:
    return [Capacity("w", {}, slots=n, used=0)]


def owners_of(placed: list[tuple[Candidate, str]]) -> list[str]:
    return [c.owner for c, _ in placed]


def test_owners_take_turns_whoever_submitted_first() -> None:
    heads = {"a": lane("a", 50), "b": lane("b", 5)}  # a's are all older
    result = plan(heads, NOBODY_RUNS, [], slots(8), {})
    assert owners_of(result.placed) == ["a", "b"] * 4


def test_an_owner_already_running_more_waits_for_the_others() -> None:
    heads = {"a": lane("a", 50), "b": lane("b", 5)}
    result = plan(heads, Active({"a": 4}, {}, {}), [], slots(5), {})
    # b until it runs as many as a; then the older first
    assert owners_of(result.placed) == ["b", "b", "b", "b", "a"]


def test_shares_weight_the_turns() -> None:
    heads = {"a": lane("a", 50), "b": lane("b", 50)}
    result = plan(heads, NOBODY_RUNS, [], slots(40), {"a": 3})
    assert Counter(owners_of(result.placed)) == {"a": 30, "b": 10}


def test_priority_wins_over_turns() -> None:
    heads = {"a": lane("a", 3, priority=5), "b": lane("b", 3)}
    result = plan(heads, Active({"a": 10}, {}, {}), [], slots(4), {})
    assert owners_of(result.placed) == ["a", "a", "a", "b"]


def test_a_concurrency_key_at_its_limit_waits_and_says_so() -> None:
    deploy = Concurrency("deploy", 2)
    heads = {"d": lane("a", 5, concurrency=deploy), "x": lane("b", 2)}
    result = plan(heads, Active({}, {}, {deploy.counted: 1}), [], slots(8), {})
    assert Counter(owners_of(result.placed)) == {"a": 1, "b": 2}
    waiting = [heads["d"][i].task_id for i in range(1, 5)]
    assert set(result.waiting) == set(waiting)
    assert result.waiting[waiting[0]] == "waiting for concurrency key deploy (2/2 running)"
    assert is_waiting(result.waiting[waiting[0]])


def test_quotas_on_running_hold_an_owner_and_a_queue() -> None:
    heads = {"a": lane("a", 5), "b": lane("b", 5, queue="nightly"), "c": lane("c", 5)}
    quotas = [Quota("owner", "a", max_running=1), Quota("queue", "nightly", max_running=2)]
    result = plan(heads, Active({}, {"nightly": 1}, {}), quotas, slots(10), {})
    assert Counter(owners_of(result.placed)) == {"a": 1, "b": 1, "c": 5}
    assert result.waiting[heads["a"][1].task_id] == "waiting: owner a is at its quota of 1 running"
    assert result.waiting[heads["b"][1].task_id] == (
        "waiting: queue nightly is at its quota of 2 running"
    )


def test_a_lane_that_no_longer_fits_gives_way_to_the_others() -> None:
    heads = {"gpu": lane("a", 3, resources=Resources(gpus=1)), "plain": lane("b", 5)}
    capacities = [Capacity("w", {}, slots=4, used=0, has=Resources(4, 1024, 1))]
    result = plan(heads, NOBODY_RUNS, [], capacities, {})
    assert owners_of(result.placed) == ["a", "b", "b", "b"]  # one GPU: one of a's, then b's
    assert not result.waiting
