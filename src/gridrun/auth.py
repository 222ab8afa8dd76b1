"""API and join tokens: roles, what each role may do, and how a presented token is checked.

A token is 32 random bytes (urlsafe base64) behind a `grt_` prefix. The master keeps only its
SHA-256 digest: a slow password hash buys nothing against a 256-bit random secret, and a fast one
keeps the check to microseconds per request. A presented token is hashed and compared with every
configured digest in constant time, so neither timing nor an early exit tells an attacker how
close a guess came or which entry it matched.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from gridrun.errors import ConfigError

TOKEN_PREFIX = "grt_"
DIGEST_PREFIX = "sha256:"
NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class Role(StrEnum):
    ADMIN = "admin"  # everything
    SUBMIT = "submit"  # submit, read everything, cancel its own tasks
    READ = "read"  # read only
    WORKER = "worker"  # a join token: may connect as a worker, nothing on the HTTP API


class Permission(StrEnum):
    READ = "read"
    SUBMIT = "submit"
    CANCEL_OWN = "cancel own tasks"
    CANCEL_ANY = "cancel any task"
    DRAIN = "drain workers"
    QUOTAS = "set quotas"
    GC = "delete ended tasks"
    ALLOCATE = "manage allocation queues"
    JOIN = "join as a worker"


GRANTS: Mapping[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(
        {
            Permission.READ,
            Permission.SUBMIT,
            Permission.CANCEL_OWN,
            Permission.CANCEL_ANY,
            Permission.DRAIN,
            Permission.QUOTAS,
            Permission.GC,
            Permission.ALLOCATE,
        }
    ),
    Role.SUBMIT: frozenset({Permission.READ, Permission.SUBMIT, Permission.CANCEL_OWN}),
    Role.READ: frozenset({Permission.READ}),
    Role.WORKER: frozenset({Permission.JOIN}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request: a token's name and role (or `anonymous` when auth is off)."""

    name: str
    role: Role

    def can(self, permission: Permission) -> bool:
        return permission in GRANTS[self.role]


ANONYMOUS = Principal("anonymous", Role.ADMIN)  # a master with no tokens configured


@dataclass(frozen=True, slots=True)
class TokenEntry:
    name: str
    role: Role
    digest: str  # "sha256:<64 hex>"

    @classmethod
    def of(cls, name: str, role: str, digest: str) -> TokenEntry:
        if not NAME.match(name):
            raise ConfigError(f"token name {name!r}: use 1-64 of A-Z a-z 0-9 _ . @ -")
        if name == ANONYMOUS.name:
            raise ConfigError(f"token name {name!r} is reserved for calls without auth")
        try:
            parsed = Role(role)
        except ValueError:
            roles = ", ".join(r.value for r in Role)
            raise ConfigError(f"token {name!r}: role {role!r} is not one of {roles}") from None
        if not DIGEST.match(digest):
            raise ConfigError(
                f"token {name!r}: hash must be 'sha256:' and 64 hex digits, as printed by"
                " `gridrun token create` (the token itself never goes in the config)"
            )
        return cls(name, parsed, digest)


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return DIGEST_PREFIX + hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def parse_env_tokens(text: str) -> list[TokenEntry]:
    """GRIDRUN_TOKENS: comma- or whitespace-separated `name:role:sha256:<hex>` entries."""
    entries = []
    for item in re.split(r"[,\s]+", text.strip()):
        if not item:
            continue
        parts = item.split(":", 2)
        if len(parts) != 3:
            raise ConfigError(f"GRIDRUN_TOKENS entry {item[:40]!r}: expected name:role:sha256:hex")
        entries.append(TokenEntry.of(*parts))
    return entries


def parse_toml_tokens(tables: object) -> list[TokenEntry]:
    """The config file's `[[tokens]]` tables: name, role, hash."""
    if not isinstance(tables, list):
        raise ConfigError("'tokens' in the config file must be a list of [[tokens]] tables")
    entries = []
    for i, table in enumerate(tables):
        if not isinstance(table, dict) or set(table) != {"name", "role", "hash"}:
            raise ConfigError(f"tokens[{i}] needs exactly: name, role, hash")
        if not all(isinstance(v, str) for v in table.values()):
            raise ConfigError(f"tokens[{i}]: name, role and hash are strings")
        entries.append(TokenEntry.of(table["name"], table["role"], table["hash"]))
    return entries


def toml_entry(name: str, role: Role, token_digest: str) -> str:
    """The `[[tokens]]` table for a config file (names are restricted, so no escaping needed)."""
    return f'\n[[tokens]]\nname = "{name}"\nrole = "{role}"\nhash = "{token_digest}"\n'


class Tokens:
    """The configured tokens; `enabled` is False when there are none (auth is then off)."""

    def __init__(self, entries: Iterable[TokenEntry] = ()) -> None:
        self.entries = tuple(entries)
        names = [e.name for e in self.entries]
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise ConfigError(f"token names must be unique; repeated: {', '.join(dupes)}")
        self._digests = [(e.digest.encode(), e) for e in self.entries]

    @property
    def enabled(self) -> bool:
        return any(e.role is not Role.WORKER for e in self.entries)

    @property
    def join_required(self) -> bool:
        return any(e.role is Role.WORKER for e in self.entries)

    def authenticate(self, presented: str) -> Principal | None:
        """The principal a token belongs to, or None. Compares with every entry, always."""
        wanted = digest(presented).encode()
        found: TokenEntry | None = None
        for candidate, entry in self._digests:
            if hmac.compare_digest(candidate, wanted):
                found = entry
        return None if found is None else Principal(found.name, found.role)
