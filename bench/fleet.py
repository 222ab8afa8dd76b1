"""Fleet scale: one master and N simulated workers (one process holding N real gRPC streams, one
connection each, answering every assignment at once with a successful result).

For each N (default 1000, then 5000): the master's CPU (share of one core) and RSS while idle
(heartbeats only, as often as the master asks, after the fleet has settled), and its dispatch rate
across the fleet (T tasks through the HTTP API, counted by the simulator as it answers them).
Each size is measured with workers of the previous protocol (one message per report, nothing
held) and of this one (batches, Started before each spawn, prefetch = slots), in the same run.
Usage: python bench/fleet.py [--workers 1000,5000] [--tasks T] [--idle-seconds S]
       [--protocols previous,batched]
       python bench/fleet.py --simulate N --address HOST:PORT [...]   (the simulator itself)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from grid import cpu_seconds, one_master, rss_mb, start_profile, stop_profile, wait_for

import gridrun
from gridrun._proto import worker_pb2 as pb
from gridrun._proto import worker_pb2_grpc

BENCH = Path(__file__).resolve().parent


def succeeded(assign: pb.Assign, announce: bool) -> list[pb.WorkerMessage]:
    """The answer of a worker that ran the assignment at once, and it exited 0 (announced by
    a Started first, as a worker of this protocol does)."""
    now = time.time_ns() // 1_000_000
    finished = pb.Finished(
        ref=assign.ref, outcome=pb.OUTCOME_EXITED, has_exit_code=True,
        exit_code=0, started_at_ms=now, finished_at_ms=now,
    )  # fmt: skip
    started = pb.Started(ref=assign.ref, started_at_ms=now)
    return [pb.WorkerMessage(started=started)] * announce + [pb.WorkerMessage(finished=finished)]


class Tally:
    """Counts answered assignments; reports the time taken by `count` of them after `skip`."""

    def __init__(self, skip: int, count: int) -> None:
        self.done = 0
        self.skip, self.count = skip, count
        self.began = 0.0

    def one(self) -> None:
        self.done += 1
        if self.done == self.skip:
            self.began = time.perf_counter()
        elif self.done == self.skip + self.count and self.count:
            elapsed = time.perf_counter() - self.began
            print(f"rate {self.count / elapsed:.1f}", flush=True)


async def simulated_worker(
    n: int, address: str, slots: int, tally: Tally, connected: asyncio.Queue[int], batched: bool
) -> None:
    """Like a real worker: connect, and connect again after a short random backoff when the
    master refuses or drops the stream (a master taking thousands of Hellos at once may be
    too slow for some: they time out and retry)."""
    said = False

    def welcomed() -> None:
        nonlocal said
        if not said:
            connected.put_nowait(n)
            said = True

    while True:
        with contextlib.suppress(grpc.aio.AioRpcError):
            await _session(n, address, slots, tally, welcomed, batched)
        await asyncio.sleep(random.uniform(0.5, 2.0))


async def _session(
    n: int, address: str, slots: int, tally: Tally, welcomed: Callable[[], None], batched: bool
) -> None:
    # a connection of its own, as a real worker has (channels to one address share one TCP
    # connection otherwise)
    options = [("grpc.use_local_subchannel_pool", 1)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        call = worker_pb2_grpc.WorkerServiceStub(channel).Connect()
        hello = pb.Hello(
            worker_id=f"sim-{n:05}", hostname="fleet-sim", slots=slots,
            version=gridrun.__version__,
            resources=pb.Resources(cpus=slots, memory_mb=4096),
            batches=batched, announces_starts=batched, prefetch=slots if batched else 0,
        )  # fmt: skip
        await call.write(pb.WorkerMessage(hello=hello))
        welcome = await call.read()
        if not isinstance(welcome, pb.MasterMessage):
            return
        welcomed()
        pace = [max(welcome.welcome.heartbeat_interval_ms, 100) / 1000]  # as the master says
        out: asyncio.Queue[pb.WorkerMessage] = asyncio.Queue()

        async def heartbeats() -> None:
            await asyncio.sleep(random.uniform(0, pace[0]))  # a fleet's beats are spread
            while True:
                out.put_nowait(pb.WorkerMessage(heartbeat=pb.Heartbeat(free_slots=slots)))
                await asyncio.sleep(pace[0])

        async def writer() -> None:
            while True:
                messages = [await out.get()]
                while batched and not out.empty():  # what accumulated: one batch
                    messages.append(out.get_nowait())
                if len(messages) == 1:
                    await call.write(messages[0])
                else:
                    await call.write(pb.WorkerMessage(batch=pb.WorkerBatch(messages=messages)))

        async def reader() -> None:
            while isinstance(msg := await call.read(), pb.MasterMessage):
                kind = msg.WhichOneof("msg")
                items = msg.batch.messages if kind == "batch" else [msg]
                for item in items:
                    if item.WhichOneof("msg") == "welcome":  # the fleet grew: beat less often
                        pace[0] = max(item.welcome.heartbeat_interval_ms, 100) / 1000
                    elif item.WhichOneof("msg") == "assign":
                        for answer in succeeded(item.assign, batched):
                            out.put_nowait(answer)
                        tally.one()

        parts = [asyncio.create_task(p()) for p in (heartbeats, writer, reader)]
        try:
            await asyncio.wait(parts, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for p in parts:
                p.cancel()
            await asyncio.gather(*parts, return_exceptions=True)


async def simulate(args: argparse.Namespace) -> None:
    tally = Tally(args.skip, args.count)
    connected: asyncio.Queue[int] = asyncio.Queue()
    fleet = [
        asyncio.create_task(
            simulated_worker(n, args.address, args.slots, tally, connected, args.batched)
        )
        for n in range(args.simulate)
    ]
    for _ in range(args.simulate):
        await connected.get()
    print("ready", flush=True)
    await asyncio.gather(*fleet)


class Simulator:
    """The simulator as a child process (so that its CPU is not counted as the master's)."""

    def __init__(
        self, address: str, workers: int, slots: int, skip: int, count: int, batched: bool
    ) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH / "fleet.py"), "--simulate", str(workers),
             "--address", address, "--slots", str(slots), "--skip", str(skip),
             "--count", str(count), *(["--batched"] if batched else [])],
            stdout=subprocess.PIPE, text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("GRIDRUN_")},
        )  # fmt: skip

    def expect(self, word: str) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith(word):
            raise SystemExit(f"the simulator said {line!r}, not {word!r}")
        return line.split()[-1]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def measure(workers: int, args: argparse.Namespace, batched: bool) -> dict[str, float]:
    with one_master("gridrun-fleet-") as grid:
        master = grid.masters[0].pid
        address = f"127.0.0.1:{grid.ports[0][1]}"
        began = time.perf_counter()
        sim = Simulator(address, workers, args.slots, 200, args.tasks - 400, batched)
        try:
            sim.expect("ready")

            def all_online() -> bool:
                return grid.client.get("/v1/stats").json()["workers"]["online"] == workers

            wait_for(all_online, 300, f"{workers} workers online", every=0.5)
            joined = time.perf_counter() - began
            time.sleep(args.settle)
            cpu0, t0 = cpu_seconds(master), time.perf_counter()
            sim_cpu0 = cpu_seconds(sim.proc.pid)
            time.sleep(args.idle_seconds)
            idle_cpu = (cpu_seconds(master) - cpu0) / (time.perf_counter() - t0)
            sim_idle = (cpu_seconds(sim.proc.pid) - sim_cpu0) / (time.perf_counter() - t0)
            idle_rss = rss_mb(master)
            out = f"{args.profile}.{workers}-{'batched' if batched else 'previous'}"
            profile = start_profile(out, master) if args.profile else None
            cpu1, t1, sim_cpu1 = cpu_seconds(master), time.perf_counter(), cpu_seconds(sim.proc.pid)
            grid.submit(["true"], args.tasks)
            rate = float(sim.expect("rate"))
            busy = time.perf_counter() - t1
            busy_cpu = (cpu_seconds(master) - cpu1) / busy
            sim_busy = (cpu_seconds(sim.proc.pid) - sim_cpu1) / busy
            if profile is not None:
                stop_profile(profile, out)
            return {
                "joined_s": joined,
                "idle_cpu": idle_cpu,
                "idle_rss": idle_rss,
                "sim_idle_cpu": sim_idle,
                "rate": rate,
                "busy_cpu": busy_cpu,
                "sim_busy_cpu": sim_busy,
                "busy_rss": rss_mb(master),
            }
        finally:
            sim.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1000,5000", help="fleet sizes, in turn")
    parser.add_argument("--slots", type=int, default=4, help="slots per simulated worker")
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=5.0, help="after the fleet joined")
    parser.add_argument("--protocols", default="previous,batched")
    parser.add_argument("--profile", help="py-spy folded stacks of the master to PREFIX.*")
    parser.add_argument("--simulate", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--batched", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--skip", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.simulate:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(simulate(args))
        return
    print(f"machine: {os.cpu_count()} cores; SQLite sync=full; simulated workers x {args.slots}"
          f" slots; {args.tasks} tasks (the middle"
          f" {args.tasks - 400} timed)")  # fmt: skip
    for size in (int(n) for n in args.workers.split(",")):
        rates: dict[str, float] = {}
        for protocol in args.protocols.split(","):
            r = measure(size, args, batched=protocol == "batched")
            rates[protocol] = r["rate"]
            print(
                f"{size:5} workers, {protocol:8} protocol: joined in {r['joined_s']:.1f} s; idle"
                f" master CPU"
                f" {r['idle_cpu'] * 100:.1f}% of a core, RSS {r['idle_rss']:.0f} MB (simulator"
                f" {r['sim_idle_cpu'] * 100:.1f}%); dispatch {r['rate']:.0f} tasks/s (master CPU"
                f" {r['busy_cpu'] * 100:.0f}%, simulator {r['sim_busy_cpu'] * 100:.0f}%),"
                f" RSS then {r['busy_rss']:.0f} MB"
            )
        if len(rates) == 2 and rates.get("previous"):
            print(f"      dispatch, batched / previous: {rates['batched'] / rates['previous']:.2f}")


if __name__ == "__main__":
    main()
