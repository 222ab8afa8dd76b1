"""The floor under `true` throughput: what one Assign and one Finished cost over grpc.aio alone.

A gridrun task costs at least its child process plus one message each way on the worker's
stream. This measures both in the same run, with nothing else: a grpc.aio server process
writes gridrun's own `Assign` messages on S streams (K in flight on each), S client processes
answer each with a `Finished` at once (a reader task and a writer task on each side, as the
master and the worker have). Each process reports its own CPU (all threads) over the
exchange. Then `xargs -P S*K -n 1 true` gives the CPU of a `true` task with no dispatcher.

When both are CPU-bound on the same cores, gridrun/xargs can be at most
    xargs CPU per task / (xargs CPU per task + message CPU per task)
whatever the store, the HTTP API and the bookkeeping cost on top.

usage: python bench/grpc_floor.py [--exchanges N] [--streams S] [--inflight K]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time

import grpc
from fleet import succeeded
from grid import free_port

from gridrun._proto import worker_pb2 as pb
from gridrun._proto import worker_pb2_grpc


def cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return usage.ru_utime + usage.ru_stime


def assign(n: int) -> pb.MasterMessage:
    ref = pb.AttemptRef(task_id=f"{n:024x}", attempt=1)
    return pb.MasterMessage(assign=pb.Assign(ref=ref, argv=["true"], kill_grace_ms=5000))


class Master(worker_pb2_grpc.WorkerServiceServicer):
    """Hands out `per_stream` assignments on each stream, K at a time, like a dispatcher."""

    def __init__(self, streams: int, per_stream: int, inflight: int) -> None:
        self.streams, self.per_stream, self.inflight = streams, per_stream, inflight
        self.joined = 0
        self.ended = 0
        self.go = asyncio.Event()
        self.done = asyncio.Event()
        self.window: list[float] = []  # wall and CPU when all streams began, when all ended

    async def Connect(  # noqa: N802 (the gRPC method name)
        self, request_iterator: object, context: grpc.aio.ServicerContext[object, object]
    ) -> None:
        self.joined += 1
        if self.joined == self.streams:
            self.window += [time.perf_counter(), cpu_self()]
            self.go.set()
        await self.go.wait()
        queue: asyncio.Queue[pb.MasterMessage] = asyncio.Queue()

        async def writer() -> None:
            while True:
                await context.write(await queue.get())

        writing = asyncio.create_task(writer())
        sent = 0
        for _ in range(min(self.inflight, self.per_stream)):
            queue.put_nowait(assign(sent))
            sent += 1
        for _ in range(self.per_stream):
            msg = await context.read()
            if not isinstance(msg, pb.WorkerMessage):
                raise SystemExit("a client left early")
            if sent < self.per_stream:
                queue.put_nowait(assign(sent))
                sent += 1
        writing.cancel()  # every assignment was answered, so every one was written
        self.ended += 1
        if self.ended == self.streams:
            self.window += [time.perf_counter(), cpu_self()]
            self.done.set()


async def serve(port: int, streams: int, per_stream: int, inflight: int) -> None:
    server = grpc.aio.server()
    master = Master(streams, per_stream, inflight)
    worker_pb2_grpc.add_WorkerServiceServicer_to_server(master, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await master.done.wait()
    began, cpu0, ended, cpu1 = master.window
    print(json.dumps({"wall": ended - began, "cpu": cpu1 - cpu0}), flush=True)
    await server.stop(grace=1)


async def client(port: int) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = worker_pb2_grpc.WorkerServiceStub(channel).Connect()
        queue: asyncio.Queue[pb.WorkerMessage] = asyncio.Queue()

        async def writer() -> None:
            while True:
                await call.write(await queue.get())

        writing = asyncio.create_task(writer())
        await call.write(pb.WorkerMessage(hello=pb.Hello(worker_id="floor", slots=1)))
        first = True
        cpu0 = cpu_self()
        while isinstance(msg := await call.read(), pb.MasterMessage):
            if first:
                cpu0, first = cpu_self(), False
            queue.put_nowait(succeeded(msg.assign))
        cpu = cpu_self() - cpu0
        writing.cancel()
        print(json.dumps({"cpu": cpu}), flush=True)


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def xargs_true(n: int, parallel: int) -> tuple[float, float]:
    """(tasks/s, CPU seconds per task of xargs and its children)."""
    cpu0, start = child_cpu(), time.perf_counter()
    subprocess.run(
        ["xargs", "-P", str(parallel), "-n", "1", "true"],
        input=b"1\n" * n, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return n / (time.perf_counter() - start), (child_cpu() - cpu0) / n


def exchange(args: argparse.Namespace) -> tuple[float, float, float]:
    """(exchanges/s, master-side CPU s per exchange, worker-side CPU s per exchange)."""
    port = free_port()
    per_stream = args.exchanges // args.streams
    me = [sys.executable, __file__]
    server = subprocess.Popen(
        [*me, "--serve", str(port), "--streams", str(args.streams),
         "--exchanges", str(args.exchanges), "--inflight", str(args.inflight)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert server.stdout is not None
    if server.stdout.readline().strip() != "ready":
        raise SystemExit("the server did not start")
    clients = [
        subprocess.Popen([*me, "--client", str(port)], stdout=subprocess.PIPE, text=True)
        for _ in range(args.streams)
    ]
    try:
        served = json.loads(server.stdout.readline())
        answered = [json.loads(c.communicate(timeout=300)[0].splitlines()[-1]) for c in clients]
        server.wait(timeout=30)
    finally:
        for proc in (server, *clients):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    n = per_stream * args.streams
    return n / served["wall"], served["cpu"] / n, sum(a["cpu"] for a in answered) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--exchanges", type=int, default=20000)
    parser.add_argument("--streams", type=int, default=2, help="worker processes")
    parser.add_argument("--inflight", type=int, default=2, help="assignments out per stream")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--client", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        asyncio.run(serve(args.serve, args.streams, args.exchanges // args.streams, args.inflight))
        return
    if args.client is not None:
        asyncio.run(client(args.client))
        return
    parallel = args.streams * args.inflight
    print(
        f"machine: {os.cpu_count()} cores; {args.streams} streams x {args.inflight} in flight;"
        f" {args.exchanges} exchanges"
    )
    before_rate, before_cpu = xargs_true(5000, parallel)
    rate, master_cpu, worker_cpu = exchange(args)
    after_rate, after_cpu = xargs_true(5000, parallel)
    child = (before_cpu + after_cpu) / 2
    messages = master_cpu + worker_cpu
    print(
        f"Assign + Finished over grpc.aio, nothing else: {rate:8.0f} exchanges/s;"
        f" CPU per exchange: master side {master_cpu * 1e6:.0f} us,"
        f" worker side {worker_cpu * 1e6:.0f} us, {messages * 1e6:.0f} us in all"
    )
    print(
        f"xargs -P {parallel} -n 1 true: {(before_rate + after_rate) / 2:8.0f} tasks/s;"
        f" CPU per task (xargs and the child) {child * 1e6:.0f} us"
        f" (before {before_cpu * 1e6:.0f}, after {after_cpu * 1e6:.0f})"
    )
    print(
        f"ceiling of gridrun/xargs for `true` with one message each way per task:"
        f" {child / (child + messages):.2f} (before any store, HTTP or bookkeeping)"
    )


if __name__ == "__main__":
    main()
