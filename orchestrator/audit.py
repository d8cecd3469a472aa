"""`crdb-certs audit`: a certs directory checked against CockroachDB's own rules, whoever made it.

The directory is first read as CockroachDB reads it (certsdir.py); every finding then says how bad it is
(error: CockroachDB refuses it or a connection will fail; warning: works today but is a risk or a date to
watch; info: worth knowing), which file, and a one-line fix. Reads only; never changes a file.

The rules live in auditing/, one module per topic beside the finding codes it emits; this module runs
them and reports. The output of `--format json` is described by audit.schema.json (shipped in the package).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from orchestrator import certsdir, crls, names
from orchestrator.auditing import chains, filenames, files, identity, keys, revocation, validity
from orchestrator.auditing.findings import SEVERITIES, Check, Finding, Severity, plural
from orchestrator.auditing.identity import principals as principals  # audit.principals, for probe.py
from orchestrator.certsdir import CertFile, Usage
from orchestrator.errors import ExitStatus, UserError

SCHEMA_VERSION = 1

# Every finding code, with what it means, as each group of rules declares it: the JSON schema's enum and
# description are this (a test keeps them equal).
CODES: dict[str, str] = {
    **filenames.CODES,
    **files.CODES,
    **keys.CODES,
    **chains.CODES,
    **identity.CODES,
    **validity.CODES,
    **revocation.CODES,
}


@dataclass(frozen=True)
class Report:
    directory: Path
    findings: tuple[Finding, ...]
    key_permission_check: bool

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def status(self) -> ExitStatus:
        return ExitStatus.FINDINGS if self.errors else ExitStatus.OK

    def as_json(self) -> dict[str, Any]:
        return {
            "version": SCHEMA_VERSION,
            "directory": str(self.directory),
            "ok": not self.errors,
            "key_permission_check": "enforced" if self.key_permission_check else "skipped",
            "summary": {s: self.count(s) for s in SEVERITIES},
            "findings": [f.as_dict() for f in self.findings],
        }

    def summary(self) -> str:
        e, w, i = (self.count(s) for s in SEVERITIES)
        return f"{self.directory}: {plural(e, 'error')}, {plural(w, 'warning')}, {plural(i, 'note')}"

    def text(self, severities: Iterable[Severity] = SEVERITIES) -> str:
        shown = set(severities)
        lines = [self.summary()]
        for f in self.findings:
            if f.severity in shown:
                lines.append(f"{f.severity:<8} {f.file or '.'}: {f.message}")
                lines.append(f"{'':<8} fix: {f.fix}")
        return "\n".join(lines)


class AuditFailed(UserError):
    """`issue` made a certs directory that the audit finds errors in."""

    status = ExitStatus.FINDINGS


def schema() -> dict[str, Any]:
    """The JSON schema of `audit --format json` (orchestrator/audit.schema.json)."""
    text = resources.files("orchestrator").joinpath("audit.schema.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def parse_principal_map(text: str | None) -> dict[str, str]:
    """--cert-principal-map as CockroachDB reads it: `a:b,c:d`, each split on its last colon."""
    mapping: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item:
            continue
        source, sep, target = item.rpartition(":")
        if not sep or not source or not target:
            raise UserError(
                f"--cert-principal-map: invalid <cert-principal>:<db-principal> mapping: {item!r}"
            )
        mapping[source] = target
    return mapping


def audit(
    directory: Path,
    env: Mapping[str, str] | None = None,
    now: datetime | None = None,
    principal_map: Mapping[str, str] | None = None,
    process_gid: int | None = None,
    crl: Path | None = None,
) -> Report:
    """Every finding for the certs directory `directory` (UserError when it is not a directory), judged
    against the folder's CRLs (crls.find: `crl`, or the output folder's crl/)."""
    found = certsdir.read(directory, env, process_gid)
    check = Check(found, now or datetime.now(UTC), dict(principal_map or {}), CODES)
    _run(check, crls.find(directory, crl))
    order = {s: i for i, s in enumerate(SEVERITIES)}
    findings = sorted(check.findings, key=lambda f: (order[f.severity], f.file or "", f.code))
    return Report(directory, tuple(findings), not found.skip_permission_check)


def _run(check: Check, found_crls: list[crls.CRL]) -> None:
    """Every rule, in an order that reads like CockroachDB's own checks: its environment, the names it
    loads, each certificate with its key, then what each certificate says, then the directory."""
    keys.environment(check)
    filenames.bad_names(check)
    files.subdirectories(check)
    chains.ca_missing(check)
    usable = [c for c in check.dir.certs if filenames.usable(check, c)]
    for cert in usable:
        keys.loaded(check, cert)
        keys.matches(check, cert)
    for cert in usable:
        if cert.leaf is not None:
            _content(check, cert)
    chains.layout(check)
    revocation.revocation(check, found_crls)
    validity.serials(check)
    files.other_files(check)
    files.permissions(check)


def _content(check: Check, cert: CertFile) -> None:
    """What one certificate file says: every certificate of a CA file, or a leaf with its role's needs."""
    if cert.usage.is_ca:
        for i, one in enumerate(cert.certs):
            validity.dates(check, cert.name, one, bundled=i > 0)
            validity.strength(check, cert.name, one)
            chains.constraints(check, cert.name, one, i)
        chains.rooted(check, cert)
        return
    leaf = cert.leaf
    assert leaf is not None
    validity.dates(check, cert.name, leaf, bundled=False)
    validity.strength(check, cert.name, leaf)
    chains.leaf_is_ca(check, cert, leaf)
    identity.eku(check, cert, leaf)
    if cert.usage in (Usage.NODE, Usage.UI):
        identity.sans(check, cert, leaf)
    if cert.usage is Usage.NODE and check.dir.get(names.client_cert(names.NODE_USER)) is None:
        identity.node_identity(check, cert, leaf)
    if cert.usage is Usage.CLIENT:
        identity.client_identity(check, cert, leaf)
    chains.chain(check, cert)
