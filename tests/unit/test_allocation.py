"""Allocation queues' pure parts: which queue could take a task, how many workers are wanted,
the backoff, and Slurm's batch script."""

from __future__ import annotations

import shlex
from pathlib import Path

from gridrun.allocating import (
    Allocation,
    AllocQueue,
    AllocState,
    QueueConfig,
    QueueState,
    allocation_of,
)
from gridrun.auth import Role, TokenEntry, Tokens, digest, new_token
from gridrun.clock import SystemClock
from gridrun.dispatching import Candidate
from gridrun.master.backends import Submission
from gridrun.master.backends.slurm import batch_script, walltime
from gridrun.master.core.access import Access
from gridrun.master.core.alloc_demand import backoff_ms, demand, early_ms
from gridrun.master.core.alloc_fit import QueueBook, why_not
from gridrun.master.core.audit import Audit
from gridrun.model import WorkerInfo, WorkerState
from gridrun.resources import Resources
from gridrun.spec import parse_selector


def task(n: int, timeout: float | None = 60, **fields: object) -> Candidate:
    return Candidate(task_id=f"t{n}", priority=0, seq=n, labels=fields.pop("labels", {}),  # type: ignore[arg-type]
                     legacy_ok=True, timeout_s=timeout, **fields)  # type: ignore[arg-type]  # fmt: skip


def queue(name: str = "q", **config: object) -> AllocQueue:
    config.setdefault("time_limit_s", 600.0)
    return AllocQueue(name, QueueConfig(**config))  # type: ignore[arg-type]


def worker(worker_id: str, slots: int, running: int = 0, **labels: str) -> WorkerInfo:
    return WorkerInfo(worker_id, "h", labels, slots, WorkerState.ONLINE, running=running)


def test_a_queue_takes_what_its_workers_could_run_in_their_time() -> None:
    q = queue(labels={"zone": "a"}, resources=Resources(4, 8192, 0))
    assert why_not(q, task(1)) is None
    assert why_not(q, task(2, labels={"zone": "a"})) is None
    assert "do not match zone=b" in (why_not(q, task(3, labels={"zone": "b"})) or "")
    assert why_not(q, task(4, selector=parse_selector("zone in (a,c)"))) is None
    assert "lack" in (why_not(q, task(5, resources=Resources(8, 0, 0))) or "")
    assert "no timeout" in (why_not(q, task(6, timeout=None)) or "")
    # 600 s less a margin of 60 s: 540 s fits, 541 s does not
    assert q.config.worker_time_s == 540
    assert why_not(q, task(7, timeout=540)) is None
    assert "beyond" in (why_not(q, task(8, timeout=541)) or "")
    assert "pinned" in (why_not(q, task(9, worker="w1")) or "")


def test_the_workers_margin_to_leave() -> None:
    assert QueueConfig(time_limit_s=60).worker_time_s == 50  # at least 10 s
    assert QueueConfig(time_limit_s=12).worker_time_s == 6  # never below half
    assert QueueConfig(time_limit_s=86400).worker_time_s == 86400 - 300  # at most 5 min


def test_the_book_says_why_no_queue_could_take_a_task() -> None:
    book = QueueBook()
    assert book.why_none(task(1, timeout=None)) is None  # no queues: nothing to say
    book.set([queue("b", labels={"gpu": "1"}), queue("a")])
    assert book.why_none(task(1)) is None
    assert book.bringing(task(1)) == "a"
    why = book.why_none(task(2, timeout=None, labels={"gpu": "1"})) or ""
    assert why.startswith("no allocation queue could take it (a: its workers do not match gpu=1")
    assert "b: it has no timeout" in why
    book.set([replace_state(queue("a"), QueueState.PAUSED)])
    assert book.bringing(task(1)) is None
    assert book.why_none(task(1)) is None


def replace_state(q: AllocQueue, state: QueueState) -> AllocQueue:
    return AllocQueue(q.name, q.config, state)


def test_demand_counts_what_no_free_slot_and_no_coming_worker_takes() -> None:
    q = queue(slots=2)
    tasks = [task(n) for n in range(7)]
    assert demand(tasks, [q], [], []) == {"q": 7}
    # a live worker with 3 free slots takes 3 of them now
    assert demand(tasks, [q], [worker("w", 4, running=1)], []) == {"q": 4}
    # a worker whose labels do not fit takes none
    labelled = [task(n, labels={"zone": "a"}) for n in range(3)]
    assert demand(labelled, [q], [worker("w", 4, zone="b")], []) == {"q": 0}
    # an allocation on its way (not joined yet) brings 2 slots; one joined brings none more
    coming = Allocation("a1", "q", AllocState.QUEUED, 1, created_at=1)
    joined = Allocation("a2", "q", AllocState.RUNNING, 1, created_at=1, connected_at=2)
    on = WorkerInfo("alloc-a2-0", "h", {}, 2, WorkerState.ONLINE, running=2)
    assert demand(tasks, [q], [on], [coming, joined]) == {"q": 5}
    assert demand(tasks[:1], [q], [], [coming]) == {"q": -1}  # more coming than wanted
    # one joined whose worker is away a moment (the master restarted) is still on its way;
    # once its worker's lease has lapsed (gone) it brings nothing
    assert demand(tasks, [q], [], [coming, joined]) == {"q": 3}
    assert demand(tasks, [q], [], [coming, joined], gone={"a2"}) == {"q": 5}
    pair = Allocation("a3", "q", AllocState.RUNNING, 2, created_at=1, connected_at=2)
    half = WorkerInfo("alloc-a3-1", "h", {}, 2, WorkerState.ONLINE, running=2)
    assert demand(tasks, [q], [half], [pair]) == {"q": 5}  # one of its two is away
    # held by a limit, pinned, or too long for the queue: none
    held = [
        task(1, unschedulable="waiting: owner a is at its quota of 2 running"),
        task(2, worker="w9"),
        task(3, timeout=None),
        task(4, timeout=10_000),
    ]
    assert demand(held, [q], [], []) == {"q": 0}
    # each task counts for the first queue that could take it
    gpu = queue("a-gpu", labels={"gpu": "1"})
    mixed = [task(1, labels={"gpu": "1"}), task(2)]  # the plainest queue first, not by name
    assert demand(mixed, [gpu, queue("b")], [], []) == {"a-gpu": 1, "b": 1}


def test_workers_gone_sooner_than_they_would_leave_by_themselves_are_a_failure() -> None:
    # a minute, or half the time the workers take to leave by themselves (idle, time limit)
    assert early_ms(QueueConfig(time_limit_s=3600, idle_timeout_s=300)) == 60_000
    assert early_ms(QueueConfig(time_limit_s=3600, idle_timeout_s=5)) == 2_500
    assert early_ms(QueueConfig(time_limit_s=40, idle_timeout_s=300)) == 15_000  # 40 s less 10


def test_backoff_doubles_to_a_cap() -> None:
    assert [backoff_ms(n, 5) for n in (1, 2, 3)] == [5000, 10000, 20000]
    assert backoff_ms(20, 5) == 600_000


def test_an_allocations_workers_are_named_for_it() -> None:
    a = Allocation("0a1b2c3d4e5f", "q", AllocState.QUEUED, 2, created_at=1)
    assert a.worker_name(1) == "alloc-0a1b2c3d4e5f-1"
    assert allocation_of(a.worker_name(1)) == "0a1b2c3d4e5f"
    assert allocation_of("w1") is None
    assert allocation_of("alloc-x") is None
    assert allocation_of("alloc--3") is None


def test_slurms_batch_script(tmp_path: Path) -> None:
    q = queue(
        "cpu", time_limit_s=3600, slots=4, labels={"zone": "a b"}, idle_timeout_s=300,
        worker_args=("--allow-shell",), worker_command=("/opt/gridrun", "worker"),
    )  # fmt: skip
    one = Allocation("abc", "cpu", AllocState.QUEUED, 1, created_at=1)
    script = batch_script(Submission(q, one, "s3cret", "m:50051", tmp_path))
    lines = script.splitlines()
    assert lines[0] == "#!/bin/sh"
    assert "#SBATCH --time=1:00:00" in lines
    assert "#SBATCH --job-name=gridrun-cpu" in lines
    assert "GRIDRUN_JOIN_TOKEN=s3cret" in lines
    exec_line = lines[-1]
    argv = shlex.split(exec_line.removeprefix("exec "))
    assert argv[:2] == ["/opt/gridrun", "worker"]
    assert argv[argv.index("--name") + 1] == "alloc-abc-0"
    assert argv[argv.index("--time-limit") + 1] == "3300s"  # an hour less 5 min
    assert argv[argv.index("--label") + 1] == "zone=a b"
    assert "s3cret" not in exec_line  # the credential is not an argument (ps shows those)
    many = Allocation("abc", "cpu", AllocState.QUEUED, 3, created_at=1)
    script = batch_script(Submission(q, many, "s3cret", "m:50051", tmp_path))
    assert "#SBATCH --nodes=3" in script
    assert "srun" in script
    assert '"alloc-abc-$SLURM_PROCID"' in shlex.split(script.splitlines()[-1])[-1]
    assert walltime(59) == "0:01:00"
    assert walltime(90_000) == "25:00:00"


def test_an_allocations_credential_joins_its_own_workers_only() -> None:
    """While its allocation runs, its credential joins workers named for it, no other; a
    name of an allocation's needs that credential; once it ends, the credential is void."""
    fleet = new_token()
    access = Access(
        Tokens([TokenEntry.of("fleet", Role.WORKER, digest(fleet))]),
        Audit(None, SystemClock()),
        bind_worker_certs=False,
    )
    mine = new_token()
    access.grants.add(digest(mine), "abc123")
    bearer = [("authorization", f"Bearer {mine}")]
    assert access.join_refusal(bearer, "peer") is None
    credential = access.credential(bearer)
    assert credential == "alloc:abc123"
    assert access.allocation_refusal("alloc-abc123-0", credential, "peer") is None
    assert "may not join" in (access.allocation_refusal("w1", credential, "peer") or "")
    assert access.allocation_refusal("alloc-other-0", credential, "peer") is not None
    # the fleet's join token may not pose as an allocation's worker
    assert access.allocation_refusal("alloc-abc123-0", "fleet", "peer") is not None
    assert access.allocation_refusal("w1", "fleet", "peer") is None
    access.grants.set({})  # its allocation ended
    assert access.join_refusal(bearer, "peer") == "the join token is not valid for this master"
