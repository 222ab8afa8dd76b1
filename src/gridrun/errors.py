"""The error hierarchy of gridrun.

Each class carries the HTTP status it maps to (and the gRPC status, by name, that a worker's
stream ends with for it); the API edge turns them into problem+json once, and
the SDK turns problem+json back into the same classes, so callers catch domain errors, not strings.
"""

from __future__ import annotations

import re

PROBLEM_TYPE = "urn:gridrun:problem:"


class GridrunError(Exception):
    """Base of every error gridrun raises on purpose."""

    status: int = 500
    # the gRPC status a worker's stream ends with for it (a grpc.StatusCode's name: this
    # module imports nothing, so the edge looks the code up)
    grpc_code: str = "INTERNAL"
    title: str = "Internal error"
    retry_after_s: int | None = None  # a passing condition: sent as Retry-After (seconds)

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @classmethod
    def type_uri(cls) -> str:
        """The problem document's `type`: one per class, so a client maps it back to the same
        class (a 404 for a worker is WorkerNotFound, not TaskNotFound)."""
        return PROBLEM_TYPE + re.sub(r"(?<!^)(?=[A-Z])", "-", cls.__name__).lower()


class BadRequest(GridrunError):
    """A request the API cannot read (malformed JSON, bad parameters)."""

    status = 400
    grpc_code = "INVALID_ARGUMENT"
    title = "Bad request"


class InvalidSpec(GridrunError):
    """A task spec or request that can never be valid (empty command, bad quoting, limits)."""

    status = 422
    grpc_code = "INVALID_ARGUMENT"
    title = "Invalid request"


class Unauthorized(GridrunError):
    """No token, or a token the master does not know."""

    status = 401
    grpc_code = "UNAUTHENTICATED"
    title = "Unauthorized"


class Forbidden(GridrunError):
    """A known token whose role does not allow the call."""

    status = 403
    grpc_code = "PERMISSION_DENIED"
    title = "Forbidden"


class TaskNotFound(GridrunError):
    status = 404
    grpc_code = "NOT_FOUND"
    title = "Task not found"


class WorkerNotFound(GridrunError):
    status = 404
    grpc_code = "NOT_FOUND"
    title = "Worker not found"


class ScheduleNotFound(GridrunError):
    status = 404
    grpc_code = "NOT_FOUND"
    title = "Schedule not found"


class JobNotFound(GridrunError):
    status = 404
    grpc_code = "NOT_FOUND"
    title = "Job not found"


class AllocQueueNotFound(GridrunError):
    status = 404
    grpc_code = "NOT_FOUND"
    title = "Allocation queue not found"


class AllocQueueExists(GridrunError):
    status = 409
    grpc_code = "ALREADY_EXISTS"
    title = "Allocation queue exists"


class AllocRefused(GridrunError):
    """The cluster's scheduler refused an allocation (sbatch's error, a dry run's)."""

    status = 422
    grpc_code = "FAILED_PRECONDITION"
    title = "Allocation refused"


class InputNotUploaded(GridrunError):
    """A task names an input whose bytes the master does not hold (PUT /v1/inputs/SHA first)."""

    status = 422
    grpc_code = "FAILED_PRECONDITION"
    title = "Input not uploaded"


class FileNotFound(GridrunError):
    """No collected file of that path for the task (or not one this caller may read)."""

    status = 404
    grpc_code = "NOT_FOUND"
    title = "File not found"


class RangeNotSatisfiable(GridrunError):
    """A Range header outside the file (answered with `Content-Range: bytes */size`)."""

    status = 416
    grpc_code = "OUT_OF_RANGE"
    title = "Range not satisfiable"

    def __init__(self, message: str, size: int | None = None) -> None:
        super().__init__(message)
        self.size = size


class AmbiguousId(GridrunError):
    """A short id (a prefix or the tail of an id) that more than one task or job has."""

    status = 409
    grpc_code = "FAILED_PRECONDITION"
    title = "Ambiguous id"


class UnsupportedMediaType(GridrunError):
    """A request body that is not application/json."""

    status = 415
    grpc_code = "INVALID_ARGUMENT"
    title = "Unsupported media type"


class NotFound(GridrunError):
    """No such route or resource of another kind (an unknown path)."""

    status = 404
    grpc_code = "NOT_FOUND"
    title = "Not found"


class NoWorkerMatches(GridrunError):
    """No live worker can take what was asked (a job with nobody to run on)."""

    status = 409
    grpc_code = "FAILED_PRECONDITION"
    title = "No worker matches"


class WorkerNotConnected(GridrunError):
    """The worker is not connected (or is a legacy worker) so it cannot be told anything."""

    status = 409
    grpc_code = "FAILED_PRECONDITION"
    title = "Worker not connected"


class ConcurrencyConflict(GridrunError):
    """A task names a concurrency key with a limit other than the key's (set once: by the
    first task naming it in its owner's scope, or by an admin for a grid-wide key)."""

    status = 409
    grpc_code = "FAILED_PRECONDITION"
    title = "Concurrency limit conflict"


class InvalidTransition(GridrunError):
    """A state change the task lifecycle does not allow (e.g. cancelling a finished task)."""

    status = 409
    grpc_code = "FAILED_PRECONDITION"
    title = "Invalid state transition"


class RequestTimeout(GridrunError):
    """The other side did not say what it must within the time it has (a worker's Hello)."""

    status = 408
    grpc_code = "DEADLINE_EXCEEDED"
    title = "Request timeout"


class PayloadTooLarge(GridrunError):
    status = 413
    grpc_code = "RESOURCE_EXHAUSTED"
    title = "Payload too large"


class Unavailable(GridrunError):
    """The master cannot serve the request now (shutting down, store unreachable)."""

    retry_after_s = 5

    status = 503
    grpc_code = "UNAVAILABLE"
    title = "Service unavailable"


class TooManyQueued(GridrunError):
    """The grid, an owner or a queue holds as many queued tasks as it may (a quota, or the
    master's --max-queued): submit again once some have run."""

    retry_after_s = 10

    status = 429
    grpc_code = "RESOURCE_EXHAUSTED"
    title = "Too many tasks queued"


class InsufficientStorage(Unavailable):
    """The store cannot write: its disk is full. Nothing of the request was stored; it can be
    sent again once there is room. A kind of Unavailable: whoever waits out an outage of the
    store waits this out too."""

    status = 507
    grpc_code = "UNAVAILABLE"  # (a worker backs off and keeps its results, as for 503)
    title = "Insufficient storage"
    retry_after_s = 30


class ConfigError(GridrunError):
    """A setting that cannot work (e.g. a public listen address without --insecure)."""

    status = 400
    grpc_code = "INVALID_ARGUMENT"
    title = "Configuration error"


class ClientError(GridrunError):
    """The SDK could not reach the master or understand its answer."""

    status = 0
    grpc_code = "UNKNOWN"
    title = "Client error"


ERRORS_BY_STATUS: dict[int, type[GridrunError]] = {
    cls.status: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        InvalidSpec,
        NotFound,
        InvalidTransition,
        PayloadTooLarge,
        UnsupportedMediaType,
        Unavailable,
        InsufficientStorage,
    )
}  # for answers without a type of ours (a proxy's, say)


def _all_errors(base: type[GridrunError]) -> list[type[GridrunError]]:
    found = [base]
    for sub in base.__subclasses__():
        found += _all_errors(sub)
    return found


def error_for(type_uri: str | None, status: int) -> type[GridrunError] | None:
    """The class a problem document names by its `type`, else the usual one for its status."""
    for cls in _all_errors(GridrunError):
        if type_uri == cls.type_uri():
            return cls
    return ERRORS_BY_STATUS.get(status)
