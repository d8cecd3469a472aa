"""`check --format json|prometheus` and `export alert-rules`: certificate expiry in the forms monitoring
systems read.

prometheus: the text exposition format, as node_exporter's textfile collector reads it from a `*.prom`
file. One gauge sample per certificate (every certificate of a CA bundle, told apart by `index`), so that
alerts keep working from the last file written even if `check` stops running: they compare the expiry
with the time at evaluation, and a separate alert says when the file has gone stale.

json: the same data, described by check.schema.json (shipped in the package).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from orchestrator.lifecycle import Seen

EXPIRY = "crdb_certs_expiry_timestamp_seconds"
CHECKED = "crdb_certs_check_timestamp_seconds"
ERRORS = "crdb_certs_check_errors"
ALERT_RULES = "alert-rules.yml"


def prometheus(seen: list[Seen], problems: list[str], now: datetime) -> str:
    """The text exposition format: HELP and TYPE, then the samples."""
    lines = [
        f"# HELP {EXPIRY} When the certificate expires (its notAfter), in seconds since the epoch.",
        f"# TYPE {EXPIRY} gauge",
    ]
    for one in seen:
        if one.not_after is None:
            continue  # counted in crdb_certs_check_errors
        labels = {
            "path": _text(one.folder.resolve()),
            "file": one.file,
            "index": str(one.index),
            "usage": one.usage,
            "principal": one.principal,
        }
        shown = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        lines.append(f"{EXPIRY}{{{shown}}} {int(one.not_after.timestamp())}")
    lines += [
        f"# HELP {CHECKED} When crdb-certs check wrote these samples, in seconds since the epoch.",
        f"# TYPE {CHECKED} gauge",
        f"{CHECKED} {int(now.timestamp())}",
        f"# HELP {ERRORS} Certificate files that could not be read, and CA rotations left half done"
        " (`crdb-certs check PATH` names each).",
        f"# TYPE {ERRORS} gauge",
        f"{ERRORS} {sum(one.not_after is None for one in seen) + len(problems)}",
    ]
    return "\n".join(lines) + "\n"


def as_json(
    target: Path, seen: list[Seen], problems: list[str], now: datetime, within: timedelta
) -> dict[str, Any]:
    """`check --format json`: every certificate, whether it expires within the window, and the problems."""
    certificates = []
    expiring = False
    for one in seen:
        soon = one.not_after is not None and one.not_after - now <= within
        expiring = expiring or soon
        certificates.append(
            {
                "path": _text(one.folder.resolve()),
                "file": one.file,
                "index": one.index,
                "usage": one.usage,
                "principal": one.principal,
                "not_after": one.not_after.isoformat() if one.not_after else None,
                "expiry_timestamp_seconds": int(one.not_after.timestamp()) if one.not_after else None,
                "seconds_left": int((one.not_after - now).total_seconds()) if one.not_after else None,
                "expiring": soon,
                "error": one.error or None,
            }
        )
    problems = [f"{c['path']}/{c['file']}: {c['error']}" for c in certificates if c["error"]] + problems
    return {
        "version": 1,
        "target": _text(target.resolve()),
        "checked_at": now.astimezone(UTC).isoformat(),
        "within_seconds": int(within.total_seconds()),
        "expiring": expiring,
        "certificates": certificates,
        "problems": problems,
    }


def schema() -> dict[str, Any]:
    """The JSON schema of `check --format json` (orchestrator/check.schema.json)."""
    text = resources.files("orchestrator").joinpath("check.schema.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def alert_rules() -> str:
    """The Prometheus alerting rules over these metrics (orchestrator/alert-rules.yml)."""
    return resources.files("orchestrator").joinpath(ALERT_RULES).read_text(encoding="utf-8")


def _escape(value: str) -> str:
    """A label value as the exposition format writes it: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _text(path: Path) -> str:
    """A path as UTF-8 text: a name that is not UTF-8 shows its undecodable bytes as U+FFFD (label values
    and JSON strings must be valid UTF-8)."""
    return os.fsencode(path).decode("utf-8", "replace")
