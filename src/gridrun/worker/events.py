"""What an agent tells whoever listens (`Agent.subscribe`): its connection, the attempts it
runs and ends, results waiting for the master, output it had to drop. The worker's metrics are
one listener; nothing reads the agent's internals to learn these."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gridrun.model import Outcome


@dataclass(frozen=True, slots=True)
class Connected:
    up: bool  # a stream to a master is open and welcomed (False: it ended)


@dataclass(frozen=True, slots=True)
class Running:
    count: int  # attempts running now


@dataclass(frozen=True, slots=True)
class AttemptEnded:
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class Unacked:
    count: int  # results on disk the master has not acknowledged yet


@dataclass(frozen=True, slots=True)
class OutputDropped:
    bytes: int  # output no master will ever get, dropped just now


AgentEvent = Connected | Running | AttemptEnded | Unacked | OutputDropped
Listener = Callable[[AgentEvent], None]
