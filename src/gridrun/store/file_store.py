"""The `FileStore` protocol (`store.files`): what the master asks of the store about files
that travel with tasks; `gridrun.store.files.FileVerbs` is the one implementation, over either
backend. (A module of its own, so the store's protocol file does not grow with each group.)"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from gridrun.files import TaskFile
from gridrun.model import AttemptRef


class FileStore(Protocol):
    async def input_sizes(self, owner: str, digests: Sequence[str]) -> dict[str, int]:
        """The size of each of these inputs of `owner`'s that is completely uploaded."""
        ...

    async def begin_input(self, owner: str, digest: str, now: int) -> bool:
        """Start an input's upload; True if it is held whole already."""
        ...

    async def finish_input(self, owner: str, digest: str, size: int) -> None: ...

    async def abandon_input(self, owner: str, digest: str) -> None:
        """Drop an upload that did not end (its bytes now, not at gc)."""
        ...

    async def put_chunks(self, blob: str, first: int, chunks: Sequence[bytes]) -> None: ...

    async def chunk(self, blob: str, seq: int) -> bytes: ...

    async def begin_file(
        self, ref: AttemptRef, path: str, size: int, mode: int, now: int
    ) -> None: ...

    async def finish_file(
        self, ref: AttemptRef, path: str, size: int, digest: str, mode: int, now: int
    ) -> None: ...

    async def drop_file(
        self, ref: AttemptRef, path: str, size: int, reason: str, now: int
    ) -> None: ...

    async def attempt_bytes(self, ref: AttemptRef, besides: str) -> int:
        """Bytes of the attempt's files kept or on their way, but the file at `besides`."""
        ...

    async def files(self, task_id: str) -> list[TaskFile]: ...

    async def unused_inputs(self, now: int, limit: int = 500) -> int:
        """Delete inputs no task uses any more; return how many."""
        ...

    async def kept(self) -> tuple[int, int, int]:
        """Bytes of collected files, bytes of inputs, number of inputs."""
        ...
