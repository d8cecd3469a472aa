"""Checks of certificates and keys that come from elsewhere (a public or organizational CA), made when
the spec is loaded: nothing is installed or signed with them unless every check passes."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509

from orchestrator.certcheck import (
    ekus_of,
    is_ca,
    load_cert,
    load_certs,
    load_key,
    public_bytes,
    sans_of,
    signed_by,
    subject_of,
)
from orchestrator.errors import SpecError

if TYPE_CHECKING:
    from orchestrator.plan import Plan
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


def check_returned(full: Plan, returned: Path, out: Path) -> dict[str, str]:
    """The certificates an outside CA signed for `crdb-certs csr`'s requests, in folder `returned`:
    <request name>.crt for each request, and the CA certificate(s) as ca.crt (ca-client.crt, ca-ui.crt).
    Each must answer its request (same key), chain to its CA, name the right principal and cover the
    right hosts with the right usages. Returns CA name / task id -> file for plan.build_import."""
    found: dict[str, str] = {}
    cas: dict[str, list[x509.Certificate]] = {}
    from orchestrator.plan import request_of, signers  # plan imports spec, which imports this module

    for ca in signers(full.spec).all:
        path = returned / f"{ca.name}.crt"
        if not path.is_file():
            raise SpecError("import", str(returned), f"has no {ca.name}.crt (the CA certificate to trust)")
        try:
            cas[ca.cert] = load_certs(path)
        except ValueError:
            raise SpecError("import", str(path), "is not a PEM certificate") from None
        found[ca.name] = str(path)
    for task in full.tasks:
        expect = task.expect
        if expect is None or task.signer is None:
            continue
        csr_path = out / request_of(task)
        path = returned / (Path(csr_path).stem + ".crt")
        field = f"import {path.name}"
        if not path.is_file():
            raise SpecError(
                "import", str(returned), f"has no {path.name} (the certificate for {csr_path.name})"
            )
        cert = _cert(field, path)
        try:
            request = x509.load_pem_x509_csr(csr_path.read_bytes())
        except (OSError, ValueError):
            raise SpecError(
                field, str(csr_path), "is missing or not a CSR: run `crdb-certs csr` first"
            ) from None
        if public_bytes(request) != public_bytes(cert):
            raise SpecError(field, str(path), f"does not answer {csr_path.name} (another key)")
        _valid_now(field, path, cert)
        if not any(signed_by(cert, ca) for ca in cas[expect.issuer or ""]):
            raise SpecError(field, str(path), f"is not signed by {Path(expect.issuer or '').name}")
        cn = dict(subject_of(cert)).get("CN")
        want_cn = dict(expect.subject).get("CN")
        if want_cn and cn != want_cn:
            raise SpecError(field, str(path), f"has CN={cn}, CockroachDB needs CN={want_cn}")
        dns, ips = sans_of(cert)
        for host in (*expect.dns, *expect.ips):
            if not _covered(host, dns, ips):
                raise SpecError(field, str(path), f"has no SAN for {host}")
        missing = set(expect.eku) - set(ekus_of(cert))
        if missing:
            raise SpecError(field, str(path), "lacks extended key usage " + ", ".join(sorted(missing)))
        found[task.id] = str(path)
    return found
