"""Audit rules on revocation: a certificate the folder's CRL revokes, and OCSP responders that differ
between the certificates of one directory (CockroachDB asks each certificate's own)."""

from __future__ import annotations

from orchestrator import crls
from orchestrator.auditing.findings import Check, serial_hex, when
from orchestrator.certcheck import ocsp_urls_of

CODES: dict[str, str] = {
    "revoked": "a certificate revoked in the folder's CRL (crl/*.crl, or --crl)",
    "ocsp-url-differs": "certificates of one directory that name different OCSP responders (or none)",
}


def revocation(check: Check, found_crls: list[crls.CRL]) -> None:
    """Certificates revoked in the folder's CRL, and OCSP responders that differ between certificates
    (CockroachDB asks each certificate's own: one wrong URL locks that certificate out in `strict`)."""
    cas = [c for f in check.dir.certs if f.usage.is_ca for c in f.certs]
    urls: dict[str, str] = {}
    for cert in check.dir.certs:
        leaf = cert.leaf
        if cert.usage.is_ca or leaf is None:
            continue
        urls[cert.name] = ",".join(ocsp_urls_of(leaf)) or "none"
        found = crls.revoked(leaf, found_crls, cas)
        if found is not None:
            check.add(
                "error",
                "revoked",
                cert.name,
                f"revoked {when(found.when)} ({found.reason}) in {found.crl}: PostgreSQL with"
                " ssl_crl_file and CockroachDB with security.ocsp.mode refuse it",
                "take it out of this directory (`crdb-certs revoke --serial"
                f" {serial_hex(leaf.serial_number)}` does); `crdb-certs issue` makes a new one",
            )
    if len(set(urls.values())) > 1:
        shown = "; ".join(f"{name}: {url}" for name, url in sorted(urls.items()))
        check.add(
            "warning",
            "ocsp-url-differs",
            None,
            f"the certificates name different OCSP responders ({shown}): with security.ocsp.mode ="
            " strict, one that is wrong or missing locks its certificate out",
            "set one [ocsp] url in the spec and `crdb-certs issue --reissue`",
        )
