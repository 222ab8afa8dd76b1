"""Schedules at scale: how long after its slot N every-minute schedules have all fired.

A master on a fresh SQLite file (sync=full, as shipped) holds N schedules due at the same
minute; the wall clock it reads is moved past the slot and the time until `fire_due` has made
every task is measured (what the liveness loop does once per period). Prints the seconds and
schedules per second. Usage: python bench/schedules.py [--schedules N]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from gridrun.clock import ShiftedClock
from gridrun.master.app import Master, MasterConfig
from gridrun.model import Schedule
from gridrun.spec import make_spec

MINUTE_MS = 60_000


async def measure(count: int) -> float:
    slot = (time.time_ns() // 1_000_000 // MINUTE_MS + 10) * MINUTE_MS  # a minute to come
    clock = ShiftedClock(slot - 30_000)
    with tempfile.TemporaryDirectory(prefix="gridrun-schedules-") as tmp:
        config = MasterConfig(db=str(Path(tmp) / "gridrun.db"), http_port=0, grpc_port=0)
        master = Master(config, clock=clock)
        await master.start()
        try:
            await master.core.liveness.close()  # the bench looks at the clock itself
            spec = make_spec(cmd="true")
            for i in range(count):
                await master.service.store.schedules.add_schedule(
                    Schedule(f"s{i:06}", "* * * * *", spec, slot - 30_000, slot)
                )
            clock.advance_to(slot + 1)
            began = time.perf_counter()
            made = await master.core.schedules.fire_due()
            took = time.perf_counter() - began
            assert len(made) == count, len(made)
            return took
        finally:
            await master.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=10_000)
    args = parser.parse_args()
    took = asyncio.run(measure(args.schedules))
    print(f"{args.schedules:,} every-minute schedules fired {took:.2f} s after their slot"
          f" ({args.schedules / took:,.0f}/s; SQLite sync=full)")  # fmt: skip


if __name__ == "__main__":
    main()
