"""Reading certificates back with `cryptography`, an implementation independent of the openssl that made
them. Used after every signing step (did openssl write what the plan asked for?), to decide what is
already up to date, and by the audit."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from orchestrator.files import read_regular

EKU_NAMES = {ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth", ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth"}
_SUBJECT_OIDS = {"O": NameOID.ORGANIZATION_NAME, "CN": NameOID.COMMON_NAME}


@dataclass(frozen=True)
class Expect:
    """What a certificate the plan makes must be: checked field by field, never compared as bytes
    (OpenSSL 1.1 and 3.x write different bytes from the same config)."""

    cert: str  # paths relative to the output folder
    key: str
    issuer: str | None  # the CA certificate that signs it (itself for our CAs); None: not checked (yours)
    subject: tuple[tuple[str, str], ...]  # (("O", "Cockroach"), ("CN", "node"))
    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    eku: tuple[str, ...] = ()
    is_ca: bool = False


def load_certs(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(read_regular(path))


def load_cert(path: Path) -> x509.Certificate:
    return load_certs(path)[0]


def load_key(path: Path) -> PrivateKeyTypes:
    return parse_key(read_regular(path))


def parse_key(pem: bytes) -> PrivateKeyTypes:
    # What is checked here is that the data is a key and which public key it holds (to pair it with a
    # certificate). cryptography's RSA consistency check (~50-100 ms a key, holding the GIL, once per key
    # per run and again in every freshness check and audit) proves nothing more about a key openssl wrote.
    return serialization.load_pem_private_key(pem, password=None, unsafe_skip_rsa_key_validation=True)


def public_bytes(key_or_cert: PrivateKeyTypes | x509.Certificate | x509.CertificateSigningRequest) -> bytes:
    public = key_or_cert.public_key()
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def subject_of(cert: x509.Certificate) -> tuple[tuple[str, str], ...]:
    short = {v: k for k, v in _SUBJECT_OIDS.items()}
    return tuple((short.get(a.oid, a.oid.dotted_string), str(a.value)) for a in cert.subject)


def sans_of(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return san.get_values_for_type(x509.DNSName), [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]


def ekus_of(cert: x509.Certificate) -> list[str]:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return []
    return [EKU_NAMES.get(oid, oid.dotted_string) for oid in eku]


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):  # wrong signature, issuer name or key type
        return False
    return True


def problems(expect: Expect, root: Path, now: datetime | None = None) -> list[str]:
    """Every way the certificate at `expect.cert` differs from what was asked for ([] when it is right)."""
    now = now or datetime.now(UTC)
    cert_path, key_path = root / expect.cert, root / expect.key
    try:
        cert = load_cert(cert_path)
    except (OSError, ValueError) as e:
        return [f"{expect.cert}: cannot be read as a PEM certificate ({e.__class__.__name__})"]
    try:
        extensions = cert.extensions
    except (ValueError, x509.DuplicateExtension) as e:
        return [f"{expect.cert}: its extensions cannot be read ({e})"]
    found: list[str] = []
    if expect.issuer is not None:  # a certificate crdb-certs signs (not your own CA's certificate)
        found += _extension_problems(expect, extensions)
    try:
        if public_bytes(load_key(key_path)) != public_bytes(cert):
            found.append(f"{expect.key} does not match {expect.cert}")
    except (OSError, ValueError, TypeError) as e:
        found.append(f"{expect.key}: cannot be read as a private key ({e.__class__.__name__})")
    if subject_of(cert) != expect.subject:
        found.append(f"{expect.cert}: subject {_dn(subject_of(cert))}, expected {_dn(expect.subject)}")
    dns, ips = sans_of(cert)
    if sorted(dns) != sorted(expect.dns) or sorted(ips) != sorted(_canonical_ips(expect.ips)):
        found.append(
            f"{expect.cert}: SANs DNS={dns} IP={ips}, expected DNS={list(expect.dns)} IP={list(expect.ips)}"
        )
    if sorted(ekus_of(cert)) != sorted(expect.eku):
        found.append(f"{expect.cert}: extended key usage {ekus_of(cert)}, expected {list(expect.eku)}")
    if is_ca(cert) != expect.is_ca:
        found.append(f"{expect.cert}: CA:{is_ca(cert)}, expected CA:{expect.is_ca}")
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        found.append(
            f"{expect.cert}: not valid now (valid {cert.not_valid_before_utc} to {cert.not_valid_after_utc})"
        )
    if expect.issuer is None:
        return found
    try:
        issuer = load_cert(root / expect.issuer)
    except (OSError, ValueError):
        found.append(f"{expect.cert}: its CA {expect.issuer} cannot be read")
    else:
        if not signed_by(cert, issuer):
            found.append(f"{expect.cert}: not signed by {expect.issuer}")
    return found


# What a certificate crdb-certs signs may carry. OpenSSL 3 adds the key identifiers by default, and 1.1.1
# does not, so both are allowed; anything else came from somewhere the plan does not control (a CSR under
# the docs' `copy_extensions = copy`, openssl-traps.md §4.2) and is reported.
_LEAF_EXTENSIONS = {
    ExtensionOID.KEY_USAGE,
    ExtensionOID.EXTENDED_KEY_USAGE,
    ExtensionOID.BASIC_CONSTRAINTS,
    ExtensionOID.SUBJECT_KEY_IDENTIFIER,
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
}
_CA_EXTENSIONS = {
    ExtensionOID.KEY_USAGE,
    ExtensionOID.BASIC_CONSTRAINTS,
    ExtensionOID.SUBJECT_KEY_IDENTIFIER,
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
}


_EXTENSION_NAMES = {
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME: "subjectAltName",
    ExtensionOID.NAME_CONSTRAINTS: "nameConstraints",
    ExtensionOID.CERTIFICATE_POLICIES: "certificatePolicies",
    ExtensionOID.CRL_DISTRIBUTION_POINTS: "crlDistributionPoints",
    ExtensionOID.AUTHORITY_INFORMATION_ACCESS: "authorityInfoAccess",
    ExtensionOID.EXTENDED_KEY_USAGE: "extendedKeyUsage",
    x509.ObjectIdentifier("2.16.840.1.113730.1.13"): "nsComment",
}


def _extension_problems(expect: Expect, extensions: x509.Extensions) -> list[str]:
    """Extensions the plan did not ask for, SAN entries other than DNS names and IP addresses (a URI or an
    e-mail address is a principal to some peers), and a leaf's key usage that would let it sign."""
    found: list[str] = []
    allowed = set(_CA_EXTENSIONS if expect.is_ca else _LEAF_EXTENSIONS)
    if expect.dns or expect.ips:
        allowed.add(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    extra = [_EXTENSION_NAMES.get(e.oid, e.oid.dotted_string) for e in extensions if e.oid not in allowed]
    if extra:
        found.append(f"{expect.cert}: extensions the plan did not ask for: {', '.join(extra)}")
    for ext in extensions:
        if isinstance(ext.value, x509.SubjectAlternativeName):
            other = [n for n in ext.value if not isinstance(n, x509.DNSName | x509.IPAddress)]
            if other:
                found.append(f"{expect.cert}: SAN entries other than DNS names and IPs: {other}")
        usage = ext.value
        if isinstance(usage, x509.KeyUsage) and not expect.is_ca and (usage.key_cert_sign or usage.crl_sign):
            found.append(f"{expect.cert}: a leaf whose key usage allows signing certificates or CRLs")
    return found


def _canonical_ips(ips: tuple[str, ...]) -> list[str]:
    return [str(ipaddress.ip_address(ip)) for ip in ips]


def _dn(subject: tuple[tuple[str, str], ...]) -> str:
    return ",".join(f"{k}={v}" for k, v in subject) or "(empty)"
