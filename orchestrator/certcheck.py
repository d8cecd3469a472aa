"""Reading certificates back with `cryptography`, an implementation independent of the openssl that made
them. Used after every signing step (did openssl write what the plan asked for?), to decide what is
already up to date, and by the audit."""

from __future__ import annotations

import functools
import ipaddress
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtendedKeyUsageOID,
    ExtensionOID,
    NameOID,
)

from orchestrator.files import read_regular

EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
}
_SUBJECT_OIDS = {"O": NameOID.ORGANIZATION_NAME, "CN": NameOID.COMMON_NAME}


@dataclass(frozen=True, slots=True)
class Expect:
    """What a certificate the plan makes must be: checked field by field, never compared as bytes
    (OpenSSL 1.1 and 3.x write different bytes from the same config)."""

    cert: str  # paths relative to the output folder
    key: str
    issuer: str | None  # the CA certificate that signs it (itself for our CAs); None: not checked (yours)
    subject: tuple[tuple[str, str], ...] | None  # (("O", "Cockroach"), ("CN", "node")); None: not checked
    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    eku: tuple[str, ...] = ()
    is_ca: bool = False
    key_kind: str | None = None  # "RSA 2048", "EC P-256" (key_kind_of); None: not checked
    # The extended key usages the certificate's role needs, where the profile writes more (the docs'
    # ca.cnf gives node.crt clientAuth even in the split layouts, where node.crt only serves): what `csr`
    # asks an outside CA for and `import` demands. None: `eku`.
    role_eku: tuple[str, ...] | None = None
    ocsp_url: str | None = None  # [ocsp] url: the one authorityInfoAccess entry, OCSP;URI:<url>
    responder: bool = False  # an OCSP responder's certificate: carries noCheck (RFC 6960 §4.2.2.2.1)

    @property
    def needed_eku(self) -> tuple[str, ...]:
        return self.eku if self.role_eku is None else self.role_eku


def load_certs(path: str | Path) -> list[x509.Certificate]:
    return list(parse_certs(read_regular(path)))


# The same CA file is read once per certs directory (10,000 of them, issue 16): parsed once, by its bytes.
# A few entries: a leaf read between two reads of its CA does not push the CA out.
@functools.lru_cache(maxsize=16)
def parse_certs(pem: bytes) -> tuple[x509.Certificate, ...]:
    return tuple(x509.load_pem_x509_certificates(pem))


@functools.lru_cache(maxsize=16)
def parse_der(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)


def load_cert(path: str | Path) -> x509.Certificate:
    return load_certs(path)[0]


def load_key(path: str | Path) -> PrivateKeyTypes:
    return parse_key(read_regular(path))


def parse_key(pem: bytes) -> PrivateKeyTypes:
    # What is checked here is that the data is a key and which public key it holds (to pair it with a
    # certificate). cryptography's RSA consistency check (~50-100 ms a key, holding the GIL, once per key
    # per run and again in every freshness check and audit) proves nothing more about a key openssl wrote.
    return serialization.load_pem_private_key(pem, password=None, unsafe_skip_rsa_key_validation=True)


def public_bytes(key_or_cert: PrivateKeyTypes | x509.Certificate | x509.CertificateSigningRequest) -> bytes:
    public = key_or_cert.public_key()
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_kind_of(key_or_cert: PrivateKeyTypes | x509.Certificate) -> str:
    """What the spec's key_type and key_bits ask for ("RSA 2048", "EC P-256"), read from a key or a
    certificate."""
    public = key_or_cert.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        return f"RSA {public.key_size}"
    if isinstance(public, ec.EllipticCurvePublicKey):
        return "EC " + _CURVES.get(public.curve.name, public.curve.name)
    return type(public).__name__.removesuffix("PublicKey")


_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


def subject_of(cert: x509.Certificate) -> tuple[tuple[str, str], ...]:
    return tuple((_SUBJECT_NAMES.get(a.oid, a.oid.dotted_string), str(a.value)) for a in cert.subject)


_SUBJECT_NAMES = {v: k for k, v in _SUBJECT_OIDS.items()}


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


def ocsp_urls_of(cert: x509.Certificate) -> list[str]:
    """The OCSP responder URLs of a certificate's authorityInfoAccess, as CockroachDB reads them."""
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return []
    return [
        str(d.access_location.value)
        for d in aia
        if d.access_method == AuthorityInformationAccessOID.OCSP
        and isinstance(d.access_location, x509.UniformResourceIdentifier)
    ]


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    # A run checks each signature up to three times (is it fresh, the audit, its chain) and each copy of
    # a CA's self-signature once per certs directory: a signature that verified is remembered by the
    # two certificates' digests (64 bytes each, issue 16). Failures are not: they are rare and reported.
    pair = (cert.fingerprint(_SHA256), _ca_fingerprint(ca))
    if pair in _verified:
        return True
    try:
        cert.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):  # wrong signature, issuer name or key type
        return False
    _verified.add(pair)
    return True


_SHA256 = hashes.SHA256()
_verified: set[tuple[bytes, bytes]] = set()


@functools.lru_cache(maxsize=16)
def _ca_fingerprint(ca: x509.Certificate) -> bytes:
    """The digest of a CA certificate, which signed_by asks for once per leaf it signed (8 µs each)."""
    return ca.fingerprint(_SHA256)


def chain_break(certs: list[x509.Certificate]) -> int | None:
    """Where a CA file given as a chain (the CA first, then each issuer, the self-signed root last) stops
    being one: the index of the first certificate not signed by the next, or of a last one that is not
    self-signed. None for a whole chain."""
    for i, cert in enumerate(certs):
        if not signed_by(cert, certs[i + 1] if i + 1 < len(certs) else cert):
            return i
    return None


def unrooted(certs: list[x509.Certificate]) -> list[int]:
    """The certificates of a CA file (in any order; a rotation bundle holds two roots) whose issuers,
    followed inside the file, never reach a self-signed root: OpenSSL and libpq clients refuse them as
    trust anchors ("unable to get issuer certificate"), though Go accepts them."""
    found = []
    for i, cert in enumerate(certs):
        current, seen = cert, {i}
        while not signed_by(current, current):
            parent = next((j for j, c in enumerate(certs) if j not in seen and signed_by(current, c)), None)
            if parent is None:
                found.append(i)
                break
            seen.add(parent)
            current = certs[parent]
    return found


def problems(expect: Expect, root: Path, now: datetime | None = None) -> list[str]:
    """Every way the certificate at `expect.cert` differs from what was asked for ([] when it is right)."""
    now = now or datetime.now(UTC)
    # Joined as strings: pathlib's `/` costs more than the read it is for (issue 16: a check per node).
    folder = os.fspath(root)
    cert_path, key_path = os.path.join(folder, expect.cert), os.path.join(folder, expect.key)
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
    if expect.subject is not None and subject_of(cert) != expect.subject:
        found.append(f"{expect.cert}: subject {_dn(subject_of(cert))}, expected {_dn(expect.subject)}")
    dns, ips = sans_of(cert)
    # (The spec's addresses are in their canonical form already: canonicalized only when they differ.)
    same_ips = sorted(ips) == sorted(expect.ips) or sorted(ips) == sorted(_canonical_ips(expect.ips))
    if sorted(dns) != sorted(expect.dns) or not same_ips:
        found.append(
            f"{expect.cert}: SANs DNS={dns} IP={ips}, expected DNS={list(expect.dns)} IP={list(expect.ips)}"
        )
    if sorted(ekus_of(cert)) != sorted(expect.eku):
        found.append(f"{expect.cert}: extended key usage {ekus_of(cert)}, expected {list(expect.eku)}")
    if expect.key_kind is not None and key_kind_of(cert) != expect.key_kind:
        found.append(f"{expect.cert}: key {key_kind_of(cert)}, expected {expect.key_kind}")
    if is_ca(cert) != expect.is_ca:
        found.append(f"{expect.cert}: CA:{is_ca(cert)}, expected CA:{expect.is_ca}")
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        found.append(
            f"{expect.cert}: not valid now (valid {cert.not_valid_before_utc} to {cert.not_valid_after_utc})"
        )
    if expect.issuer is None:
        return found
    try:
        issuer = load_cert(os.path.join(folder, expect.issuer))
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
    if expect.ocsp_url:
        allowed.add(ExtensionOID.AUTHORITY_INFORMATION_ACCESS)
        ocsp = AuthorityInformationAccessOID.OCSP
        aia = [
            ("OCSP" if d.access_method == ocsp else d.access_method.dotted_string, d.access_location.value)
            for d in _aia(extensions)
        ]
        if aia != [("OCSP", expect.ocsp_url)]:
            shown = ",".join(f"{m};URI:{v}" for m, v in aia) or "none"
            found.append(f"{expect.cert}: authorityInfoAccess {shown}, expected OCSP;URI:{expect.ocsp_url}")
    if expect.responder:
        allowed.add(ExtensionOID.OCSP_NO_CHECK)
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


def _aia(extensions: x509.Extensions) -> list[x509.AccessDescription]:
    try:
        return list(extensions.get_extension_for_class(x509.AuthorityInformationAccess).value)
    except x509.ExtensionNotFound:
        return []


def _canonical_ips(ips: tuple[str, ...]) -> list[str]:
    return [str(ipaddress.ip_address(ip)) for ip in ips]


def _dn(subject: tuple[tuple[str, str], ...]) -> str:
    return ",".join(f"{k}={v}" for k, v in subject) or "(empty)"
