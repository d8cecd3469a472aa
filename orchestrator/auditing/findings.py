"""What every audit rule shares: a finding, and the Check a rule reads the directory from and adds its
findings to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from orchestrator.certsdir import CertsDir
from orchestrator.errors import printable

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")
_DAY_FORMAT = "%Y-%m-%d"


@dataclass(frozen=True)
class Finding:
    severity: Severity
    code: str
    file: str | None  # a name in the directory; None for the directory as a whole
    message: str
    fix: str

    def as_dict(self) -> dict[str, str | None]:
        return {
            "severity": self.severity,
            "code": self.code,
            "file": self.file,
            "message": self.message,
            "fix": self.fix,
        }


@dataclass
class Check:
    """One audit: the directory as CockroachDB reads it, the moment and --cert-principal-map it is judged
    with, the codes a rule may emit (every group's CODES), and the findings so far."""

    dir: CertsDir
    now: datetime
    principal_map: dict[str, str]
    codes: Mapping[str, str]
    findings: list[Finding] = field(default_factory=list)

    def add(self, severity: Severity, code: str, file: str | None, message: str, fix: str) -> None:
        assert code in self.codes, code
        shown = None if file is None else printable(file)  # a name that is not UTF-8 is still reported
        self.findings.append(Finding(severity, code, shown, printable(message), printable(fix)))

    def path(self, name: str) -> str:
        return str(self.dir.path / name)


def when(moment: datetime) -> str:
    return moment.strftime(_DAY_FORMAT)


def plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def serial_hex(serial: int) -> str:
    """As openssl prints a serial: upper-case hex, an even number of digits."""
    text = f"{serial:X}"
    return text.rjust(len(text) + len(text) % 2, "0")
