"""Audit rules on file names: which .crt names CockroachDB's loader recognises, and which client.<user>
names it can ever look up."""

from __future__ import annotations

from orchestrator import names, validate
from orchestrator.auditing.findings import Check
from orchestrator.certsdir import CertFile, Usage
from orchestrator.errors import SpecError

CODES: dict[str, str] = {
    "name-ignored": "a .crt file CockroachDB skips: unknown prefix or malformed name",
    "name-tenant-id": "a tenant certificate whose id is not a number: the whole load fails",
    "name-user-case": "client.<user>.crt whose user is not normalized: it can never be used",
    "name-user-invalid": "client.<user>.crt whose user is not a valid CockroachDB user name",
}


def bad_names(check: Check) -> None:
    for bad in check.dir.bad_names:
        if bad.fatal:
            check.add(
                "error",
                "name-tenant-id",
                bad.name,
                f"{bad.reason}: CockroachDB refuses to load the whole certs directory",
                f"rename it to a numeric tenant id, or move {bad.name} out of the directory",
            )
        else:
            check.add(
                "warning",
                "name-ignored",
                bad.name,
                f"CockroachDB ignores it (bad filename: {bad.reason})",
                "rename it to ca.crt, ca-client.crt, ca-ui.crt, node.crt, ui.crt or client.<user>.crt,"
                " or move it out of the directory",
            )


def usable(check: Check, cert: CertFile) -> bool:
    """A client.<user>.crt whose user CockroachDB can look up; reports it when it cannot."""
    if cert.usage is not Usage.CLIENT:
        return True
    try:
        normalized = validate.user("user", cert.suffix)
    except SpecError as e:
        if cert.suffix.lower() != cert.suffix:
            return _not_normalized(check, cert, cert.suffix.lower())
        check.add(
            "warning",
            "name-user-invalid",
            cert.name,
            f"user {cert.suffix!r} {e.reason}: it works only with a server-side identity map",
            "use a valid user name (lower-case letters, digits, _ first; then also - and .)",
        )
        return True
    if normalized != cert.suffix:
        return _not_normalized(check, cert, normalized)
    return True


def _not_normalized(check: Check, cert: CertFile, normalized: str) -> bool:
    check.add(
        "error",
        "name-user-case",
        cert.name,
        f"registers user {cert.suffix!r}, which never matches: CockroachDB looks up the normalized"
        f" name {normalized!r}",
        f"rename it (and its key) to {names.client_cert(normalized)} / {names.client_key(normalized)}",
    )
    return False
