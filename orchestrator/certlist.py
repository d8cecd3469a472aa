"""`crdb-certs list`: the table `cockroach cert list` prints (pkg/cli/cert.go, runListCerts), plus the
days each certificate has left. Built from the same reading of the directory as the audit (certsdir.py)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID
from rich import box
from rich.table import Table

from orchestrator import crls, duration, names
from orchestrator.certcheck import sans_of
from orchestrator.certsdir import CertFile, Usage
from orchestrator.certsdir import read as read_dir

# `cockroach cert list` shows these usages, in this order (tenant certificates are not listed).
LISTED = (Usage.CA, Usage.CLIENT_CA, Usage.UI_CA, Usage.NODE, Usage.UI, Usage.CLIENT)
HEADERS = ("Usage", "Certificate File", "Key File", "Expires", "Days Left", "Status", "Notes", "Error")


@dataclass(frozen=True)
class Row:
    usage: str
    certificate_file: str
    key_file: str
    expires: datetime | None  # NotAfter of the first certificate in the file
    days_left: int | None
    notes: str
    error: str
    status: str = ""  # valid | revoked (in the folder's CRL) | expired; "" when it cannot be read

    def cells(self) -> tuple[str, ...]:
        expires = self.expires.strftime("%Y/%m/%d") if self.expires else ""
        days = "" if self.days_left is None else str(self.days_left)
        return (
            self.usage,
            self.certificate_file,
            self.key_file,
            expires,
            days,
            self.status,
            self.notes,
            self.error,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "usage": self.usage,
            "certificate_file": self.certificate_file,
            "key_file": self.key_file or None,
            "expires": self.expires.isoformat() if self.expires else None,
            "days_left": self.days_left,
            "status": self.status or None,
            "notes": self.notes,
            "error": self.error or None,
        }


@dataclass(frozen=True)
class Listing:
    directory: Path
    rows: tuple[Row, ...]
    fatal: str | None  # CockroachDB would refuse the whole directory: `cannot load certificates`

    def table(self) -> Table:
        table = Table(*HEADERS, box=box.SIMPLE_HEAD, title=f"Certificate directory: {self.directory}")
        for row in self.rows:
            table.add_row(*row.cells())
        table.caption = f"({len(self.rows)} row{'' if len(self.rows) == 1 else 's'})"
        return table

    def plain(self) -> str:
        """The table for a pipe or a file: one line per row, columns separated by a tab, never padded
        (`cut -f2`, `awk -F'\\t'` read it); a tab or a line break inside a cell is shown escaped."""
        lines = [f"Certificate directory: {_one_line(str(self.directory))}", "\t".join(HEADERS)]
        lines += ["\t".join(_one_line(cell) for cell in row.cells()) for row in self.rows]
        lines.append(f"({len(self.rows)} row{'' if len(self.rows) == 1 else 's'})")
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "certificates": [r.as_dict() for r in self.rows],
            "error": self.fatal,
        }


def _one_line(cell: str) -> str:
    return cell.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def listing(directory: Path, now: datetime | None = None, crl: Path | None = None) -> Listing:
    now = now or datetime.now(UTC)
    found = read_dir(directory)
    revocations = crls.find(directory, crl)
    cas = [c for f in found.certs if f.usage.is_ca for c in f.certs]
    rows = [
        replace(_row(c, now), status=_status(c, now, revocations, cas))
        for usage in LISTED
        for c in found.by_usage(usage)
    ]
    fatal = f"cannot load certificates: {found.fatal}" if found.fatal else None
    return Listing(directory, tuple(rows), fatal)


def _status(cert: CertFile, now: datetime, revocations: list[crls.CRL], cas: list[x509.Certificate]) -> str:
    leaf = cert.leaf
    if leaf is None:
        return ""
    if not cert.usage.is_ca and crls.revoked(leaf, revocations, cas) is not None:
        return "revoked"
    return "expired" if leaf.not_valid_after_utc < now else "valid"


def _row(cert: CertFile, now: datetime) -> Row:
    leaf = cert.leaf
    expires = leaf.not_valid_after_utc if leaf else None
    days = duration.whole_days(expires - now) if expires else None
    if cert.usage.is_ca:
        notes = f"num certs: {len(cert.certs)}"
    elif leaf is None:
        notes = "<unknown>"
    elif cert.usage in (Usage.NODE, Usage.UI):
        dns, ips = sans_of(leaf)
        notes = "addresses: " + ",".join(dns + ips)
    else:
        cns = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        notes = "user: " + (str(cns[-1].value) if cns else "")
    key = "" if cert.usage.is_ca else names.key_for(cert.name)
    return Row(cert.usage.value, cert.name, key, expires, days, notes, cert.error or "")
