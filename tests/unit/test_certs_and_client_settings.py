"""`gridrun certs` output checked with cryptography, and where a client finds its settings."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gridrun.certs import common_name, init_ca, issue_master, issue_worker
from gridrun.client.settings import DEFAULT_URL, resolve
from gridrun.errors import ClientError, ConfigError


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, InvalidSignature):  # ValueError: the issuer name differs
        return False
    return True


def test_a_ca_signs_master_and_worker_certificates(tmp_path: Path) -> None:
    ca = init_ca(tmp_path)
    master = issue_master(tmp_path, ["127.0.0.1", "grid.example.com"])
    worker = issue_worker(tmp_path, "w1")
    ca_cert = load(ca.cert)
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for issued in (ca, master, worker):
        assert stat.S_IMODE(issued.key.stat().st_mode) == 0o600
    m = load(master.cert)
    assert signed_by(m, ca_cert)
    names = m.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert names.get_values_for_type(x509.DNSName) == ["grid.example.com"]
    usage = m.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    w = load(worker.cert)
    assert signed_by(w, ca_cert)
    assert w.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "w1"
    assert common_name(worker.cert) == "w1"
    usage = w.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_another_ca_does_not_vouch_for_ours(tmp_path: Path) -> None:
    init_ca(tmp_path / "a")
    other = init_ca(tmp_path / "b")
    worker = issue_worker(tmp_path / "a", "w1")
    assert not signed_by(load(worker.cert), load(other.cert))


def test_certs_refuse_what_would_break_a_grid(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="certs init"):
        issue_worker(tmp_path, "w1")
    init_ca(tmp_path)
    with pytest.raises(ConfigError, match="already holds a CA"):
        init_ca(tmp_path)
    with pytest.raises(ConfigError, match="worker name"):
        issue_worker(tmp_path, "../evil")
    with pytest.raises(ConfigError, match="neither an IP address nor a host name"):
        issue_master(tmp_path, ["bad host"])
    with pytest.raises(ConfigError, match="at least one"):
        issue_master(tmp_path, [])


def test_client_settings_arguments_then_environment_then_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    env = {"GRIDRUN_CONFIG": str(path)}
    assert resolve(environ=env).url == DEFAULT_URL
    path.write_text('url = "https://grid:9092/"\ntoken = "grt_file"\nca = "/etc/ca.crt"\n')
    path.chmod(0o600)
    from_file = resolve(environ=env)
    assert (from_file.url, from_file.token, from_file.ca) == (
        "https://grid:9092",
        "grt_file",
        Path("/etc/ca.crt"),
    )
    assert from_file.warnings == ()
    from_env = resolve(environ={**env, "GRIDRUN_TOKEN": "grt_env"})
    assert from_env.token == "grt_env"
    assert from_env.url == "https://grid:9092"
    given = resolve("http://other:1", token="grt_arg", environ={**env, "GRIDRUN_TOKEN": "x"})
    assert (given.url, given.token) == ("http://other:1", "grt_arg")
    path.chmod(0o644)
    assert "chmod 600" in resolve(environ=env).warnings[0]


def test_a_broken_client_config_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    env = {"GRIDRUN_CONFIG": str(path)}
    path.write_text("url = [")
    with pytest.raises(ClientError, match="not valid TOML"):
        resolve(environ=env)
    path.write_text('server = "x"\n')
    with pytest.raises(ClientError, match="unknown setting"):
        resolve(environ=env)
