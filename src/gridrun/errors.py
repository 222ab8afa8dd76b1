"""The error hierarchy of gridrun.

Each class carries the HTTP status it maps to; the API edge turns them into problem+json once, and
the SDK turns problem+json back into the same classes, so callers catch domain errors, not strings.
"""

from __future__ import annotations


class GridrunError(Exception):
    """Base of every error gridrun raises on purpose."""

    status: int = 500
    title: str = "Internal error"
    retry_after_s: int | None = None  # a passing condition: sent as Retry-After (seconds)

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(GridrunError):
    """A request the API cannot read (malformed JSON, bad parameters)."""

    status = 400
    title = "Bad request"


class InvalidSpec(GridrunError):
    """A task spec or request that can never be valid (empty command, bad quoting, limits)."""

    status = 422
    title = "Invalid request"


class Unauthorized(GridrunError):
    """No token, or a token the master does not know."""

    status = 401
    title = "Unauthorized"


class Forbidden(GridrunError):
    """A known token whose role does not allow the call."""

    status = 403
    title = "Forbidden"


class TaskNotFound(GridrunError):
    status = 404
    title = "Task not found"


class WorkerNotFound(GridrunError):
    status = 404
    title = "Worker not found"


class ScheduleNotFound(GridrunError):
    status = 404
    title = "Schedule not found"


class InvalidTransition(GridrunError):
    """A state change the task lifecycle does not allow (e.g. cancelling a finished task)."""

    status = 409
    title = "Invalid state transition"


class PayloadTooLarge(GridrunError):
    status = 413
    title = "Payload too large"


class Unavailable(GridrunError):
    """The master cannot serve the request now (shutting down, store unreachable)."""

    retry_after_s = 5

    status = 503
    title = "Service unavailable"


class InsufficientStorage(Unavailable):
    """The store cannot write: its disk is full. Nothing of the request was stored; it can be
    sent again once there is room. A kind of Unavailable: whoever waits out an outage of the
    store waits this out too."""

    status = 507
    title = "Insufficient storage"
    retry_after_s = 30


class ConfigError(GridrunError):
    """A setting that cannot work (e.g. a public listen address without --insecure)."""

    status = 400
    title = "Configuration error"


class ClientError(GridrunError):
    """The SDK could not reach the master or understand its answer."""

    status = 0
    title = "Client error"


ERRORS_BY_STATUS: dict[int, type[GridrunError]] = {
    cls.status: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        InvalidSpec,
        TaskNotFound,
        InvalidTransition,
        PayloadTooLarge,
        Unavailable,
        InsufficientStorage,
    )
}
