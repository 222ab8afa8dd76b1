"""A task's files: uploading inputs (PUT /v1/inputs/SHA256, streamed), the files collected from
its attempts, and each file's bytes, whole or a range (see gridrun.master.core.files)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from gridrun.errors import NotFound
from gridrun.files import byte_range, check_path
from gridrun.master.http.file_schemas import FileListOut, FileOut, InputOut
from gridrun.master.http.routes.common import (
    FilesDep,
    Reader,
    StrictJsonRoute,
    Submitter,
    TaskId,
)

router = APIRouter(route_class=StrictJsonRoute, tags=["files"])
# the upload streams its body (no route class that reads it first: it may be 64 MiB)
uploads = APIRouter(tags=["files"])
Sha256 = Annotated[str, Path(pattern="^[0-9a-f]{64}$", description="The bytes' sha256 (hex).")]


@uploads.put(
    "/v1/inputs/{sha256}",
    response_model=InputOut,
    status_code=201,
    responses={200: {"model": InputOut, "description": "Held already: nothing stored"}},
    summary="Upload an input file's bytes (the body, as it is), named by their sha256",
    openapi_extra={"requestBody": {"required": True, "content": {"application/octet-stream": {}}}},
)
async def put_input(
    request: Request, response: Response, who: Submitter, files: FilesDep, sha256: Sha256
) -> InputOut:
    """The bytes are checked against the sha256 (422 if they differ, nothing kept) and bound
    by the master's --max-input (413). They are the caller's: another token's task cannot
    name them. A task then names them in `inputs`."""
    size, held = await files.upload(who.name, sha256, request.stream())
    if held:
        response.status_code = 200
    return InputOut(sha256=sha256, size=size, held=held)


@router.get(
    "/v1/inputs/{sha256}",
    response_model=InputOut,
    summary="Whether the master holds an input of the caller's (404 if not)",
)
async def get_input(who: Submitter, files: FilesDep, sha256: Sha256) -> InputOut:
    size = await files.held(who.name, sha256)
    if size is None:
        raise NotFound(f"no input with sha256 {sha256} uploaded by {who.name}")
    return InputOut(sha256=sha256, size=size, held=True)


@router.get(
    "/v1/tasks/{task_id}/files",
    response_model=FileListOut,
    summary="The files collected from a task's attempts (path, size, sha256, state)",
)
async def list_files(who: Reader, files: FilesDep, task_id: TaskId) -> FileListOut:
    return FileListOut(task_id=task_id, files=[FileOut.of(f) for f in await files.list(task_id)])


@router.api_route(
    "/v1/tasks/{task_id}/files/{path:path}",
    methods=["GET", "HEAD"],
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        206: {"content": {"application/octet-stream": {}}, "description": "A range of it"},
        416: {"description": "The range is outside the file"},
    },
    summary="A collected file's bytes, exactly (Range requests answered 206; HEAD: its headers)",
)
async def get_file(
    request: Request,
    who: Reader,
    files: FilesDep,
    task_id: TaskId,
    path: str,
    attempt: Annotated[
        int | None, Query(ge=1, description="That attempt's (default: the latest with it).")
    ] = None,
    range_: Annotated[str | None, Header(alias="range")] = None,
) -> Response:
    check_path(path, "a file's path")
    file = await files.find(task_id, path, attempt)
    asked = byte_range(range_, file.size)
    start, end = asked or (0, file.size)
    body = files.read(file, start, end)  # (checks first: a file not complete is a 404)
    name = path.rsplit("/", 1)[-1]
    headers = {
        "Content-Length": str(end - start),
        "Accept-Ranges": "bytes",
        "ETag": f'"{file.digest}"',
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
        "X-Gridrun-Sha256": file.digest,
        "X-Gridrun-Attempt": str(file.attempt),
    }
    status = 200 if asked is None else 206
    if asked is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{file.size}"
    if request.method == "HEAD":  # the same headers, no byte read
        return Response(status_code=status, media_type="application/octet-stream", headers=headers)
    return StreamingResponse(
        body, status_code=status, media_type="application/octet-stream", headers=headers
    )
