"""Who may do what, at both edges of the master: bearer tokens on the HTTP API; join tokens and
client certificates on the gRPC port. Every decision that involves a token is audited.

Kept out of the service: the service trusts its callers, the edges decide who the callers are.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping

from gridrun.allocating import allocation_of
from gridrun.auth import ANONYMOUS, Permission, Principal, Tokens, digest
from gridrun.errors import Forbidden, Unauthorized
from gridrun.master.core.audit import Audit
from gridrun.transport import JOIN_TOKEN_KEY

BEARER = "bearer "


ALLOC_CREDENTIAL = "alloc:"  # an allocation's credential is named alloc:<allocation id>


class Grants:
    """The join credentials of the allocations running now (their digests, as the store
    keeps them), each valid for the workers of its own allocation only; kept up to date by
    the allocator on every master, so it is revoked when its allocation ends."""

    def __init__(self) -> None:
        self._by_digest: dict[str, str] = {}  # digest -> allocation id

    def set(self, digests: Mapping[str, str]) -> None:
        self._by_digest = dict(digests)

    def add(self, token_digest: str, alloc_id: str) -> None:
        self._by_digest[token_digest] = alloc_id

    def remove(self, token_digest: str) -> None:
        self._by_digest.pop(token_digest, None)

    def allocation(self, token: str) -> str | None:
        """The allocation whose credential this is, or None."""
        wanted = digest(token)
        found = None
        for candidate, alloc_id in self._by_digest.items():
            if hmac.compare_digest(candidate, wanted):
                found = alloc_id
        return found


class Access:
    def __init__(
        self,
        tokens: Tokens,
        audit: Audit,
        *,
        bind_worker_certs: bool,
        grants: Grants | None = None,
    ) -> None:
        self.tokens = tokens
        self.audit = audit
        self.bind_worker_certs = bind_worker_certs
        self.grants = grants if grants is not None else Grants()

    # ---- HTTP

    def caller(self, token: str | None, permission: Permission, peer: str, what: str) -> Principal:
        """The principal behind an API call, or Unauthorized (401) / Forbidden (403)."""
        if not self.tokens.enabled:
            return ANONYMOUS
        if not token:
            self.audit.record("auth.missing", None, peer, call=what)
            raise Unauthorized("this master requires a token: send 'Authorization: Bearer <token>'")
        principal = self.tokens.authenticate(token)
        if principal is None:
            self.audit.record("auth.bad_token", None, peer, call=what)
            raise Unauthorized("the token is not valid for this master")
        if not principal.can(permission):
            self.audit.record("auth.forbidden", principal, peer, call=what, needs=str(permission))
            raise Forbidden(f"role '{principal.role}' may not {permission}")
        self.audit.record("auth.ok", principal, peer, call=what)
        return principal

    # ---- gRPC

    def join_refusal(self, metadata: Iterable[tuple[str, str | bytes]], peer: str) -> str | None:
        """Why a connecting worker is refused (UNAUTHENTICATED), or None if its token is good."""
        if not self.tokens.join_required:
            return None
        values = [v for k, v in metadata if k == JOIN_TOKEN_KEY and isinstance(v, str)]
        token = values[0] if len(values) == 1 else ""
        if not token.lower().startswith(BEARER):
            reason = "no join token (metadata 'authorization: Bearer <token>')"
        else:
            principal = self.tokens.authenticate(token[len(BEARER) :].strip())
            if principal is not None and principal.can(Permission.JOIN):
                self.audit.record("worker.token_ok", principal, peer)
                return None
            if self.grants.allocation(token[len(BEARER) :].strip()) is not None:
                return None  # an allocation's: its worker id is checked on its Hello
            reason = "the join token is not valid for this master"
        self.audit.record("worker.refused", None, peer, reason=reason)
        return reason

    def credential(self, metadata: Iterable[tuple[str, str | bytes]]) -> str:
        """The name of the join token a worker connected with ("" without join tokens)."""
        if not self.tokens.join_required:
            return ""
        values = [v for k, v in metadata if k == JOIN_TOKEN_KEY and isinstance(v, str)]
        token = values[0] if len(values) == 1 else ""
        principal = self.tokens.authenticate(token[len(BEARER) :].strip()) if token else None
        if principal is not None:
            return principal.name
        alloc_id = self.grants.allocation(token[len(BEARER) :].strip()) if token else None
        return ALLOC_CREDENTIAL + alloc_id if alloc_id is not None else ""

    def allocation_refusal(self, worker_id: str, credential: str, peer: str) -> str | None:
        """An allocation's credential joins only workers named for that allocation, and
        (where joining takes a token) a name of an allocation's only with its credential."""
        if not credential.startswith(ALLOC_CREDENTIAL):
            if self.tokens.join_required and allocation_of(worker_id) is not None:
                reason = (
                    f"worker id {worker_id!r} is an allocation's (alloc-<id>-<n>): it joins only"
                    " with that allocation's credential; give this worker another --name"
                )
                self.audit.record("worker.refused", None, peer, worker=worker_id, reason=reason)
                return reason
            return None
        alloc_id = credential[len(ALLOC_CREDENTIAL) :]
        if allocation_of(worker_id) == alloc_id:
            return None
        reason = (
            f"worker id {worker_id!r} may not join with the credential of allocation"
            f" {alloc_id} (it joins that allocation's workers only)"
        )
        self.audit.record("worker.refused", None, peer, worker=worker_id, reason=reason)
        return reason

    def identity_refusal(
        self, worker_id: str, auth_context: Mapping[str, Iterable[bytes]], peer: str
    ) -> str | None:
        """With mTLS, a worker may only use the id its certificate names."""
        if not self.bind_worker_certs:
            return None
        names = [n.decode(errors="replace") for n in auth_context.get("x509_common_name", ())]
        if names == [worker_id]:
            return None
        reason = (
            f"worker id {worker_id!r} does not match its certificate"
            f" ({names[0] if names else 'no certificate'!r})"
        )
        self.audit.record("worker.refused", None, peer, worker=worker_id, reason=reason)
        return reason
