"""A master's sessions with its workers: acks made close together share a message; a large
fleet is paced to the heartbeat budget."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from gridrun.clock import SystemClock
from gridrun.master.core.config import ServiceConfig
from gridrun.master.core.pacing import Pacing
from gridrun.master.core.sessions import ACK_DELAY_S, AckCmd, CancelCmd, Sessions, WorkerSession
from gridrun.model import AttemptRef
from gridrun.resources import Resources
from gridrun.spec import make_spec


def session() -> WorkerSession:
    return WorkerSession(worker_id="w1", hostname="h", labels={}, slots=2, last_seen=0.0)


async def test_acks_made_together_go_out_as_one_message_after_the_delay() -> None:
    s = session()
    refs = [AttemptRef(f"{i:016x}", 1) for i in range(3)]
    for ref in refs:
        s.ack(ref)
    s.send(CancelCmd(refs[0], "x"))  # commands are not held back by the acks
    assert await asyncio.wait_for(s.next_command(), 1) == CancelCmd(refs[0], "x")
    loop = asyncio.get_running_loop()
    began = loop.time()
    assert await asyncio.wait_for(s.next_command(), 1) == AckCmd(tuple(refs))
    assert loop.time() - began >= ACK_DELAY_S * 0.5

    s.ack(refs[0])  # a later ack starts a new message
    assert await asyncio.wait_for(s.next_command(), 1) == AckCmd((refs[0],))


async def test_a_closed_session_sends_no_pending_acks() -> None:
    s = session()
    s.ack(AttemptRef("0" * 16, 1))
    s.close("gone")
    await asyncio.sleep(ACK_DELAY_S * 2)
    assert await s.next_command() is None


def test_a_fleet_over_the_heartbeat_budget_beats_less_often_with_longer_timeouts() -> None:
    config = ServiceConfig(heartbeat_interval_s=2.0, liveness_timeout_s=10.0)
    pacing = Pacing(config, SystemClock(), Sessions())
    assert pacing.pace(1) == (2.0, 10.0)
    assert pacing.pace(200) == (2.0, 10.0)  # 100 a second exactly
    assert pacing.pace(1000) == (10.0, 50.0)
    assert pacing.pace(5000) == (50.0, 250.0)


@settings(max_examples=300, deadline=None)
@given(
    slots=st.integers(0, 6),
    prefetch=st.integers(0, 4),
    held=st.integers(0, 12),
    announces=st.booleans(),
    draining=st.booleans(),
    quarantined=st.sampled_from([None, "missed deadlines"]),
    gpus=st.lists(st.integers(0, 2), max_size=12),
)
def test_the_places_a_worker_has_are_its_capacitys_free_places(
    slots: int,
    prefetch: int,
    held: int,
    announces: bool,
    draining: bool,
    quarantined: str | None,
    gpus: list[int],
) -> None:
    """Dispatch skips workers with no place free without making their Capacity: the count
    it reads must be the one placement would have found."""
    s = WorkerSession(
        worker_id="w1", hostname="h", labels={}, slots=slots, last_seen=0.0,
        announces=announces, prefetch=prefetch, draining=draining, quarantined=quarantined,
    )  # fmt: skip
    for i in range(held):
        asks = Resources(gpus=gpus[i]) if i < len(gpus) else Resources()
        s.inflight[AttemptRef(f"{i:016x}", 1)] = make_spec(cmd="true", resources=asks)
    capacity = s.capacity()
    assert s.places() == capacity.free
    assert capacity.taken == Resources(gpus=sum(gpus[:held]))
