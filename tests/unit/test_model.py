"""The task lifecycle and spec validation: pure logic, no I/O."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridrun.errors import InvalidSpec, InvalidTransition
from gridrun.forms import parse_labels
from gridrun.model import (
    TERMINAL,
    TRANSITIONS,
    AttemptRef,
    Outcome,
    Report,
    RetryPolicy,
    StreamOutput,
    Task,
    TaskState,
    state_after,
    transition,
)
from gridrun.resources import labels_match
from gridrun.spec import make_spec


def test_terminal_states_have_no_way_out() -> None:
    for state in TERMINAL:
        assert TRANSITIONS[state] == frozenset()
        for target in TaskState:
            with pytest.raises(InvalidTransition):
                transition(state, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (TaskState.QUEUED, TaskState.ASSIGNED),
        (TaskState.QUEUED, TaskState.CANCELLED),
        (TaskState.ASSIGNED, TaskState.RUNNING),
        (TaskState.ASSIGNED, TaskState.QUEUED),
        (TaskState.ASSIGNED, TaskState.DELIVERED),
        (TaskState.RUNNING, TaskState.SUCCEEDED),
        (TaskState.RUNNING, TaskState.LOST),
        (TaskState.RUNNING, TaskState.QUEUED),  # a retry
        (TaskState.QUEUED, TaskState.EXPIRED),
    ],
)
def test_allowed_transitions(current: TaskState, target: TaskState) -> None:
    assert transition(current, target) is target


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (TaskState.QUEUED, TaskState.RUNNING),
        (TaskState.QUEUED, TaskState.SUCCEEDED),
        (TaskState.RUNNING, TaskState.ASSIGNED),
        (TaskState.RUNNING, TaskState.DELIVERED),
        (TaskState.EXPIRED, TaskState.QUEUED),
        (TaskState.SUCCEEDED, TaskState.CANCELLED),
    ],
)
def test_forbidden_transitions_raise(current: TaskState, target: TaskState) -> None:
    with pytest.raises(InvalidTransition, match=f"{current} task cannot become {target}"):
        transition(current, target)


@pytest.mark.parametrize(
    ("report", "state"),
    [
        (Report(Outcome.EXITED, exit_code=0), TaskState.SUCCEEDED),
        (Report(Outcome.EXITED, exit_code=2), TaskState.FAILED),
        (Report(Outcome.EXITED, signal=9), TaskState.FAILED),
        (Report(Outcome.TIMED_OUT, signal=15), TaskState.TIMED_OUT),
        (Report(Outcome.CANCELLED, signal=15), TaskState.CANCELLED),
        (Report(Outcome.SPAWN_FAILED), TaskState.FAILED),
        (Report(Outcome.NO_SLOT), TaskState.QUEUED),
        (Report(Outcome.WORKER_STOPPED, signal=15), TaskState.FAILED),
    ],
)
def test_state_after_a_report(report: Report, state: TaskState) -> None:
    assert state_after(report) is state


def test_cmd_is_split_with_shlex_not_on_spaces() -> None:
    spec = make_spec(cmd="""sh -c "echo hi > f" 'a  b'""")
    assert spec.argv == ("sh", "-c", "echo hi > f", "a  b")
    assert not spec.legacy_ok  # the article's worker would split it differently


def test_shell_runs_the_line_with_bin_sh() -> None:
    assert make_spec(cmd="echo $HOME | wc", shell=True).argv == ("/bin/sh", "-c", "echo $HOME | wc")
    assert make_spec(argv=["echo", "a b"], shell=True).argv == ("/bin/sh", "-c", "echo 'a b'")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one"),
        ({"cmd": "a", "argv": ["a"]}, "exactly one"),
        ({"cmd": ""}, "must not be empty"),
        ({"cmd": "echo 'open"}, "cannot be parsed"),
        ({"argv": []}, "non-empty"),
        ({"argv": [""]}, "non-empty"),
        ({"argv": ["a\x00b"]}, "NUL"),
        ({"cmd": "x" * 200_000}, "longer than"),
        ({"argv": ["x"] * 5000}, "more than"),
        ({"cmd": "a", "env": {"": "v"}}, "env name"),
        ({"cmd": "a", "env": {"A=B": "v"}}, "env name"),
        ({"cmd": "a", "timeout_s": 0}, "timeout_s"),
        ({"cmd": "a", "priority": 10**9}, "priority"),
        ({"cmd": "a", "labels": {"": "x"}}, "label names"),
        ({"cmd": "a", "cwd": ""}, "cwd"),
    ],
)
def test_invalid_specs_are_refused_with_a_reason(kwargs: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidSpec, match=message):
        make_spec(**kwargs)


def test_legacy_ok_only_for_plain_space_separated_commands() -> None:
    assert make_spec(cmd="touch test.txt").legacy_ok
    assert not make_spec(cmd="touch test.txt", env={"A": "1"}).legacy_ok
    assert not make_spec(cmd="touch test.txt", labels={"a": "b"}).legacy_ok
    assert not make_spec(cmd="touch test.txt", timeout_s=1).legacy_ok
    assert not make_spec(argv=["echo", "tab\there"]).legacy_ok
    assert not make_spec(argv=["echo", ""]).legacy_ok  # the article's split drops it
    assert not make_spec(argv=["echo", "no\u00a0break"]).legacy_ok  # unicode space
    assert make_spec(argv=["echo", "héllo", "--x=1"]).legacy_ok


def test_labels_parse_and_match() -> None:
    assert parse_labels(["gpu=a100", "zone = b"]) == {"gpu": "a100", "zone": "b"}
    with pytest.raises(InvalidSpec):
        parse_labels(["novalue"])
    assert labels_match({}, {"any": "thing"})
    assert labels_match({"gpu": "a100"}, {"gpu": "a100", "zone": "b"})
    assert not labels_match({"gpu": "a100"}, {"gpu": "h100"})
    assert not labels_match({"gpu": "a100"}, {})


def test_fencing_accepts_only_the_current_attempt_of_the_holder() -> None:
    task = Task(
        id="t1",
        seq=1,
        spec=make_spec(cmd="true"),
        state=TaskState.RUNNING,
        created_at=0,
        attempt=2,
        worker_id="w1",
    )
    assert task.held_by(AttemptRef("t1", 2), "w1")
    assert not task.held_by(AttemptRef("t1", 1), "w1")  # an older attempt
    assert not task.held_by(AttemptRef("t1", 2), "w2")  # another worker
    done = Task(
        id="t1",
        seq=1,
        spec=task.spec,
        state=TaskState.SUCCEEDED,
        created_at=0,
        attempt=2,
        worker_id="w1",
    )
    assert not done.held_by(AttemptRef("t1", 2), "w1")  # a duplicate after the end


def test_stream_output_keeps_the_tail_and_skips_resent_bytes() -> None:
    out = StreamOutput().append(0, b"hello ", cap=8).append(6, b"world", cap=8)
    assert out.data == b"lo world"
    assert out.total == 11
    assert out.dropped == 3
    assert out.append(6, b"world", cap=8) == out  # a re-sent chunk changes nothing
    partly = out.append(9, b"ld!!", cap=8)  # overlaps the last two bytes
    assert partly.data == b" world!!"
    assert partly.total == 13


def test_stream_output_counts_a_gap_as_dropped() -> None:
    out = StreamOutput().append(0, b"abc", cap=100).append(10, b"xyz", cap=100)
    assert out.data == b"xyz"
    assert out.total == 13
    assert out.dropped == 10


@given(
    chunks=st.lists(st.binary(min_size=0, max_size=50), max_size=30),
    cap=st.integers(min_value=0, max_value=120),
)
def test_stream_output_equals_the_tail_of_everything_written(chunks: list[bytes], cap: int) -> None:
    out = StreamOutput()
    offset = 0
    for chunk in chunks:
        out = out.append(offset, chunk, cap)
        offset += len(chunk)
    everything = b"".join(chunks)
    assert out.total == len(everything)
    assert out.data == (everything[-cap:] if cap else b"")
    assert out.dropped == len(everything) - len(out.data)


def test_workers_by_state_counts_every_state() -> None:
    from gridrun.model import WorkerInfo, WorkerState, workers_by_state

    def worker(i: int, state: WorkerState) -> WorkerInfo:
        return WorkerInfo(id=f"w{i}", hostname="h", labels={}, slots=1, state=state)

    online, offline = WorkerState.ONLINE, WorkerState.OFFLINE
    counts = workers_by_state([worker(1, online), worker(2, offline), worker(3, online)])
    assert counts == {WorkerState.ONLINE: 2, WorkerState.DRAINING: 0, WorkerState.OFFLINE: 1}
    assert workers_by_state([]) == dict.fromkeys(WorkerState, 0)


def test_a_worker_whose_lease_ran_out_is_offline_whatever_its_row_says() -> None:
    from gridrun.model import WorkerInfo, WorkerState

    row = WorkerInfo("w1", "h", {}, 2, WorkerState.ONLINE, lease_until=1000)
    assert row.state_at(1000) is WorkerState.ONLINE
    assert row.state_at(1001) is WorkerState.OFFLINE  # its master died without saying so
    draining = WorkerInfo("w2", "h", {}, 2, WorkerState.DRAINING, lease_until=None)
    assert draining.state_at(0) is WorkerState.OFFLINE  # never leased (an old row)
    offline = WorkerInfo("w3", "h", {}, 2, WorkerState.OFFLINE, lease_until=5000)
    assert offline.state_at(0) is WorkerState.OFFLINE


def test_retry_backoff_grows_by_its_factor_and_stops_at_max_s() -> None:
    policy = RetryPolicy(max_attempts=10, initial_s=1.0, factor=3.0, max_s=20.0)
    delays = [policy.delay_after(tries, TaskState.FAILED, 1) for tries in range(1, 10)]
    assert delays[:3] == [1.0, 3.0, 9.0]
    assert delays[3:] == [20.0] * 6  # 27, 81, ... capped
    assert policy.delay_after(10, TaskState.FAILED, 1) is None  # no tries left
