"""Throughput of a task's files (MiB/s), against `curl` fetching the same bytes from a plain
HTTP server on loopback (Python's http.server, threaded) in the same run: what moving bytes
over loopback HTTP costs at the least. Each round, on a fresh file of random bytes:

- upload: `Client.upload_input` (hash, then PUT /v1/inputs/SHA256, streamed into the store);
- staged: a task with that file as its input, submit -> succeeded, less the same task
  without it (the worker fetches the input over gRPC and writes it into the working dir);
- collected: a task that writes that many bytes and collects them, submit -> succeeded, less
  the same task that writes them without collecting (the worker sends, the master stores);
- download: GET /v1/tasks/ID/files/PATH, streamed, through httpx, read to the end.

    python bench/files.py [--mib 64] [--rounds 3] [--db URL]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from grid import TERMINAL, Grid, database

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gridrun.client import Client

MiB = 1 << 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--db", default=None, help="a PostgreSQL URL (default: SQLite)")
    args = parser.parse_args()
    if shutil.which("curl") is None:
        sys.exit("bench/files.py: needs curl (apt-get install curl)")
    size = args.mib * MiB
    figures: dict[str, list[float]] = {k: [] for k in ("curl", "upload", "staged", "collected",
                                                      "download")}  # fmt: skip
    with (
        tempfile.TemporaryDirectory(prefix="bench-files-") as tmp,
        database(args.db, Path(tmp)) as db,
    ):
        root = Path(tmp)
        grid = Grid(root, db, master_args=("--max-input", f"{2 * args.mib}MiB",
                                           "--max-collect", f"{2 * args.mib}MiB"))  # fmt: skip
        server, port = serve(root)
        try:
            grid.start_masters()
            grid.start_workers(1, 2)
            sdk = Client(str(grid.client.base_url))
            for n in range(args.rounds):
                local = root / f"data-{n}.bin"
                local.write_bytes(os.urandom(size))
                figures["curl"].append(size / MiB / curl(f"http://127.0.0.1:{port}/{local.name}"))
                began = time.monotonic()
                digest = sdk.upload_input(local)["sha256"]
                figures["upload"].append(size / MiB / (time.monotonic() - began))
                plain = run(grid, {"argv": ["true"]})
                staged = run(grid, {"argv": ["true"], "inputs": [{"name": "in", "sha256": digest}]})
                figures["staged"].append(size / MiB / max(staged - plain, 1e-3))
                write = [
                    "dd",
                    "if=/dev/zero",
                    "of=out",
                    "bs=1M",
                    f"count={args.mib}",
                    "status=none",
                ]
                kept = run(grid, {"argv": write})
                collected_id: list[str] = []
                sent = run(grid, {"argv": write, "collect": ["out"]}, collected_id)
                figures["collected"].append(size / MiB / max(sent - kept, 1e-3))
                began = time.monotonic()
                got = 0
                url = f"/v1/tasks/{collected_id[0]}/files/out"
                with grid.client.stream("GET", url) as response:
                    for piece in response.iter_bytes():
                        got += len(piece)
                assert got == size, (got, size)
                figures["download"].append(size / MiB / (time.monotonic() - began))
            sdk.close()
        finally:
            server.shutdown()
            grid.stop()
    med = statistics.median
    base = med(figures["curl"])
    print(f"{args.rounds} rounds of {args.mib} MiB; {'PostgreSQL' if args.db else 'SQLite'}")
    for name, values in figures.items():
        print(f"{name:10} median {med(values):8.1f} MiB/s ({med(values) / base:.3f} x curl)")


def serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, int]:
    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def curl(url: str) -> float:
    began = time.monotonic()
    subprocess.run(["curl", "-sf", "-o", "/dev/null", url], check=True)
    return time.monotonic() - began


def run(grid: Grid, body: dict[str, object], ids: list[str] | None = None) -> float:
    """submit -> succeeded, seconds."""
    began = time.monotonic()
    task = grid.client.post("/v1/tasks", json=body).json()
    done = task
    while done["state"] not in TERMINAL:
        done = grid.client.get(f"/v1/tasks/{task['id']}", params={"wait": 30}).json()
    took = time.monotonic() - began
    assert done["state"] == "succeeded", done
    if ids is not None:
        ids.append(task["id"])
    return took


if __name__ == "__main__":
    main()
