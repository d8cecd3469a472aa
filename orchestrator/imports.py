"""Checks of certificates and keys that come from elsewhere (a public or organizational CA), made when
the spec is loaded: nothing is installed or signed with them unless every check passes."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509

from orchestrator.certcheck import ekus_of, is_ca, load_cert, load_key, public_bytes, sans_of, subject_of
from orchestrator.errors import SpecError

if TYPE_CHECKING:
    from orchestrator.spec import UI


def check_ui(ui: UI) -> None:
    assert ui.cert is not None and ui.key is not None
    cert = _cert("ui.cert", ui.cert)
    _key_matches("ui.key", ui.key, cert)
    _valid_now("ui.cert", ui.cert, cert)
    if "serverAuth" not in ekus_of(cert):
        raise SpecError(
            "ui.cert", str(ui.cert), "has no serverAuth extended key usage: browsers would refuse it"
        )
    dns, ips = sans_of(cert)
    for host in ui.hosts:
        if not _covered(host, dns, ips):
            raise SpecError("ui.cert", str(ui.cert), f"has no SAN for {host} (listed in ui.hosts)")


def check_ca(cert_path: Path, key_path: Path) -> tuple[tuple[str, str], ...]:
    """A CA to sign with: the key matches, CA:TRUE, keyCertSign, valid now. Returns its subject."""
    cert = _cert("ca.cert", cert_path)
    _key_matches("ca.key", key_path, cert)
    _valid_now("ca.cert", cert_path, cert)
    if not is_ca(cert):
        raise SpecError(
            "ca.cert", str(cert_path), "is not a CA certificate (basicConstraints CA:TRUE missing)"
        )
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.key_cert_sign:
        raise SpecError("ca.cert", str(cert_path), "may not sign certificates (keyUsage lacks keyCertSign)")
    return subject_of(cert)


def _cert(field: str, path: Path) -> x509.Certificate:
    try:
        return load_cert(path)
    except (OSError, ValueError):
        raise SpecError(field, str(path), "is not a PEM certificate") from None


def _key_matches(field: str, path: Path, cert: x509.Certificate) -> None:
    try:
        key = load_key(path)
    except (OSError, ValueError, TypeError):
        raise SpecError(field, str(path), "is not an unencrypted PEM private key") from None
    if public_bytes(key) != public_bytes(cert):
        raise SpecError(field, str(path), "does not match the certificate")


def _valid_now(field: str, path: Path, cert: x509.Certificate) -> None:
    now = datetime.now(UTC)
    if now < cert.not_valid_before_utc:
        raise SpecError(
            field, str(path), f"is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        )
    if now > cert.not_valid_after_utc:
        raise SpecError(field, str(path), f"expired on {cert.not_valid_after_utc:%Y-%m-%d} UTC")


def _covered(host: str, dns: list[str], ips: list[str]) -> bool:
    try:
        return str(ipaddress.ip_address(host)) in ips
    except ValueError:
        pass
    names = [d.lower().rstrip(".") for d in dns]
    if host in names:
        return True
    # A wildcard covers exactly one left-most label.
    first, _, rest = host.partition(".")
    return bool(rest) and f"*.{rest}" in names and first != "*"
