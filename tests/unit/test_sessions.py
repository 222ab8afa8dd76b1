"""A master's session with one worker: acknowledgements made close together share a message."""

from __future__ import annotations

import asyncio

from gridrun.master.sessions import ACK_DELAY_S, AckCmd, CancelCmd, WorkerSession
from gridrun.model import AttemptRef


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
