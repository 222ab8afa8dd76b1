"""The JSON of a task's files: inputs as a submission names them, uploads, collected files."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from gridrun.files import MAX_PATH_BYTES, TaskFile
from gridrun.master.http.schemas import iso
from gridrun.model import InputFile


class InputIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=MAX_PATH_BYTES)] = Field(
        description="Where it is written, relative to the attempt's working directory."
    )
    sha256: Annotated[str, Field(pattern="^[0-9a-f]{64}$")] = Field(
        description="Its bytes' sha256, as uploaded (PUT /v1/inputs/SHA256)."
    )
    mode: Annotated[int, Field(ge=0, le=0o777)] = Field(
        0o644, description="Its permission bits (420 is 0644; 493 is 0755)."
    )

    def to_input(self) -> InputFile:
        return InputFile(self.name, self.sha256, 0, self.mode)  # (its size: the master's)


class InputOut(BaseModel):
    sha256: str
    size: int
    held: bool = Field(description="True: the master held these bytes already.")


class FileOut(BaseModel):
    attempt: int
    path: str
    state: str = Field(
        description="complete (every byte, sha256 checked), incomplete (its upload did not"
        " end: the worker or master died), dropped (not collected: see reason)."
    )
    size: int
    sha256: str = Field(description="Its bytes' sha256 (complete files).")
    mode: int
    reason: str = ""
    collected_at: datetime | None = None

    @classmethod
    def of(cls, file: TaskFile) -> FileOut:
        return cls(
            attempt=file.attempt,
            path=file.path,
            state=str(file.state),
            size=file.size,
            sha256=file.digest,
            mode=file.mode,
            reason=file.reason,
            collected_at=iso(file.created_at),
        )


class FileListOut(BaseModel):
    task_id: str
    files: list[FileOut]
