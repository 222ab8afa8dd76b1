"""The Python SDK for gridrun's HTTP API, over httpx: `Client` (blocking; the CLI is built on
it) and `AsyncClient` (asyncio), with the same methods.

    from gridrun.client import Client
    with Client("http://127.0.0.1:9092") as grid:
        task = grid.submit("echo hello")
        done = grid.wait(task["id"])
        print(done["state"], grid.output_bytes(task["id"], "stdout"))

    from gridrun.client import AsyncClient
    async with AsyncClient() as grid:
        task = await grid.submit("echo hello", timeout_s=60)

Errors are the classes of `gridrun.errors` (TaskNotFound, InvalidSpec, ...), never bare strings.
"""

from gridrun.client._async import AsyncClient
from gridrun.client._sync import Client
from gridrun.client.types import (
    AttemptDict,
    JobDict,
    OutputSegment,
    OutputStream,
    SubmitOptions,
    TaskDict,
    TaskOutput,
    TaskSegments,
    WorkerDict,
)

__all__ = [
    "AsyncClient",
    "AttemptDict",
    "Client",
    "JobDict",
    "OutputSegment",
    "OutputStream",
    "SubmitOptions",
    "TaskDict",
    "TaskOutput",
    "TaskSegments",
    "WorkerDict",
]
