"""Tokens, roles and the rules for listening beyond loopback (pure logic, no sockets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridrun.auth import (
    GRANTS,
    Permission,
    Principal,
    Role,
    TokenEntry,
    Tokens,
    digest,
    new_token,
    parse_env_tokens,
    parse_toml_tokens,
)
from gridrun.errors import ConfigError
from gridrun.master.app import MasterConfig, public_bind_warnings


def entry(name: str, role: Role, token: str) -> TokenEntry:
    return TokenEntry.of(name, role, digest(token))


def test_roles_grant_what_the_issue_says() -> None:
    assert GRANTS[Role.ADMIN] >= {Permission.SUBMIT, Permission.CANCEL_ANY, Permission.DRAIN}
    assert Permission.JOIN not in GRANTS[Role.ADMIN]  # an API token cannot join as a worker
    assert GRANTS[Role.SUBMIT] == {Permission.READ, Permission.SUBMIT, Permission.CANCEL_OWN}
    assert GRANTS[Role.READ] == {Permission.READ}
    assert GRANTS[Role.WORKER] == {Permission.JOIN}
    assert Principal("x", Role.SUBMIT).can(Permission.CANCEL_OWN)
    assert not Principal("x", Role.SUBMIT).can(Permission.CANCEL_ANY)


def test_a_token_authenticates_as_its_entry_and_nothing_else() -> None:
    alice, bob = new_token(), new_token()
    assert alice != bob
    assert alice.startswith("grt_")
    assert len(alice) > 40
    tokens = Tokens([entry("alice", Role.SUBMIT, alice), entry("bob", Role.READ, bob)])
    assert tokens.authenticate(alice) == Principal("alice", Role.SUBMIT)
    assert tokens.authenticate(bob) == Principal("bob", Role.READ)
    assert tokens.authenticate(alice[:-1]) is None
    assert tokens.authenticate("") is None
    assert tokens.authenticate(digest(alice)) is None  # the stored hash is not a token
    assert tokens.authenticate("\x00\udcff") is None  # anything a header can carry
    assert tokens.enabled
    assert not tokens.join_required


def test_worker_tokens_alone_do_not_turn_on_api_auth() -> None:
    tokens = Tokens([entry("fleet", Role.WORKER, new_token())])
    assert tokens.join_required
    assert not tokens.enabled


def test_config_never_holds_the_token_itself() -> None:
    with pytest.raises(ConfigError, match="hash must be"):
        TokenEntry.of("ci", "submit", new_token())
    with pytest.raises(ConfigError, match="role 'root'"):
        TokenEntry.of("ci", "root", digest("x"))
    with pytest.raises(ConfigError, match="token name"):
        TokenEntry.of("a b", "read", digest("x"))
    with pytest.raises(ConfigError, match="reserved"):
        TokenEntry.of("anonymous", "read", digest("x"))
    with pytest.raises(ConfigError, match="unique"):
        Tokens([entry("ci", Role.READ, "a"), entry("ci", Role.ADMIN, "b")])


def test_tokens_from_the_environment_and_the_config_file() -> None:
    a, b = digest("token-a"), digest("token-b")
    parsed = parse_env_tokens(f" ci:submit:{a}, ops:admin:{b} ")
    assert parsed == [TokenEntry("ci", Role.SUBMIT, a), TokenEntry("ops", Role.ADMIN, b)]
    with pytest.raises(ConfigError, match="expected name:role"):
        parse_env_tokens("justaname")
    tables = [{"name": "ci", "role": "submit", "hash": a}]
    assert parse_toml_tokens(tables) == [TokenEntry("ci", Role.SUBMIT, a)]
    with pytest.raises(ConfigError, match="exactly: name, role, hash"):
        parse_toml_tokens([{"name": "ci", "role": "submit", "token": "grt_x"}])
    with pytest.raises(ConfigError, match="list of"):
        parse_toml_tokens({"name": "ci"})


def _config(**settings: object) -> MasterConfig:
    return MasterConfig.model_validate({"db": Path("unused.db"), **settings})


def test_loopback_needs_nothing() -> None:
    assert public_bind_warnings(_config()) == []


def test_public_listening_needs_tokens_and_tls_or_insecure() -> None:
    api = TokenEntry("ops", Role.ADMIN, digest("a"))
    join = TokenEntry("fleet", Role.WORKER, digest("b"))
    tls = {"tls_cert": Path("m.crt"), "tls_key": Path("m.key")}
    with pytest.raises(ConfigError, match="no API tokens"):
        public_bind_warnings(_config(http_host="0.0.0.0"))
    with pytest.raises(ConfigError, match="plaintext"):
        public_bind_warnings(_config(http_host="0.0.0.0", tokens=[api]))
    assert public_bind_warnings(_config(http_host="0.0.0.0", tokens=[api], **tls)) == []
    with pytest.raises(ConfigError, match="anyone can join"):
        public_bind_warnings(_config(grpc_host="10.0.0.1", tokens=[api], **tls))
    assert public_bind_warnings(_config(grpc_host="10.0.0.1", tokens=[join], **tls)) == []
    mtls = {**tls, "client_ca": Path("ca.crt")}
    assert public_bind_warnings(_config(grpc_host="::", **mtls)) == []
    warnings = public_bind_warnings(_config(http_host="0.0.0.0", insecure=True))
    assert len(warnings) == 2
    assert all(w.startswith("INSECURE:") for w in warnings)


def test_tls_settings_come_in_pairs() -> None:
    with pytest.raises(ValueError, match="both tls_cert and tls_key"):
        _config(tls_cert=Path("m.crt"))
    with pytest.raises(ValueError, match="needs tls_cert"):
        _config(client_ca=Path("ca.crt"))
