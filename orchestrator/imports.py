"""Checks of certificates and keys that come from elsewhere (a public or organizational CA), made when
the spec is loaded: nothing is installed or signed with them unless every check passes."""

from __future__ import annotations

import ipaddress
import stat
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from orchestrator.cas import signers
from orchestrator.certcheck import (
    Expect,
    chain_break,
    ekus_of,
    is_ca,
    load_cert,
    load_certs,
    load_key,
    ocsp_urls_of,
    public_bytes,
    sans_of,
    signed_by,
    subject_of,
)
from orchestrator.errors import Findings, SpecError, UserError
from orchestrator.handoff import request_of
from orchestrator.spec import UI, Spec
from orchestrator.steps import Plan


def check_files(spec: Spec, ui: bool = True) -> None:
    """The files the spec names from elsewhere (your own CA, an imported UI certificate), checked before a
    command uses them; loading a spec reads none of them, so `plan` and `render` work without them.
    `ui`: the command may copy the imported UI files (renew and rotate-ca use only the CA)."""
    if spec.ca is not None:
        _exists("ca.cert", spec.ca.cert)
        _exists("ca.key", spec.ca.key)
        check_private(spec.ca.key, "ca.key")
        check_ca(spec.ca.cert, spec.ca.key)
    if ui and spec.ui is not None and spec.ui.issuer == "import":
        check_ui(spec.ui)


def _exists(field: str, path: Path) -> None:
    if not path.is_file():  # moved, unplugged, or not a regular file (a FIFO would block its read)
        raise SpecError(field, str(path), "is not an existing file")


def check_ui(ui: UI) -> None:
    assert ui.cert is not None and ui.key is not None
    _exists("ui.cert", ui.cert)
    _exists("ui.key", ui.key)
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


def check_private(key: Path, field: str | None = None) -> None:
    """A key crdb-certs signs with must be its owner's alone (as certstrap re-checks a key's mode on read):
    one that others can read may be theirs already. `field`: the spec key that names it."""
    mode = stat.S_IMODE(key.stat().st_mode)
    if not mode & 0o077:
        return
    if field:
        raise SpecError(field, str(key), f"is readable by others (mode {mode:04o}); chmod 400 it")
    raise UserError(f"{key}: readable by others (mode {mode:04o}); `chmod 400` it, then run again")


def check_ca(cert_path: Path, key_path: Path) -> tuple[tuple[str, str], ...]:
    """A CA to sign with: the key matches, CA:TRUE, keyCertSign, valid now, and the file is the chain up
    to a self-signed root (the CA first), so that ca.crt holds what OpenSSL and libpq clients need.
    Returns its subject."""
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
    problem = _chain_problem(load_certs(cert_path))
    if problem:
        raise SpecError("ca.cert", str(cert_path), problem)
    return subject_of(cert)


def _chain_problem(certs: list[x509.Certificate]) -> str | None:
    """Why a CA file is not the chain from its CA up to a self-signed root (None when it is): libpq and
    OpenSSL clients given an intermediate alone (sslrootcert=ca.crt) fail "unable to get issuer
    certificate", while Go, and so CockroachDB itself, accept it."""
    broken = chain_break(certs)
    if broken is None:
        not_ca = [i for i, c in enumerate(certs) if not is_ca(c)]
        return f"holds certificate #{not_ca[0]}, which is not a CA" if not_ca else None
    cn = dict(subject_of(certs[broken])).get("CN", "?")
    if broken == len(certs) - 1:
        return (
            f"ends in {cn}, which is not a self-signed root: append its issuer's certificate, and so on up to"
            " the root (OpenSSL and libpq clients refuse a ca.crt without its root)"
        )
    return (
        f"is not one chain: certificate #{broken} ({cn}) is not signed by the next one; give the CA first,"
        " then each issuer, the self-signed root last"
    )


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
    Each must answer its request (same key), chain to its CA, name the right principal, cover the right
    hosts with the right usages, and be a leaf: all read from the plan's expectations, as the sheet
    `csr` writes (plan.requests_sheet). Every problem is found before any is reported (Findings).
    Returns CA name / task id -> file for plan.build_import."""
    found: dict[str, str] = {}
    cas: dict[str, list[x509.Certificate]] = {}
    problems: list[str] = []

    for ca in signers(full.spec).all:
        path = returned / f"{ca.name}.crt"
        if not path.is_file():
            problems.append(_line("import", returned, f"has no {ca.name}.crt (the CA certificate to trust)"))
            continue
        try:
            cas[ca.cert] = load_certs(path)
        except ValueError:
            problems.append(_line(f"import {ca.name}.crt", path, "is not a PEM certificate"))
            continue
        chain = _chain_problem(cas[ca.cert])
        if chain:
            problems.append(_line(f"import {ca.name}.crt", path, chain))
        found[ca.name] = str(path)
    for task in full.tasks:
        expect = task.expect
        if expect is None or task.signer is None:
            continue
        csr_path = out / request_of(task)
        try:
            request = x509.load_pem_x509_csr(csr_path.read_bytes())
        except (OSError, ValueError):
            raise SpecError(
                "import", str(csr_path), "is missing or not a CSR: run `crdb-certs csr` first"
            ) from None
        path = returned / (csr_path.stem + ".crt")
        if not path.is_file():
            what = f"has no {path.name} (the certificate for {csr_path.name})"
            problems.append(_line("import", returned, what))
            continue
        try:
            cert = load_cert(path)
        except (OSError, ValueError):
            problems.append(_line(f"import {path.name}", path, "is not a PEM certificate"))
            continue
        try:
            wrong = _leaf_problems(cert, request, csr_path.name, expect, cas.get(expect.issuer or ""))
        except (ValueError, x509.DuplicateExtension) as e:
            wrong = [f"has extensions that cannot be read ({e})"]
        problems += [_line(f"import {path.name}", path, reason) for reason in wrong]
        found[task.id] = str(path)
    if problems:
        raise Findings(problems)
    return found


def _line(field: str, path: Path, reason: str) -> str:
    return str(SpecError(field, str(path), reason))


def _leaf_problems(
    cert: x509.Certificate,
    request: x509.CertificateSigningRequest,
    request_name: str,
    expect: Expect,
    cas: list[x509.Certificate] | None,
) -> list[str]:
    """Every way a returned certificate differs from what its request needs (expect)."""
    if public_bytes(request) != public_bytes(cert):
        return [f"does not answer {request_name} (another key)"]  # another request's: nothing more to say
    found = []
    now = datetime.now(UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        found.append(
            f"is not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d %H:%M} to"
            f" {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC)"
        )
    if cas is not None and not any(signed_by(cert, ca) for ca in cas):
        found.append(f"is not signed by {Path(expect.issuer or '').name}")
    cn, want_cn = dict(subject_of(cert)).get("CN"), dict(expect.subject or ()).get("CN")
    if want_cn and cn != want_cn:
        found.append(f"has CN={cn}, CockroachDB needs CN={want_cn}")
    dns, ips = sans_of(cert)
    found += [f"has no SAN for {host}" for host in (*expect.dns, *expect.ips) if not _covered(host, dns, ips)]
    missing = set(expect.needed_eku) - set(ekus_of(cert))
    if missing:
        found.append("lacks extended key usage " + ", ".join(sorted(missing)))
    # A leaf that may sign certificates hands whoever holds its key (every node) a CA.
    if is_ca(cert):
        found.append("is a CA certificate (basicConstraints CA:TRUE); a node or client certificate is not")
    try:
        usage: x509.KeyUsage | None = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None  # no keyUsage: any use, as RFC 5280 and Go read it
    if usage is not None and (usage.key_cert_sign or usage.crl_sign):
        found.append("has keyUsage keyCertSign or cRLSign: a leaf must not sign certificates or CRLs")
    if expect.ocsp_url and ocsp_urls_of(cert) != [expect.ocsp_url]:
        found.append(f"lacks authorityInfoAccess OCSP;URI:{expect.ocsp_url} (the spec's [ocsp] url)")
    if usage is not None and not usage.digital_signature:
        found.append("lacks keyUsage digitalSignature, which a TLS handshake needs")
    return found
