"""An independent reading of a PKI that crdb-certs made: `cryptography` only, nothing from orchestrator's
own certificate code, so a bug there cannot hide a bug here."""

from __future__ import annotations

import ipaddress
import stat
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVER, CLIENT = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH


@dataclass
class Leaf:
    cert: x509.Certificate
    path: Path

    @property
    def cn(self) -> list[str]:
        return [str(a.value) for a in self.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]

    @property
    def org(self) -> list[str]:
        return [str(a.value) for a in self.cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]

    @property
    def dns(self) -> set[str]:
        return set(_san(self.cert).get_values_for_type(x509.DNSName)) if _san(self.cert) else set()

    @property
    def ips(self) -> set[str]:
        san = _san(self.cert)
        return {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} if san else set()

    @property
    def eku(self) -> set[x509.ObjectIdentifier]:
        return set(self.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)

    @property
    def key_usage(self) -> x509.KeyUsage:
        return self.cert.extensions.get_extension_for_class(x509.KeyUsage).value

    @property
    def basic_constraints(self) -> x509.BasicConstraints | None:
        try:
            return self.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            return None


def _san(cert: x509.Certificate) -> x509.SubjectAlternativeName | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def read(path: Path) -> Leaf:
    return Leaf(x509.load_pem_x509_certificate(path.read_bytes()), path)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_key_pair(cert: Path, key: Path) -> None:
    private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    public = x509.load_pem_x509_certificate(cert.read_bytes()).public_key()
    der = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert private.public_key().public_bytes(*der) == public.public_bytes(*der), (
        f"{key} does not match {cert}"
    )
    assert mode(key) & 0o077 == 0, f"{key} is readable beyond its owner: {oct(mode(key))}"


def assert_chains(leaf: Path, ca: Path) -> None:
    issuer = x509.load_pem_x509_certificate(ca.read_bytes())
    x509.load_pem_x509_certificate(leaf.read_bytes()).verify_directly_issued_by(issuer)


def assert_ca(path: Path) -> Leaf:
    ca = read(path)
    bc = ca.basic_constraints
    assert bc is not None and bc.ca and bc.path_length == 1
    assert ca.key_usage.key_cert_sign
    assert ca.org == ["Cockroach"]
    return ca


def assert_node(
    path: Path, hosts: list[str], ca: Path, cn: list[str], eku: set[x509.ObjectIdentifier], secure: bool
) -> Leaf:
    node = read(path)
    assert node.cn == cn
    assert node.org == ["Cockroach"]
    dns = {h for h in hosts if not _is_ip(h)}
    ips = {str(ipaddress.ip_address(h)) for h in hosts if _is_ip(h)}
    assert (node.dns, node.ips) == (dns, ips), f"{path}: SANs {node.dns} {node.ips}"
    assert node.eku == eku
    assert node.key_usage.digital_signature and node.key_usage.key_encipherment
    assert not node.key_usage.key_cert_sign
    _assert_leaf_common(node, ca, secure)
    return node


def assert_client(path: Path, user: str, ca: Path, secure: bool, dns: set[str] | None = None) -> Leaf:
    client = read(path)
    assert client.cn == [user]
    assert client.org == ["Cockroach"]
    assert client.eku == {CLIENT}
    assert client.dns == (dns or set())
    assert client.ips == set()
    _assert_leaf_common(client, ca, secure)
    return client


def _assert_leaf_common(leaf: Leaf, ca_path: Path, secure: bool) -> None:
    ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    leaf.cert.verify_directly_issued_by(ca)
    now = datetime.now(UTC)
    assert leaf.cert.not_valid_before_utc <= now + timedelta(minutes=1)
    assert now < leaf.cert.not_valid_after_utc
    assert_key_pair(leaf.path, leaf.path.with_suffix(".key"))
    if secure:
        bc = leaf.basic_constraints
        assert bc is not None and not bc.ca, f"{leaf.path}: secure leaves say CA:FALSE"
        assert leaf.cert.not_valid_after_utc <= ca.not_valid_after_utc, "a leaf outlives its CA"
        assert leaf.cert.serial_number.bit_length() > 64, "secure serials are random 128-bit numbers"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
