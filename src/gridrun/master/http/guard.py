"""The browser boundary of the HTTP API: what a web page the user visits must not be able to do.

A master without tokens (the loopback default, `gridrun up`) trusts whoever can reach its port.
A browser can reach it too, on behalf of any page: a cross-origin `fetch` or form POST, or a
DNS-rebinding name that points at 127.0.0.1. `BrowserGuard` refuses those before any route runs:

- `Host` must name this master: an IP address (a page cannot rebind an address), `localhost`,
  or a name given with `--allowed-host` (or in the TLS certificate). A rebinding page's requests
  carry its own name, so they are refused, reads included.
- A request that changes something (POST, PUT, PATCH, DELETE) must come from this master's own
  origin: `Origin` (every browser sends it on such requests) equal to the request's host, or
  naming an allowed host; `Sec-Fetch-Site` cross-site or same-site without a matching `Origin`
  is refused. Clients that are not browsers (curl, the CLI, the SDK) send neither header.
- Its body, if any, must be `application/json`: the media types a page may send without a CORS
  preflight (text/plain, forms) never reach a route.

Every answer carries the headers that keep the dashboard from being framed, sniffed or made to
run script from anywhere but the master itself.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gridrun.errors import Forbidden, UnsupportedMediaType
from gridrun.master.http.problems import problem

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_NAMES = ("localhost",)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = tuple(
    (name.encode(), value.encode())
    for name, value in (
        (
            "content-security-policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
            " connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self';"
            " frame-ancestors 'none'",
        ),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
    )
)
DEFAULT_PORTS = {"http": 80, "https": 443}


def _hostname(netloc: str) -> str:
    """The host of `host[:port]` (brackets of an IPv6 literal removed), lower case."""
    return (urlsplit(f"//{netloc}").hostname or "").lower().rstrip(".")


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def normalize_host(name: str) -> str:
    """An `--allowed-host` entry as compared: lower case, no port, no trailing dot; a leading
    `*.` or `.` allows every subdomain."""
    name = name.strip().lower().rstrip(".")
    if name.startswith("*."):
        name = name[1:]
    return name


class AllowedHosts:
    """The names this master answers to, beyond IP addresses and `localhost`: `names` given by
    the operator (front ends: a page served under such a name may also write, whatever its
    port), and `own` names it listens or holds a certificate for (served, and same-origin only
    when the page's port is the request's)."""

    def __init__(self, names: Iterable[str] = (), own: Iterable[str] = ()) -> None:
        entries = {normalize_host(n) for n in names if n.strip()}
        self.any = "*" in entries  # explicitly turned off (e.g. behind a proxy that checks)
        self.exact = frozenset(e for e in entries if not e.startswith(".") and e != "*")
        self.suffixes = tuple(sorted(e for e in entries if e.startswith(".")))
        self.own = frozenset(normalize_host(n) for n in own if n.strip())

    def configured(self, host: str) -> bool:
        """True for a name the operator gave."""
        return self.any or host in self.exact or host.endswith(self.suffixes or ("\0",))

    def served(self, host: str) -> bool:
        """True if a request naming `host` is for this master."""
        return (
            not host
            or _is_address(host)
            or host in LOOPBACK_NAMES
            or host.endswith(".localhost")
            or host in self.own
            or self.configured(host)
        )


OCTET_PATHS = ("/v1/inputs/",)  # the routes whose body is raw bytes, not JSON


class BrowserGuard:
    """ASGI middleware: refuse requests a browser sent on behalf of another site (see the module
    docstring), and add the security headers to every answer."""

    def __init__(self, app: ASGIApp, allowed_hosts: AllowedHosts) -> None:
        self.app = app
        self.hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope)

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in message.get("headers", ())}
                message["headers"] = [
                    *message.get("headers", ()),
                    *(h for h in SECURITY_HEADERS if h[0] not in names),
                ]
            await send(message)

        if refusal is not None:
            status, detail = refusal
            error = UnsupportedMediaType if status == 415 else Forbidden
            await problem(status, error.title, detail, error=error)(scope, receive, secured)
            return
        await self.app(scope, receive, secured)

    def refusal(self, scope: Scope) -> tuple[int, str] | None:
        """Why this request is refused (status and message), or None."""
        headers: dict[bytes, bytes] = {}
        for name, value in scope.get("headers", ()):
            headers.setdefault(name, value)
        host_header = headers.get(b"host", b"").decode("latin-1")
        host = _hostname(host_header)
        if not self.hosts.served(host):
            return 403, (
                f"this master does not serve the host name {host!r} (a DNS-rebinding page"
                " would use such a name); start the master with --allowed-host "
                f"{host} if clients reach it by that name"
            )
        if scope["method"] not in UNSAFE_METHODS:
            return None
        origin = headers.get(b"origin")
        if origin is not None:
            if not self._same_origin(origin.decode("latin-1"), host_header, scope):
                return 403, (
                    f"cross-origin request refused: Origin {origin.decode('latin-1')!r} is not"
                    " this master's (a web page may not submit, cancel or drain); add its host"
                    " with --allowed-host if it is a front end of this master"
                )
        elif headers.get(b"sec-fetch-site", b"") in (b"cross-site", b"same-site"):
            return 403, "cross-site request refused (Sec-Fetch-Site)"
        media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        has_body = headers.get(b"content-length", b"0").strip() not in (b"0", b"")
        has_body = has_body or b"transfer-encoding" in headers
        if media == b"application/octet-stream" and str(scope.get("path", "")).startswith(
            OCTET_PATHS
        ):
            # an input's bytes (a cross-site page cannot send this type without a preflight,
            # which it does not pass; a method the route has not is its 405)
            return None
        if (media or has_body) and media != b"application/json":
            shown = media.decode("latin-1") or "none"
            octet = (
                " (an input's bytes: application/octet-stream)"
                if str(scope.get("path", "")).startswith(OCTET_PATHS)
                else ""
            )
            return 415, f"request bodies must be application/json{octet} (Content-Type: {shown})"
        return None

    def _same_origin(self, origin: str, host_header: str, scope: Scope) -> bool:
        if origin == "null":  # sandboxed frames, file: and data: pages
            return False
        parts = urlsplit(origin)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            return False
        hostname = parts.hostname.lower().rstrip(".")
        if self.hosts.configured(hostname):  # a front end the operator named
            return True
        try:
            port = parts.port or DEFAULT_PORTS[parts.scheme]
        except ValueError:
            return False
        request = urlsplit(f"//{host_header}")
        scheme = str(scope.get("scheme", "http"))
        try:
            request_port = request.port or DEFAULT_PORTS.get(scheme, 80)
        except ValueError:
            return False
        return _hostname(host_header) == hostname and request_port == port
