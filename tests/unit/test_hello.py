"""What the master accepts in a worker's Hello before anything reaches the store or a log."""

from __future__ import annotations

from gridrun._proto import worker_pb2 as pb
from gridrun.master.wire.rpc import hello_problem


def test_a_normal_hello_passes() -> None:
    hello = pb.Hello(
        worker_id="build-01.example:a@b_c", hostname="build-01", slots=8, labels={"gpu": "a100"}
    )
    assert hello_problem(hello) is None


def test_hostile_hellos_are_refused_with_a_reason() -> None:
    bad = {
        "": "worker_id",
        "-leading-dash": "worker_id",
        "evil\x1b[31m": "worker_id",
        "a" * 129: "worker_id",
        "has space": "worker_id",
    }
    for worker_id, field in bad.items():
        problem = hello_problem(pb.Hello(worker_id=worker_id, slots=1))
        assert problem is not None
        assert problem.startswith(field)
    assert "slots" in str(hello_problem(pb.Hello(worker_id="w", slots=0)))
    assert "slots" in str(hello_problem(pb.Hello(worker_id="w", slots=5000)))
    assert "hostname" in str(hello_problem(pb.Hello(worker_id="w", slots=1, hostname="a\nb")))
    many = {f"k{i}": "v" for i in range(65)}
    assert "labels" in str(hello_problem(pb.Hello(worker_id="w", slots=1, labels=many)))
    nul = {"k": "v\x00"}
    assert "label" in str(hello_problem(pb.Hello(worker_id="w", slots=1, labels=nul)))
