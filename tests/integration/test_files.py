"""Files that travel with tasks: inputs written into each attempt's own working directory,
collected files sent back after it ends, byte-exact, on SQLite and PostgreSQL; what may not be
collected (symlinks, `..`, over the budget) refused and said so; an array's input stored
once; retention removing files with their task."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from gridrun._proto import worker_pb2 as pb
from gridrun._proto import worker_pb2_grpc
from gridrun.errors import InputNotUploaded, InvalidSpec, PayloadTooLarge, TaskNotFound
from tests import pg
from tests.helpers import eventually_async
from tests.integration.conftest import TOKENS, Grid

MiB = 1 << 20


async def upload(grid: Grid, path: Path) -> str:
    return (await grid.client.upload_input(path))["sha256"]


async def fetched(grid: Grid, task_id: str, path: str, **kwargs: object) -> bytes:
    pieces = [p async for p in grid.client.file_bytes(task_id, path, **kwargs)]  # type: ignore[arg-type]
    return b"".join(pieces)


def files_by_path(files: list[dict[str, object]]) -> dict[object, dict[str, object]]:
    return {f["path"]: f for f in files}


async def test_an_input_is_in_the_working_directory_and_a_collected_file_comes_back_exact(
    grid: Grid, tmp_path: Path
) -> None:
    data = os.urandom(3 * MiB + 123)
    local = tmp_path / "in.bin"
    local.write_bytes(data)
    os.chmod(local, 0o755)
    digest = await upload(grid, local)
    assert digest == hashlib.sha256(data).hexdigest()
    await grid.add_worker("w1")
    task = await grid.submit(
        cmd="test -x tool && cp tool out/copy.bin 2>/dev/null || (mkdir out && cp tool"
        " out/copy.bin); pwd > where; echo $GRIDRUN_WORKDIR > workdir",
        shell=True,
        inputs=[{"name": "tool", "sha256": digest, "mode": 0o755}],
        collect=["out/*.bin", "where", "workdir", "nothing-*"],
    )
    done = await grid.wait(task["id"])
    assert done["state"] == "succeeded", done
    assert done["inputs"] == [{"name": "tool", "sha256": digest, "size": len(data), "mode": 0o755}]
    files = files_by_path(await grid.client.files(task["id"]))  # type: ignore[arg-type]
    assert set(files) == {"out/copy.bin", "where", "workdir"}  # (a glob matching nothing: none)
    copy = files["out/copy.bin"]
    assert (copy["state"], copy["size"], copy["sha256"]) == (
        "complete", len(data), hashlib.sha256(data).hexdigest()
    )  # fmt: skip
    assert await fetched(grid, task["id"], "out/copy.bin") == data
    where = (await fetched(grid, task["id"], "where")).decode().strip()
    assert where == (await fetched(grid, task["id"], "workdir")).decode().strip()
    assert where.endswith(f"{task['id']}-1")
    assert not Path(where).exists()  # removed once the attempt ended
    # a range, as HTTP says
    part = await fetched(grid, task["id"], "out/copy.bin", range_="bytes=1048570-1048580")
    assert part == data[1048570:1048581]
    tail = await fetched(grid, task["id"], "out/copy.bin", range_="bytes=-5")
    assert tail == data[-5:]
    url = f"/v1/tasks/{task['id']}/files/out/copy.bin"
    answer = await grid.api.get(url, headers={"Range": f"bytes={len(data)}-"})
    assert answer.status_code == 416
    assert answer.headers["content-range"] == f"bytes */{len(data)}"
    assert (await grid.api.get(url, headers={"Range": "bytes=9-3"})).content == data  # ignored
    head = await grid.api.head(url, headers={"Range": "bytes=10-19"})
    assert head.status_code == 206
    assert head.content == b""
    assert head.headers["content-length"] == "10"
    assert head.headers["content-range"] == f"bytes 10-19/{len(data)}"
    assert head.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'


async def test_inputs_are_refused_before_anything_is_queued_when_missing_or_too_large(
    grid: Grid, tmp_path: Path
) -> None:
    grid.master.config  # noqa: B018 (the grid's master is up)
    missing = hashlib.sha256(b"never sent").hexdigest()
    with pytest.raises(InputNotUploaded, match="not uploaded"):
        await grid.submit(cmd="true", inputs=[{"name": "a", "sha256": missing}])
    for bad in ("../a", "/etc/passwd", "a/../../b", "a//b", "./a"):
        local = tmp_path / "x"
        local.write_bytes(b"x")
        digest = await upload(grid, local)
        with pytest.raises(InvalidSpec):
            await grid.submit(cmd="true", inputs=[{"name": bad, "sha256": digest}])
    with pytest.raises(InvalidSpec):
        await grid.submit(cmd="true", collect=["../*"])
    assert (await grid.api.get("/v1/tasks")).json()["tasks"] == []
    # no such task: a 404 that says so, not an empty list
    with pytest.raises(TaskNotFound):
        await grid.client.files("0123456789abcdef01234567")
    nothing = await grid.api.get("/v1/tasks/0123456789abcdef01234567/files/out.txt")
    assert nothing.status_code == 404
    assert "no task" in nothing.json()["detail"]
    # bytes of another type are refused with what to send instead
    typed = await grid.api.put(f"/v1/inputs/{missing}", content=b"x")
    assert typed.status_code == 415
    assert "application/octet-stream" in typed.json()["detail"]


async def test_the_input_limit_holds_at_its_edge(tmp_path: Path) -> None:
    grid = Grid(tmp=tmp_path, master_overrides={"max_input": 1000})
    await grid.start_master()
    try:
        edge, over = tmp_path / "edge", tmp_path / "over"
        edge.write_bytes(b"e" * 1000)
        over.write_bytes(b"o" * 1001)
        at_edge = await upload(grid, edge)
        with pytest.raises(PayloadTooLarge, match="1,000 bytes"):
            await upload(grid, over)
        half = tmp_path / "half"
        half.write_bytes(b"h" * 600)
        other = await upload(grid, half)
        ok = await grid.submit(cmd="true", inputs=[{"name": "a", "sha256": at_edge}])
        assert ok["state"] == "queued"
        with pytest.raises(PayloadTooLarge, match="inputs are 1,200 bytes"):  # (600 twice)
            await grid.submit(
                cmd="true", inputs=[{"name": "a", "sha256": other}, {"name": "b", "sha256": other}]
            )
        assert len((await grid.api.get("/v1/tasks")).json()["tasks"]) == 1  # nothing queued
    finally:
        await grid.close()


async def test_symlinks_and_files_over_the_budget_are_listed_as_dropped_not_sent(
    tmp_path: Path,
) -> None:
    grid = Grid(tmp=tmp_path, master_overrides={"max_collect": 1000})
    await grid.start_master()
    try:
        await grid.add_worker("w1")
        task = await grid.submit(
            cmd="head -c 600 /dev/zero > a; head -c 400 /dev/zero > b; head -c 1 /dev/zero > c;"
            " ln -s /etc/passwd link; mkdir d; ln -s /etc linkdir; echo ok",
            shell=True,
            collect=["*", "linkdir/*"],
        )
        done = await grid.wait(task["id"])
        assert done["state"] == "succeeded"
        files = files_by_path(await grid.client.files(task["id"]))  # type: ignore[arg-type]
        assert {p: f["state"] for p, f in files.items()} == {
            "a": "complete", "b": "complete", "c": "dropped", "link": "dropped",
            "linkdir": "dropped",
        }  # fmt: skip
        assert "budget" in str(files["c"]["reason"])
        assert "symlink" in str(files["link"]["reason"])
        assert await fetched(grid, task["id"], "b") == b"\0" * 400
        answer = await grid.api.get(f"/v1/tasks/{task['id']}/files/link")
        assert answer.status_code == 404
        answer = await grid.api.get(f"/v1/tasks/{task['id']}/files/..%2F..%2Fetc%2Fpasswd")
        assert answer.status_code in (404, 422)
    finally:
        await grid.close()


async def test_an_arrays_input_is_stored_once_and_retention_takes_files_with_their_tasks(
    grid: Grid, tmp_path: Path
) -> None:
    local = tmp_path / "shared.bin"
    local.write_bytes(os.urandom(2 * MiB))
    digest = await upload(grid, local)
    again = await grid.client.upload_input(local)
    assert again["held"] is True  # nothing sent the second time
    await grid.add_worker("w1", slots=4)
    job = await grid.client.submit_array(
        {
            "cmd": "cmp shared.bin data/shared.bin && cp shared.bin out.$GRIDRUN_ARRAY_INDEX",
            "shell": True,
            "inputs": [
                {"name": "shared.bin", "sha256": digest},
                {"name": "data/shared.bin", "sha256": digest},
            ],
            "collect": ["out.*"],
        },
        array="1-8",
    )
    ids = [t["id"] for t in (await grid.client.job(job["id"]))["tasks"]]
    for task_id in ids:
        assert (await grid.wait(task_id))["state"] == "succeeded"
    db = grid.tmp / "master" / "gridrun.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM inputs").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM chunks WHERE blob LIKE 'i/%'").fetchone()[0] == 2
    storage = (await grid.api.get("/v1/storage")).json()
    assert storage["input_bytes"] == 2 * MiB
    assert storage["file_bytes"] == 8 * 2 * MiB
    answer = await grid.api.post("/v1/gc", json={"older_than_s": 0})
    assert answer.status_code == 200, answer.text
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM task_files").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM chunks WHERE blob LIKE 'f/%'").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM task_inputs").fetchone()[0] == 0


async def exact_100_mib(grid: Grid, tmp_path: Path) -> None:
    data = os.urandom(100 * MiB)
    local = tmp_path / "big.bin"
    local.write_bytes(data)
    digest = await upload(grid, local)
    await grid.add_worker("w1")
    task = await grid.submit(
        cmd="cmp big.bin /dev/stdin < big.bin && cp big.bin back.bin",
        shell=True,
        inputs=[{"name": "big.bin", "sha256": digest}],
        collect=["back.bin"],
        timeout_s=300,
    )
    done = await grid.wait(task["id"], timeout=300)
    assert done["state"] == "succeeded", done
    (back,) = await grid.client.files(task["id"])
    assert (back["size"], back["sha256"]) == (len(data), digest)
    sha = hashlib.sha256()
    size = 0
    async for piece in grid.client.file_bytes(task["id"], "back.bin"):
        sha.update(piece)
        size += len(piece)
    assert (size, sha.hexdigest()) == (len(data), digest)


@pytest.fixture
async def big_grid(tmp_path: Path) -> AsyncIterator[Grid]:
    grid = Grid(tmp=tmp_path, master_overrides={"max_input": 128 * MiB})
    await grid.start_master()
    try:
        yield grid
    finally:
        await grid.close()


@pytest.mark.slow
async def test_100_mib_in_and_out_byte_exact_on_sqlite(big_grid: Grid, tmp_path: Path) -> None:
    await exact_100_mib(big_grid, tmp_path)


@pytest.mark.slow
@pytest.mark.pg
async def test_100_mib_in_and_out_byte_exact_on_postgresql(tmp_path: Path) -> None:
    async with pg.database() as url:
        grid = Grid(tmp=tmp_path, master_overrides={"db": url, "max_input": 128 * MiB})
        await grid.start_master()
        try:
            await exact_100_mib(grid, tmp_path)
        finally:
            await grid.close()


async def test_a_worker_of_the_previous_version_is_sent_no_task_with_files_and_it_says_why(
    grid: Grid,
) -> None:
    """An older worker ignores fields it does not know: it would run the task without its
    inputs and collect nothing. It says nothing of files in its Hello, so it is sent none; a
    task without files still goes to it; the task with files says why it waits."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grid.grpc_port}") as channel:
        call = worker_pb2_grpc.WorkerServiceStub(channel).Connect()
        hello = pb.Hello(
            worker_id="old", slots=2, takes_stdin=True, takes_script=True, announces_starts=True
        )
        await call.write(pb.WorkerMessage(hello=hello))
        assert (await call.read()).WhichOneof("msg") == "welcome"
        with_files = await grid.submit(cmd="true", collect=["*.out"])
        plain = await grid.submit(cmd="true")
        first = await asyncio.wait_for(call.read(), 10)
        assigned = [m.assign.ref.task_id for m in first.batch.messages] or [
            first.assign.ref.task_id
        ]
        assert assigned == [plain["id"]]

        async def says_why() -> str | None:
            reason = (await grid.task(with_files["id"])).get("unschedulable")
            return reason if reason and "files" in reason else None

        reason = await eventually_async(says_why, 10)
        assert "old" in reason
        assert (await grid.task(with_files["id"]))["state"] == "queued"
        call.cancel()
    await grid.add_worker("new")
    assert (await grid.wait(with_files["id"]))["state"] == "succeeded"


async def test_a_files_ticket_opens_only_its_own_attempt_and_only_while_it_is_held(
    grid: Grid, tmp_path: Path
) -> None:
    """A worker asks for an input with its attempt's ticket: another attempt's ref with it,
    another task's input, a forged ticket, or the ticket once the attempt has ended are
    refused; so is a collected file sent with a bad path."""
    local = tmp_path / "secret.txt"
    local.write_bytes(b"alice's input")
    digest = await upload(grid, local)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grid.grpc_port}") as channel:
        stub = worker_pb2_grpc.WorkerServiceStub(channel)
        call = stub.Connect()
        hello = pb.Hello(worker_id="probe", slots=2, takes_files=True, announces_starts=True)
        await call.write(pb.WorkerMessage(hello=hello))
        assert (await call.read()).WhichOneof("msg") == "welcome"
        task = await grid.submit(cmd="true", inputs=[{"name": "s", "sha256": digest}])
        msg = await asyncio.wait_for(call.read(), 10)
        assign = msg.batch.messages[0].assign if msg.WhichOneof("msg") == "batch" else msg.assign
        assert assign.ref.task_id == task["id"]
        ticket = assign.files_ticket

        async def fetch(ref: pb.AttemptRef, digest: str, ticket: str) -> bytes:
            request = pb.FetchRequest(ticket=ticket, ref=ref, digest=digest)
            return b"".join([c.data async for c in stub.Fetch(request)])

        assert await fetch(assign.ref, digest, ticket) == b"alice's input"
        other = pb.AttemptRef(task_id=assign.ref.task_id, attempt=assign.ref.attempt + 1)
        for ref, wanted, given in (
            (other, digest, ticket),
            (assign.ref, hashlib.sha256(b"x").hexdigest(), ticket),
            (assign.ref, digest, ticket[:-4] + "AAAA"),
            (assign.ref, digest, ""),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await fetch(ref, wanted, given)
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED

        async def bad_path() -> AsyncIterator[pb.CollectMessage]:
            head = pb.CollectHead(ticket=ticket, ref=assign.ref, path="../escape", size=1)
            yield pb.CollectMessage(head=head)
            yield pb.CollectMessage(data=b"x")

        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Collect(bad_path())
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        finished = pb.Finished(ref=assign.ref, outcome=pb.OUTCOME_EXITED, has_exit_code=True)
        await call.write(pb.WorkerMessage(finished=finished))
        await grid.wait(task["id"])
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await fetch(assign.ref, digest, ticket)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        call.cancel()
    assert await grid.client.files(task["id"]) == []


async def test_one_owners_upload_is_not_anothers_input(shared: Grid, tmp_path: Path) -> None:
    """Inputs are kept per owner: bob naming the sha256 of alice's upload gets 422, and
    cannot learn that she sent it."""
    local = tmp_path / "alice.txt"
    local.write_bytes(b"alice only")
    shared.use_token(TOKENS["alice"])
    digest = await upload(shared, local)
    shared.use_token(TOKENS["bob"])
    assert (await shared.api.get(f"/v1/inputs/{digest}")).status_code == 404
    with pytest.raises(InputNotUploaded):
        await shared.submit(cmd="cat s", inputs=[{"name": "s", "sha256": digest}])
    shared.use_token(TOKENS["alice"])
    assert (await shared.submit(cmd="cat s", inputs=[{"name": "s", "sha256": digest}]))["id"]


async def test_the_output_budget_counts_collected_files_and_drops_the_oldest_first(
    tmp_path: Path,
) -> None:
    grid = Grid(tmp=tmp_path, master_overrides={"output_budget": 2500})
    master = await grid.start_master()
    try:
        await grid.add_worker("w1", slots=1)
        ids = []
        for _ in range(3):  # 1,000 bytes of files each (no output), oldest first
            task = await grid.submit(cmd="head -c 1000 /dev/zero > f", shell=True, collect=["f"])
            assert (await grid.wait(task["id"]))["state"] == "succeeded"
            ids.append(task["id"])
        freed = await master.core.retention.keep_output_budget()
        assert freed == 1000  # the oldest's file: 2,000 kept now
        (dropped,) = await grid.client.files(ids[0])
        assert (dropped["state"], dropped["reason"]) == (
            "dropped", "dropped by the output budget (--output-budget)"
        )  # fmt: skip
        assert (await grid.api.get(f"/v1/tasks/{ids[0]}/files/f")).status_code == 404
        assert await fetched(grid, ids[2], "f") == b"\0" * 1000
        assert await master.core.retention.keep_output_budget() == 0
    finally:
        await grid.close()


async def test_a_schedule_takes_no_inputs(grid: Grid, tmp_path: Path) -> None:
    local = tmp_path / "x"
    local.write_bytes(b"x")
    digest = await upload(grid, local)
    body = {"cron": "* * * * *", "cmd": "true", "inputs": [{"name": "x", "sha256": digest}]}
    refused = await grid.api.post("/v1/schedules", json=body)
    assert refused.status_code == 422
    assert "no inputs" in refused.json()["detail"]
    made = await grid.api.post("/v1/schedules", json={"cron": "* * * * *", "cmd": "true",
                                                       "collect": ["*.log"]})  # fmt: skip
    assert made.status_code == 201, made.text
