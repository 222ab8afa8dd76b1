"""A small private CA for one grid (`gridrun certs init`) and the certificates it signs: one per
master (server, with the host names and addresses workers and clients dial) and one per worker
(client, its common name is the worker's id). Keys are ECDSA P-256, written 0600.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gridrun.errors import ConfigError
from gridrun.model import WORKER_ID, WORKER_ID_RULE

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
CA_DAYS = 3650
LEAF_DAYS = 397  # what browsers accept for a server certificate; reissue yearly
HOST_NAME = re.compile(r"^[A-Za-z0-9*]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


@dataclass(frozen=True, slots=True)
class Issued:
    cert: Path
    key: Path


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.chmod(path, 0o600)  # also when the file existed with wider permissions


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    """Signatures only (EC keys); a CA also signs certificates and revocation lists."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def init_ca(directory: Path, *, force: bool = False) -> Issued:
    """Create the grid's CA in `directory` (refusing to replace one unless `force`)."""
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    if not force and (cert_path.exists() or key_path.exists()):
        raise ConfigError(
            f"{directory} already holds a CA; every certificate it issued depends on it."
            " Use another --dir, or --force to replace it"
        )
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gridrun"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"gridrun CA {os.urandom(4).hex()}"),
        ]
    )
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            _key_usage(signs_certificates=True),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(key_path, key)
    _write_cert(cert_path, cert)
    return Issued(cert_path, key_path)


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
        key = serialization.load_pem_private_key((directory / CA_KEY).read_bytes(), None)
    except FileNotFoundError:
        raise ConfigError(f"no CA in {directory}; run `gridrun certs init` first") from None
    except ValueError as exc:
        raise ConfigError(f"the CA in {directory} cannot be read: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{directory / CA_KEY} is not an ECDSA key made by gridrun certs")
    return cert, key


def _subject_names(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if not HOST_NAME.match(host):
                raise ConfigError(f"{host!r} is neither an IP address nor a host name") from None
            names.append(x509.DNSName(host))
    return names


def _issue(
    directory: Path,
    stem: str,
    common_name: str,
    usage: x509.ObjectIdentifier,
    alt_names: list[x509.GeneralName],
) -> Issued:
    ca_cert, ca_key = _load_ca(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gridrun"),
                    x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(signs_certificates=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    issued = Issued(directory / f"{stem}.crt", directory / f"{stem}.key")
    _write_key(issued.key, key)
    _write_cert(issued.cert, cert)
    return issued


def issue_master(directory: Path, hosts: list[str], stem: str = "master") -> Issued:
    """A server certificate for the names and addresses clients and workers dial."""
    if not hosts:
        raise ConfigError("give at least one --master HOST (a name or an address)")
    names = _subject_names(hosts)
    return _issue(directory, stem, hosts[0], ExtendedKeyUsageOID.SERVER_AUTH, names)


def issue_worker(directory: Path, name: str) -> Issued:
    """A client certificate whose common name is the worker's id."""
    if not WORKER_ID.match(name):
        raise ConfigError(f"worker name {name!r}: {WORKER_ID_RULE}")
    return _issue(
        directory,
        f"worker-{name}",
        name,
        ExtendedKeyUsageOID.CLIENT_AUTH,
        [x509.DNSName(name)] if HOST_NAME.match(name) and len(name) <= 63 else [],
    )


def _read_cert(cert_path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the certificate {cert_path}: {exc}") from None


def dns_names(cert_path: Path) -> list[str]:
    """The DNS names a (master's) certificate is valid for: the names clients dial."""
    try:
        alt = _read_cert(cert_path).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [str(name) for name in alt.value.get_values_for_type(x509.DNSName)]


def common_name(cert_path: Path) -> str:
    """The common name of a certificate: for a worker's, its id."""
    cert = _read_cert(cert_path)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        raise ConfigError(f"{cert_path} has no common name")
    value = names[0].value
    return value if isinstance(value, str) else value.decode()
