"""`crdb-certs autopilot` and `export systemd`: renew what falls inside the window, deploy it, probe it,
and leave the outcome where node_exporter's textfile collector reads it; a timer that runs it daily.

A CA inside the window is never rotated unattended: rotating it is a three-pass roll-out a person
watches (`rotate-ca`), so autopilot stops, prints the steps, and the metrics say it failed.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from orchestrator import ansible, cas, probe, script
from orchestrator.certcheck import load_cert
from orchestrator.spec import Spec

LAST_RUN = "crdb_certs_autopilot_last_run_timestamp_seconds"
LAST_SUCCESS = "crdb_certs_autopilot_last_success_timestamp_seconds"
RENEWED = "crdb_certs_autopilot_renewed_certificates"
FAILED = "crdb_certs_autopilot_failed"
SERVICE = "crdb-certs-autopilot.service"
TIMER = "crdb-certs-autopilot.timer"


def cas_inside(spec: Spec, out: Path, window: timedelta, now: datetime) -> list[str]:
    """The CA files (certs/ca.crt, …) whose CA, the first certificate, expires within the window."""
    found = []
    for ca in cas.signers(spec).all:
        try:
            expires = load_cert(out / ca.cert).not_valid_after_utc
        except (OSError, ValueError):
            continue  # renew's plan reports a missing CA
        if expires - now <= window:
            found.append(ca.cert)
    return found


def rotation_steps(out: Path, config: Path | None, inside: list[str]) -> str:
    flag = f" --config {script.quote(config)}" if config else ""
    where = script.quote(out)
    return "\n".join(
        [
            f"autopilot: {', '.join(inside)} in {out} expires inside the window; a CA is never rotated"
            " unattended. Rotate it by hand:",
            f"  crdb-certs rotate-ca{flag} --out {where}",
            "  roll out what it prints (the CA files first, then the certificates: `crdb-certs deploy"
            f"{flag} --out {where}`)",
            f"  crdb-certs rotate-ca --finish{flag} --out {where}",
            f"  crdb-certs deploy{flag} --out {where}",
        ]
    )


def metrics(now: datetime, success: float, renewed: int, failed: bool) -> str:
    samples = [
        (LAST_RUN, "When crdb-certs autopilot last ran, in seconds since the epoch.", int(now.timestamp())),
        (LAST_SUCCESS, "When crdb-certs autopilot last succeeded (0: never).", int(success)),
        (RENEWED, "Certificates the last autopilot run renewed.", renewed),
        (FAILED, "1 if the last autopilot run failed (its output says why), else 0.", int(failed)),
    ]
    lines = []
    for name, help_text, value in samples:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value}"]
    return "\n".join(lines) + "\n"


def previous_success(path: Path) -> float:
    """The last success the metrics file at `path` recorded (0 if none): a failed run keeps it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return 0
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == LAST_SUCCESS:
            try:
                return float(value)
            except ValueError:
                return 0
    return 0


def write_metrics(path: Path, text: str) -> None:
    """Atomically: a temporary file beside it, then a rename (the collector never reads half a file)."""
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------------------- systemd


def systemd_quote(value: str) -> str:
    """One word of an Exec line, as systemd reads it: double quotes, C escapes, `$` and `%` doubled
    (else systemd expands them as variables and specifiers)."""
    out = []
    for ch in value:
        if ch in '\\"':
            out.append("\\" + ch)
        elif ch == "$":
            out.append("$$")
        elif ch == "%":
            out.append("%%")
        elif not ch.isprintable() or ch == "'":
            out += [f"\\x{b:02x}" for b in ch.encode("utf-8", "surrogateescape")]
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def command() -> list[str]:
    """The running crdb-certs: its executable's absolute path, or this Python with `-m orchestrator`."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "crdb-certs" and argv0.is_file():
        return [str(argv0.resolve())]
    return [str(Path(sys.executable).absolute()), "-m", "orchestrator"]


def units(source: Path, config: Path | None, metrics_file: Path | None) -> dict[str, str]:
    argv = [*command(), "autopilot", "--out", str(source.resolve())]
    if config is not None:
        argv += ["--config", str(config.resolve())]
    if metrics_file is not None:
        argv += ["--metrics", str(metrics_file.resolve())]
    service = (
        "[Unit]\n"
        "Description=crdb-certs autopilot: renew, deploy and probe CockroachDB certificates\n"
        "Wants=network-online.target\nAfter=network-online.target\n\n"
        "[Service]\nType=oneshot\n"
        "# Ansible's SSH settings (ANSIBLE_PRIVATE_KEY_FILE, …): add Environment= lines in a drop-in.\n"
        f"ExecStart={' '.join(systemd_quote(a) for a in argv)}\n"
    )
    timer = (
        "[Unit]\nDescription=Run crdb-certs autopilot daily\n\n"
        "[Timer]\nOnCalendar=daily\nRandomizedDelaySec=1h\nPersistent=true\n\n"
        "[Install]\nWantedBy=timers.target\n"
    )
    return {SERVICE: service, TIMER: timer}


def stale(spec: Spec, out: Path) -> list[str]:
    """The nodes that answer with a certificate other than the one this folder issued them: a run that
    stopped at a failing node left them behind, and nothing new to renew must not hide them."""
    folder = probe.from_output(spec, out, http=False)
    options = probe.Options(timeout=5.0, within=timedelta(0))
    found = []
    for target in ansible.reach(spec):
        mine = replace(folder, issued=tuple(i for i in folder.issued if i.node == target.node.name))
        seen = probe.probe(probe.Target(target.sql_host, target.sql_port), mine, options)
        if mine.issued and seen.unreachable is None and not seen.issued:
            found.append(target.node.name)
    return found
