"""Audit rules on dates and strength: certificates expired, not yet valid or expiring soon, keys and
signatures weaker than Go accepts, serials that do not identify a certificate."""

from __future__ import annotations

from datetime import timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa

from orchestrator.auditing.findings import Check, plural, serial_hex, when

CODES: dict[str, str] = {
    "expired": "a certificate past its end date",
    "not-yet-valid": "a certificate before its start date",
    "expires-soon": "a certificate that expires within 30 days",
    "weak-key": "an RSA key under 2048 bits (or another weak key)",
    "weak-signature": "a SHA-1 or MD5 signature",
    "serial-reused": "two different certificates with the same issuer and serial number",
}

EXPIRY_WARNING = timedelta(days=30)
MIN_RSA_BITS = 2048
MIN_EC_BITS = 256
_WEAK_HASHES = (hashes.SHA1, hashes.MD5)


def dates(check: Check, name: str, cert: x509.Certificate, bundled: bool) -> None:
    """`cert` is in the file `name`; `bundled`: one of a CA bundle's further certificates."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    which = f"certificate #{_index_of(check, cert, name)} in {name}" if bundled else name
    if check.now < start:
        check.add(
            "error",
            "not-yet-valid",
            name,
            f"{which} is not valid before {when(start)}",
            "check this machine's clock, or reissue the certificate",
        )
    elif check.now > end:
        check.add(
            "warning" if bundled else "error",
            "expired",
            name,
            f"{which} expired on {when(end)}",
            "remove the expired CA from the bundle" if bundled else f"reissue {name}",
        )
    elif end - check.now < EXPIRY_WARNING:
        days = (end - check.now).days
        check.add(
            "warning",
            "expires-soon",
            name,
            f"{which} expires on {when(end)} (in {plural(days, 'day')})",
            f"renew {name} before {when(end)}",
        )


def strength(check: Check, name: str, cert: x509.Certificate) -> None:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return
    weak = None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        weak = f"an RSA key of {key.key_size} bits (at least {MIN_RSA_BITS} needed)"
    elif isinstance(key, dsa.DSAPublicKey):
        weak = "a DSA key (Go's TLS does not accept DSA)"
    elif isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size < MIN_EC_BITS:
        weak = f"an EC key on {key.curve.name}"
    if weak:
        check.add("error", "weak-key", name, f"has {weak}", f"reissue {name} with a 2048-bit (or larger) key")
    if cert.issuer == cert.subject:
        return  # a root's own signature is not checked by anyone
    algorithm = weak_signature(cert)
    if algorithm:
        check.add(
            "error",
            "weak-signature",
            name,
            f"is signed with {algorithm}: Go (and so CockroachDB) rejects such signatures",
            f"reissue {name} with SHA-256 (openssl: default_md = sha256)",
        )


def weak_signature(cert: x509.Certificate) -> str | None:
    """The name of `cert`'s signature hash when Go refuses it (SHA1, MD5)."""
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return None
    return algorithm.name.upper() if isinstance(algorithm, _WEAK_HASHES) else None


def serials(check: Check) -> None:
    # What must be unique is issuer + serial (RFC 5280; a CRL names a serial of its issuer): two CAs
    # (ca.crt and ca-client.crt, each counting from 01 in the docs' recipe) may well use the same one.
    seen: dict[tuple[bytes, int], list[tuple[str, x509.Certificate]]] = {}
    for cert in check.dir.certs:
        for one in cert.certs:
            seen.setdefault((one.issuer.public_bytes(), one.serial_number), []).append((cert.name, one))
    for (_, serial), holders in sorted(seen.items(), key=lambda item: item[0][1]):
        distinct = {c.fingerprint(hashes.SHA256()): (n, c) for n, c in holders}
        if len(distinct) < 2:
            continue
        files = sorted({n for n, _ in distinct.values()})
        check.add(
            "warning",
            "serial-reused",
            files[0],
            f"serial {serial_hex(serial)} is used by {len(distinct)} different certificates from the same"
            f" issuer ({', '.join(files)}): serials must identify a certificate (revocation, audit logs)",
            "issue with random serials (crdb-certs' secure profile, cockroach cert), not serial.txt = 01",
        )


def _index_of(check: Check, cert: x509.Certificate, name: str) -> int:
    holder = check.dir.get(name)
    return holder.certs.index(cert) if holder else 0
