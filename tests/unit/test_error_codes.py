"""Each error class names its gRPC status beside its HTTP status, and the two agree: the
worker edge ends a stream with the code its error's class says (gridrun.transport.abort)."""

from __future__ import annotations

import grpc

from gridrun import errors


def every(base: type[errors.GridrunError]) -> list[type[errors.GridrunError]]:
    return [base] + [c for sub in base.__subclasses__() for c in every(sub)]


def test_every_error_class_names_a_grpc_status_that_agrees_with_its_http_status() -> None:
    classes = every(errors.GridrunError)
    assert len(classes) > 15
    for cls in classes:
        code = grpc.StatusCode[cls.grpc_code]  # (a KeyError names a code grpc lacks)
        assert code is not grpc.StatusCode.OK, cls
        if 400 <= cls.status < 500:  # the caller's fault: never an internal or unknown code
            assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), cls
    by_status = {
        401: grpc.StatusCode.UNAUTHENTICATED,
        403: grpc.StatusCode.PERMISSION_DENIED,
        404: grpc.StatusCode.NOT_FOUND,
        408: grpc.StatusCode.DEADLINE_EXCEEDED,
        # a worker backs off and keeps its results on UNAVAILABLE: a full disk is one too
        503: grpc.StatusCode.UNAVAILABLE,
        507: grpc.StatusCode.UNAVAILABLE,
    }
    for cls in classes:
        if cls.status in by_status:
            assert grpc.StatusCode[cls.grpc_code] is by_status[cls.status], cls
