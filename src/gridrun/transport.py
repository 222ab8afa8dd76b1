"""What the master's and the worker's ends of the gRPC channel must agree on: message size, how
a join token travels, and TLS credentials built from PEM files (`gridrun certs` makes them)."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import grpc

from gridrun.errors import ConfigError, GridrunError

GRPC_MAX_MESSAGE = 8 * 1024 * 1024  # bytes, both directions; output batches stay far below
JOIN_TOKEN_KEY = "authorization"  # gRPC metadata, value "Bearer <token>"

MESSAGE_LIMITS: Sequence[tuple[str, int]] = (
    ("grpc.max_receive_message_length", GRPC_MAX_MESSAGE),
    ("grpc.max_send_message_length", GRPC_MAX_MESSAGE),
)
BATCH_BYTES = 1 << 20  # a batch of messages (WorkerBatch, MasterBatch) is cut at about this size

T = TypeVar("T")


def batched(items: Iterable[T], size: Callable[[T], int]) -> Iterator[list[T]]:
    """The items in order, in runs of at most BATCH_BYTES by `size` (an item larger than that
    goes alone), each run to be sent as one message."""
    run: list[T] = []
    total = 0
    for item in items:
        length = size(item)
        if run and total + length > BATCH_BYTES:
            yield run
            run, total = [], 0
        run.append(item)
        total += length
    if run:
        yield run


async def abort(context: grpc.aio.ServicerContext[Any, Any], error: GridrunError) -> NoReturn:
    """End a call with the gRPC status the error's class names, and its message."""
    await context.abort(grpc.StatusCode[error.grpc_code], error.message)
    raise AssertionError("unreachable: abort raises")


def read_pem(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {path}: {exc.strerror}") from None
    if b"-----BEGIN " not in data:
        raise ConfigError(f"{path} is not a PEM file (expected the {what})")
    return data


def check_key_pair(cert: Path, key: Path) -> None:
    """ConfigError unless `key` is the private key of `cert` (grpc only says it cannot bind,
    which read as 'address in use?')."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        why = "is not the key of" if "KEY_VALUES_MISMATCH" in str(exc) else "does not go with"
        raise ConfigError(f"TLS key {key} {why} the certificate {cert} ({exc.reason})") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the TLS certificate or key: {exc}") from None


def server_credentials(cert: Path, key: Path, client_ca: Path | None) -> grpc.ServerCredentials:
    """TLS for the gRPC port; with `client_ca`, every worker must present a certificate it
    signed (mTLS), checked during the handshake before any message is read."""
    check_key_pair(cert, key)
    return grpc.ssl_server_credentials(
        [(read_pem(key, "TLS key"), read_pem(cert, "TLS certificate"))],
        root_certificates=read_pem(client_ca, "client CA") if client_ca else None,
        require_client_auth=client_ca is not None,
    )


def channel_credentials(
    ca: Path | None, cert: Path | None, key: Path | None
) -> grpc.ChannelCredentials:
    """TLS to the master, verified against `ca` (or the system roots); `cert`/`key` for mTLS."""
    if (cert is None) != (key is None):
        raise ConfigError("give both --tls-cert and --tls-key, or neither")
    if cert is not None and key is not None:
        check_key_pair(cert, key)
    return grpc.ssl_channel_credentials(
        root_certificates=read_pem(ca, "CA certificate") if ca else None,
        private_key=read_pem(key, "TLS key") if key else None,
        certificate_chain=read_pem(cert, "TLS certificate") if cert else None,
    )


# TLS alerts a master (or a proxy before it) may send a client whose certificate it will not
# take, as OpenSSL/BoringSSL name them (lower-cased)
_CERT_ALERTS = (
    "certificate_required", "certificate required", "unknown_ca", "unknown ca",
    "bad_certificate", "bad certificate", "certificate_unknown", "certificate unknown",
    "certificate_expired", "certificate expired", "certificate_revoked", "decrypt_error",
)  # fmt: skip


def tls_refusal(
    address: str, ca: Path | None, cert: Path | None, key: Path | None, timeout_s: float = 3.0
) -> str | None:
    """Why a master at `address` (host:port) will not take this client's certificate (or its
    lack of one), when that is so; None otherwise (the caller's own error stands).

    gRPC reports such a master as "Socket closed", the same as a master that went away: under
    TLS 1.3 the client's handshake is over before the master checks its certificate, and a
    gRPC master then closes the connection without a word. So this handshakes by hand and
    listens: a master that took the certificate opens HTTP/2 at once (its SETTINGS frame); one
    that closes the connection straight after a handshake that succeeded, twice running, or
    sends a certificate alert, refused the certificate."""
    import socket  # (here only: the worker's usual path never needs it)

    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        context = ssl.create_default_context(cafile=str(ca) if ca else None)
        context.set_alpn_protocols(["h2"])
        if cert is not None and key is not None:
            context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError):
        return None  # the worker's own files: its start-up checks say what is wrong
    closed = 0
    while closed < 2:
        try:
            with (
                socket.create_connection((host, int(port)), timeout=timeout_s) as raw,
                context.wrap_socket(
                    raw,
                    server_hostname=host,
                    do_handshake_on_connect=False,
                    suppress_ragged_eofs=False,
                ) as tls,
            ):
                tls.do_handshake()  # (an end here, before it is done, says nothing)
                try:
                    if tls.recv(1):
                        return None  # the master speaks HTTP/2 to us: it took the certificate
                except ssl.SSLEOFError:
                    pass
                closed += 1  # the handshake succeeded; then the master closed the connection
        except ssl.SSLError as exc:
            said = f"{exc.reason or ''} {exc}".lower()
            if not any(alert in said for alert in _CERT_ALERTS) or "verify_failed" in said:
                return None  # (this worker not trusting the master is gRPC's to say)
            return _refused(cert, str(exc.reason))
        except (OSError, ValueError):
            return None  # not reached, or not TLS: nothing to say of certificates
    return _refused(cert, "the master closed the connection after the TLS handshake")


def _refused(cert: Path | None, why: str) -> str:
    if cert is None:
        return (
            f"the master requires a client certificate and this worker has none ({why}): give"
            " it --tls-cert and --tls-key (`gridrun certs issue --worker NAME` makes them)"
        )
    return (
        f"the master does not accept this worker's certificate {cert} ({why}): is it issued"
        " by the CA that the master's --client-ca names, and still valid?"
    )
