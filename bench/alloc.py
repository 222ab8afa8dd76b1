"""How long a task waits for a worker that an allocation queue brings up through Slurm, on
the tests' one-node Slurm (tests/slurm.py: munged, slurmctld and slurmd of its own), against
Slurm's own floor measured in the same run: sbatch of a job that touches a file, until the
file is there (submit -> the job's command ran, polled every 10 ms). Each round a queue of
1-slot workers with a short idle timeout gets one task: submit -> task succeeded (cold: the
allocation is made, Slurm starts it, the worker starts and joins, the task runs); then, with
that worker still up, a second task (warm: the worker is there). The worker then leaves
before the next round.

    python bench/alloc.py [--rounds 5]   (root, with slurm-wlm and munge installed:
                                          scripts/ensure_slurm.sh)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.slurm: the harness

from grid import TERMINAL, lone_master, wait_for

from tests.slurm import Slurm, missing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    why = missing()
    if why is not None:
        sys.exit(f"bench/alloc.py: {why}")
    with tempfile.TemporaryDirectory() as tmp:
        slurm = Slurm(Path(tmp) / "slurm")
        slurm.start()
        try:
            os.environ["SLURM_CONF"] = str(slurm.conf)
            os.environ["TMPDIR"] = tmp
            floor = []
            for n in range(args.rounds):
                ran = Path(tmp) / f"ran-{n}"
                began = time.monotonic()
                subprocess.run(["sbatch", "--quiet", "-o", "/dev/null", "--wrap",
                                f"touch {ran}"], check=True, env=slurm.env, cwd=tmp)  # fmt: skip
                wait_for(ran.exists, 60, "the job to run", 0.01)
                floor.append(time.monotonic() - began)
                wait_for(lambda: not slurm.active(), 60, "the job to end", 0.05)
            cold, warm = run_rounds(tmp, args.rounds, slurm)
        finally:
            slurm.close()
    med = statistics.median
    print(f"rounds: {args.rounds}")
    print(f"sbatch -> the job's command ran (Slurm's floor): median {med(floor):.2f} s")
    print(f"submit -> succeeded, a worker brought up for it: median {med(cold):.2f} s"
          f" ({med(cold) / med(floor):.2f}x the floor)")  # fmt: skip
    print(f"submit -> succeeded, on that worker while it is up: median {med(warm) * 1000:.0f} ms")


def run_rounds(tmp: str, rounds: int, slurm: Slurm) -> tuple[list[float], list[float]]:
    cold, warm = [], []
    with lone_master(str(Path(tmp) / "gridrun.db"), tmp, "--alloc-interval", "0.5") as client:
        body = {"name": "bench", "time_limit": 600, "slots": 1, "idle_timeout": 3,
                "dry_run": False}  # fmt: skip
        client.post("/v1/alloc/queues", json=body).raise_for_status()
        for _ in range(rounds):
            for times in (cold, warm):
                began = time.monotonic()
                task = client.post("/v1/tasks", json={"argv": ["true"], "timeout_s": 60}).json()
                done = task
                while done["state"] not in TERMINAL:  # (a long poll answers on each change)
                    done = client.get(f"/v1/tasks/{task['id']}", params={"wait": 30}).json()
                times.append(time.monotonic() - began)
                assert done["state"] == "succeeded", done
            wait_for(lambda: not slurm.active(), 60, "the worker to leave", 0.1)
    return cold, warm


if __name__ == "__main__":
    main()
