"""The CRLs a certs directory is judged against (`audit`, `list`): the folder's crl/*.crl, which
`crdb-certs revoke` and `crdb-certs crl` write, found from certs/ (../crl/) or from nodes/<name>/
(../../crl/); or a file given with --crl. A CRL counts only when a CA of the directory signed it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from orchestrator import names
from orchestrator.errors import SpecError


@dataclass(frozen=True)
class Revoked:
    crl: Path
    when: datetime
    reason: str  # "keyCompromise", ... ("unspecified" when the CRL gives none)


@dataclass(frozen=True)
class CRL:
    path: Path
    crl: x509.CertificateRevocationList


def find(directory: Path, given: Path | None = None) -> list[CRL]:
    """The CRLs for `directory`: `given` (--crl, refused with one line when it is not a CRL), else every
    *.crl in the output folder's crl/ beside it."""
    if given is not None:
        try:
            return [CRL(given, x509.load_pem_x509_crl(given.read_bytes()))]
        except (OSError, ValueError):
            raise SpecError("--crl", str(given), "is not a readable PEM CRL") from None
    found = []
    for folder in map(Path, names.crl_folders(str(directory.resolve()))):
        for path in sorted(folder.glob("*.crl")) if folder.is_dir() else []:
            try:
                found.append(CRL(path, x509.load_pem_x509_crl(path.read_bytes())))
            except (OSError, ValueError):
                continue  # not ours to judge: the audit is about the certs directory
    return found


def revoked(cert: x509.Certificate, crls: list[CRL], cas: list[x509.Certificate]) -> Revoked | None:
    """Where `cert` is revoked, by a CRL that one of `cas` (its possible issuers) signed."""
    for one in crls:
        if one.crl.issuer != cert.issuer or not any(_signed(one.crl, ca) for ca in cas):
            continue
        entry = one.crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is None:
            continue
        try:
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
            named = _REASONS.get(reason.value, reason.value)
        except x509.ExtensionNotFound:
            named = "unspecified"
        return Revoked(one.path, entry.revocation_date_utc, named)
    return None


def _signed(crl: x509.CertificateRevocationList, ca: x509.Certificate) -> bool:
    try:
        return ca.subject == crl.issuer and crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError, UnsupportedAlgorithm):
        return False


# cryptography's ReasonFlags values that openssl (and `crdb-certs revoke --reason`) spell otherwise.
_REASONS = {"cACompromise": "CACompromise", "aACompromise": "AACompromise"}
