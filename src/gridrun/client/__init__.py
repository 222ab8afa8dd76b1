"""The Python SDK for gridrun's HTTP API (sync, over httpx). The CLI is built on it.

    from gridrun.client import Client
    with Client("http://127.0.0.1:9092") as grid:
        task = grid.submit(cmd="echo hello")
        done = grid.wait(task["id"])
        print(done["state"], grid.output_bytes(task["id"], "stdout"))

Errors are the classes of `gridrun.errors` (TaskNotFound, InvalidSpec, ...), never bare strings.
"""

from gridrun.client._sync import (
    Client,
    JobDict,
    OutputStream,
    TaskDict,
    TaskOutput,
    WorkerDict,
)

__all__ = ["Client", "JobDict", "OutputStream", "TaskDict", "TaskOutput", "WorkerDict"]
