"""The HTTP edge's answers about a task's output: each stream's kept tail, and both streams
in the order they were written (gridrun.output)."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from gridrun.master.http.schemas import iso
from gridrun.model import Stream, StreamOutput, Task, TaskState
from gridrun.output import last_lines
from gridrun.store import TaskOutput


class StreamOut(BaseModel):
    text: str = Field(description="The kept tail, decoded as UTF-8 (invalid bytes replaced).")
    bytes_total: int
    bytes_dropped: int
    expired: bool = Field(
        False, description="All of it was dropped to keep within the grid's --output-budget."
    )

    @classmethod
    def of(cls, out: StreamOutput) -> StreamOut:
        return cls(
            text=out.data.decode("utf-8", "replace"),
            bytes_total=out.total,
            bytes_dropped=out.dropped,
            expired=out.total > 0 and not out.data,
        )


class OutputOut(BaseModel):
    task_id: str
    state: TaskState
    stdout: StreamOut
    stderr: StreamOut


class SegmentOut(BaseModel):
    stream: Literal["stdout", "stderr"]
    offset: int = Field(description="Where in its stream the segment's first byte is.")
    at: datetime | None = Field(description="When the worker read it (None: not known).")
    data_base64: str = Field(description="The bytes exactly.")


class SegmentsOut(BaseModel):
    """The kept output of both streams in the order it was written: a segment per run."""

    task_id: str
    state: TaskState
    segments: list[SegmentOut]
    stdout: StreamOut
    stderr: StreamOut

    @classmethod
    def of(cls, task: Task, out: TaskOutput, tail: int | None) -> SegmentsOut:
        segments = out.in_order()
        segments = last_lines(segments, tail) if tail is not None else segments
        return cls(
            task_id=task.id, state=task.state, stdout=StreamOut.of(out.stdout),
            stderr=StreamOut.of(out.stderr),
            segments=[
                SegmentOut(
                    stream="stdout" if s.stream is Stream.STDOUT else "stderr", offset=s.offset,
                    at=iso(s.at), data_base64=base64.b64encode(s.data).decode(),
                )
                for s in segments
            ],
        )  # fmt: skip
