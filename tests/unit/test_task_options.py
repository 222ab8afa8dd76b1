"""Every task option means the same thing in every place that names it: the CLI's flags, the
SDK's types, the HTTP schema in and out, the stored spec, and the Assign a worker is sent. An
option added in one place and forgotten in another fails here, by name."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from gridrun._proto import worker_pb2 as pb
from gridrun.cli.options import TaskOptions
from gridrun.client.types import SubmitOptions, TaskDict
from gridrun.master.core.sealing import Sealer
from gridrun.master.core.sessions import AssignCmd
from gridrun.master.http.requests import TaskIn
from gridrun.master.http.schemas import TaskOut
from gridrun.master.wire.rpc import command_to_pb
from gridrun.model import Placement, Task, TaskSpec, TaskState
from gridrun.store import NewTask
from gridrun.store.rows import spec_from_json, spec_to_json
from gridrun.store.sqlite import SqliteStore
from gridrun.worker.wire import assignment_from_pb

# every field of POST /v1/tasks, none at its default
EVERY_OPTION: dict[str, Any] = {
    "cmd": None,  # (argv given instead: one or the other)
    "argv": ["python3", "train.py", "--epochs", "3"],
    "shell": True,
    "env": {"MODE": "fast"},
    "secret_env": {"TOKEN": "s3cret"},
    "cwd": "/srv/data",
    "timeout_s": 90.0,
    "priority": 7,
    "labels": {"zone": "a"},
    "name": "train",
    "max_attempts": 3,
    "retry": {"initial_s": 2.0, "factor": 3.0, "max_s": 30.0, "on_exit_codes": [75]},
    "queue_timeout_s": 600.0,
    "idempotency_key": "train-1",
    "on": "gpu, zone in (a,b)",
    "cpu": 2.0,
    "memory_mb": 512,
    "gpus": 1,
    "after": ["0" * 24],
    "task_class": "heavy",
    "placement": "pack",
    "queue": "nightly",
    "concurrency_key": "db",
    "concurrency_limit": 2,
    "retain_s": 86_400.0,
    "stdin_base64": "YQpiCg==",  # a\nb\n
    "inputs": [{"name": "in/data.csv", "sha256": "ab" * 32, "mode": 0o600}],
    "collect": ["out/*.csv"],
}
# (the master sets these itself: a client cannot)
SET_BY_THE_MASTER = {"submitted_by", "worker", "job", "job_index"}
# fields of TaskSpec a worker is not sent: the master alone acts on them
MASTER_ONLY = {
    "cmd",  # the worker runs argv (a shell task arrives as /bin/sh -c)
    "priority", "labels", "name", "retry", "queue_timeout_s", "idempotency_key", "submitted_by",
    "selector", "after", "worker", "job", "job_index", "task_class", "placement", "queue",
    "concurrency",
    "retain_s",
}  # fmt: skip


def test_the_sdk_and_the_http_schema_name_the_same_options() -> None:
    assert set(TaskIn.model_fields) == set(SubmitOptions.__annotations__) | {"cmd"}
    assert set(TaskOut.model_fields) == set(TaskDict.__annotations__)
    # (this test covers each of them; a script takes argv as its arguments, not shell or cmd)
    assert set(EVERY_OPTION) | {"script_base64"} == set(TaskIn.model_fields)


def test_every_http_option_has_its_cli_flag(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.env"
    secrets.write_text("S2=2\n")
    given = TaskOptions(
        shell=True, env=["A=1"], secret_env=["S=1"], cwd="/x", timeout=1, priority=1,
        on=["a=b"], label=["team=x"], name="n", max_attempts=2, retry_delay=2, retry_on=[3],
        queue_timeout=4,
        idempotency_key="k", cpu=1, memory_mb=1, gpus=1, after=["t"], task_class="c",
        placement=Placement.PACK, queue="q", concurrency="k=2", retain="1d",
        secret_env_file=secrets, stdin=str(secrets), input=[f"{secrets}:s.env"],
        input_dir=[str(tmp_path)], collect=["out/*"],
    )  # fmt: skip
    defaults = TaskOptions()
    fields = [f.name for f in dataclasses.fields(TaskOptions)]
    # each given (the script below: it takes no --shell)
    assert [n for n in fields if getattr(given, n) == getattr(defaults, n)] == ["script"]
    scripted = dataclasses.replace(given, shell=False, script=secrets).body(["a"])
    assert (scripted["argv"], scripted["cmd"]) == (["a"], None)
    produced = set(given.body(["a"])) | set(given.body(["a", "b"])) | set(scripted)
    assert set(TaskIn.model_fields) == produced  # every option of the API has its flag
    assert given.body(["a"])["labels"] == {"team": "x"}
    assert produced <= set(TaskIn.model_fields)
    body = TaskIn.model_validate(given.body(["a", "b"]))  # and the API takes what it sends
    assert (body.argv, body.retain_s, body.concurrency_limit) == (["a", "b"], 86_400.0, 2)
    names = sorted(i.name for i in body.inputs or ())  # (the directory: under its own name)
    assert names == sorted([f"{tmp_path.name}/secrets.env", "s.env"])
    assert body.collect == ["out/*"]


async def test_every_option_given_over_http_is_stored_and_shown_as_given(tmp_path: Path) -> None:
    spec = TaskIn.model_validate(EVERY_OPTION).to_spec("alice", Sealer.ephemeral().seal)
    given = {f.name for f in dataclasses.fields(TaskSpec) if f.name not in SET_BY_THE_MASTER}
    default = TaskSpec(argv=())
    # (cmd stays None: argv is given; a command line is the other way to say it; a script,
    # the third, is below)
    assert {n for n in given if getattr(spec, n) == getattr(default, n)} == {"cmd", "script"}
    scripted = TaskIn(argv=["x"], script_base64="ZWNobyBoaQo=").to_spec()  # echo hi
    assert (scripted.script, scripted.argv) == (b"echo hi\n", ("x",))
    assert spec_from_json(spec_to_json(scripted)) == scripted
    assert TaskIn(cmd="echo hi").to_spec().cmd == "echo hi"
    assert spec_from_json(spec_to_json(spec)) == spec  # the stored form keeps every field

    store = SqliteStore(tmp_path / "gridrun.db", origin="m1")
    await store.open()
    try:
        await store.files.begin_input("alice", "ab" * 32, now=1)  # (its bytes: uploaded)
        await store.files.finish_input("alice", "ab" * 32, 5)
        first = TaskIn(cmd="true").to_spec()  # the task it runs after
        await store.tasks.add_tasks([NewTask("0" * 24, first)], now=1)
        await store.tasks.add_tasks([NewTask("0" * 24 + "1", spec)], now=1)
        shown = TaskOut.of(await store.tasks.get_task("0" * 24 + "1")).model_dump(mode="json")
    finally:
        await store.close()
    differ = {
        key: (value, shown[key])
        for key, value in EVERY_OPTION.items()
        if key not in ("argv", "secret_env", "retry", "on", "stdin_base64", "inputs")
        and shown[key] != value
    }
    assert not differ
    assert shown["argv"] == ["/bin/sh", "-c", "python3 train.py --epochs 3"]  # (shell: true)
    assert shown["secret_env"] == ["TOKEN"]  # names only, never the value
    assert shown["stdin_bytes"] == 4  # its size only
    assert spec.stdin == b"a\nb\n"
    assert shown["on"] == "gpu, zone in (a,b)"
    assert shown["inputs"] == [  # (its size: as the master's Files.resolve finds it)
        {"name": "in/data.csv", "sha256": "ab" * 32, "size": 0, "mode": 0o600}
    ]
    assert spec.retry.on_exit_codes == (75,)
    assert (spec.retry.initial_s, spec.retry.factor, spec.retry.max_s) == (2.0, 3.0, 30.0)


def test_a_worker_is_sent_every_option_it_acts_on() -> None:
    spec = TaskIn.model_validate(EVERY_OPTION).to_spec("alice", Sealer.ephemeral().seal)
    sent = set(TaskSpec.__dataclass_fields__) - MASTER_ONLY
    assert sent == {
        "argv", "shell", "env", "cwd", "timeout_s", "resources", "secrets", "stdin", "script",
        "inputs", "collect",
    }  # fmt: skip
    assert set(pb.Assign.DESCRIPTOR.fields_by_name) == {
        "ref", "argv", "shell", "env", "cwd", "timeout_ms", "kill_grace_ms", "gpus",
        "secret_env", "cpu", "memory_mb", "stdin", "script", "inputs", "collect",
        "collect_budget_bytes", "files_ticket",
    }  # fmt: skip
    task = Task(id="t1", spec=spec, state=TaskState.ASSIGNED, attempt=1, seq=1, created_at=1)
    message = command_to_pb(AssignCmd(task, 5.0, {"TOKEN": "s3cret"}, "ticket", 1000)).assign
    assert (message.gpus, message.cpu, message.memory_mb) == (1, 2.0, 512)
    assert [(i.name, i.digest, i.mode) for i in message.inputs] == [
        ("in/data.csv", "ab" * 32, 0o600)
    ]
    assert (list(message.collect), message.collect_budget_bytes, message.files_ticket) == (
        ["out/*.csv"], 1000, "ticket"
    )  # fmt: skip
    assert dict(message.secret_env) == {"TOKEN": "s3cret"}
    assert message.stdin == b"a\nb\n"
    got = assignment_from_pb(message)
    assert (got.argv, got.shell, got.env, got.cwd, got.timeout_s) == (
        spec.argv, True, {"MODE": "fast"}, "/srv/data", 90.0,
    )  # fmt: skip
