"""Issue 17 step 5: `autopilot` (renew what falls inside the window, deploy it node by node, probe, write
textfile metrics) and `export systemd` (a daily timer that runs it). Real parts: openssl, the loopback
sshd and stand-in nodes of tests/fleet.py, ansible-playbook, promtool, systemd-analyze."""

from __future__ import annotations

import configparser
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator import autopilot
from tests.conftest import crdb, is_stamp, write_spec
from tests.test_deploy import ansible_env, fleet_of, needs_sshd, sshd  # noqa: F401 (fixtures)

# The secure profile: leaves live 365 days, the CA 3660. A window of 400 days holds every leaf and not
# the CA; one of 4000 days holds the CA too: no waiting, no clock games.
LEAVES = "400d"
CA_TOO = "4000d"


def metrics_of(path: Path) -> dict[str, float]:
    """The samples of a textfile, after promtool (Prometheus's own linter) has passed it."""
    checked = subprocess.run(["promtool", "check", "metrics"], input=path.read_bytes(), capture_output=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    text = path.read_text()
    for name in (autopilot.LAST_RUN, autopilot.LAST_SUCCESS, autopilot.RENEWED, autopilot.FAILED):
        assert f"# HELP {name} " in text and f"# TYPE {name} gauge" in text
    return {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if not line.startswith("#")}


def _issued(tmp_path: Path) -> Path:
    """A folder `issue` made for a node that deploys (nothing listens on its ssh port: nothing is
    delivered in the tests that use it)."""
    text = (
        'key_type = "ec"\n[[nodes]]\nname = "n1"\nhosts = ["localhost"]\nssh = "root@127.0.0.1:1"\n'
        '[[clients]]\nuser = "root"\n'
    )
    out = tmp_path / "pki"
    assert crdb("issue", "--config", write_spec(tmp_path, text), "--out", out, "--quiet") == 0
    return out


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not is_stamp(p)  # a cache of a clean run
    }


def test_nothing_to_renew_exits_0_and_writes_a_success(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _issued(tmp_path)
    before = _snapshot(out)
    prom = tmp_path / "autopilot.prom"
    started = time.time()
    assert crdb("autopilot", "--out", out, "--within", "1d", "--metrics", prom) == 0
    assert "nothing renewed" in capsys.readouterr().out
    assert _snapshot(out) == before
    found = metrics_of(prom)
    assert found[autopilot.FAILED] == 0 and found[autopilot.RENEWED] == 0
    assert found[autopilot.LAST_SUCCESS] == found[autopilot.LAST_RUN] >= int(started)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "no temporary file left"


def test_a_ca_inside_the_window_stops_with_the_rotation_steps_and_keeps_the_last_success(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _issued(tmp_path)
    prom = tmp_path / "autopilot.prom"
    assert crdb("autopilot", "--out", out, "--within", "1d", "--metrics", prom) == 0
    succeeded = metrics_of(prom)[autopilot.LAST_SUCCESS]
    before = _snapshot(out)
    capsys.readouterr()
    time.sleep(1.1)  # a later run has a later timestamp

    assert crdb("autopilot", "--out", out, "--within", CA_TOO, "--metrics", prom) == 1
    printed = capsys.readouterr().out
    assert f"crdb-certs rotate-ca --out {out}" in printed and "never rotated unattended" in printed
    assert f"crdb-certs rotate-ca --finish --out {out}" in printed
    assert _snapshot(out) == before, "nothing renewed, nothing rotated"
    found = metrics_of(prom)
    assert found[autopilot.FAILED] == 1 and found[autopilot.RENEWED] == 0
    assert found[autopilot.LAST_SUCCESS] == succeeded < found[autopilot.LAST_RUN]


def test_a_spec_that_cannot_deploy_is_refused_before_anything_is_renewed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = 'key_type = "ec"\n[[nodes]]\nname = "n1"\nhosts = ["localhost"]\n'
    out = tmp_path / "pki"
    assert crdb("issue", "--config", write_spec(tmp_path, text), "--out", out, "--quiet") == 0
    before = _snapshot(out)
    prom = tmp_path / "autopilot.prom"
    capsys.readouterr()
    assert crdb("autopilot", "--out", out, "--within", LEAVES, "--metrics", prom) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: nodes[0].ssh: "), err
    assert _snapshot(out) == before
    assert metrics_of(prom)[autopilot.FAILED] == 1


def test_a_metrics_file_in_a_missing_folder_is_refused_before_anything_is_renewed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _issued(tmp_path)
    before = _snapshot(out)
    capsys.readouterr()
    assert crdb("autopilot", "--out", out, "--within", LEAVES, "--metrics", tmp_path / "no/a.prom") == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: --metrics: "), err
    assert _snapshot(out) == before


@needs_sshd
def test_autopilot_renews_deploys_and_probes_two_nodes(
    fleet_of: Any,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    fleet = fleet_of(2)
    served_before = {name: fleet.served_serial(name) for name in fleet.names}
    prom = fleet.base / "autopilot.prom"
    capsys.readouterr()
    ran = crdb("autopilot", "--out", fleet.pki, "--within", LEAVES, "--metrics", prom)
    printed = capsys.readouterr().out
    assert ran == 0, printed
    for name in fleet.names:
        assert f"{name}: delivered, reloaded" in printed
        assert fleet.served_serial(name) == fleet.issued_serial(name) != served_before[name]
        assert fleet.held(name) == {
            p.name: v for p, v in ((p, _mode_bytes(p)) for p in (fleet.pki / "nodes" / name).iterdir())
        }
    found = metrics_of(prom)
    # Each node's node.crt and client.node.crt, and the client root's: every leaf of the spec.
    leaves = len(list((fleet.pki / "certs").glob("client.*.crt"))) + len(fleet.names)
    assert found[autopilot.RENEWED] == leaves
    assert found[autopilot.FAILED] == 0 and found[autopilot.LAST_SUCCESS] == found[autopilot.LAST_RUN]
    assert list((fleet.pki / "backup").iterdir()), "the replaced files are kept"


@needs_sshd
def test_a_node_that_does_not_come_back_fails_the_run_naming_it(
    fleet_of: Any,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    fleet = fleet_of(2, fail="node1")
    prom = fleet.base / "autopilot.prom"
    capsys.readouterr()
    assert crdb("autopilot", "--out", fleet.pki, "--within", LEAVES, "--metrics", prom) == 1
    err = capsys.readouterr().err
    assert "error: deploy: node1: " in err and "not touched: node2" in err, err
    assert fleet.served_serial("node2") != fleet.issued_serial("node2"), "the roll stopped at node1"
    found = metrics_of(prom)
    assert found[autopilot.FAILED] == 1 and found[autopilot.LAST_SUCCESS] == 0
    assert found[autopilot.RENEWED] > 0

    # The operator mends node1 (its reload by hand); the next run has nothing to renew, but node2 still
    # serves its old certificate: that is delivered, not hidden behind "nothing renewed".
    os.kill(fleet.standins["node1"].proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while fleet.served_serial("node1") != fleet.issued_serial("node1") and time.monotonic() < deadline:
        time.sleep(0.1)
    ran = crdb("autopilot", "--out", fleet.pki, "--within", "1d", "--metrics", prom)
    printed = capsys.readouterr().out
    assert ran == 0, printed
    assert "nothing renewed" in printed and "still serving an older certificate: node2" in printed
    assert "node1:" not in printed, "a node that serves its certificate is not touched"
    assert fleet.served_serial("node2") == fleet.issued_serial("node2")
    found = metrics_of(prom)
    assert found[autopilot.FAILED] == 0 and found[autopilot.RENEWED] == 0


def _mode_bytes(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mode & 0o7777


# ----------------------------------------------------------------------------------------- systemd


def _systemd_words(line: str) -> list[str]:
    """An Exec line's words as systemd reads them (double-quoted words with C escapes, `$$` and `%%`
    for `$` and `%`): written here independently of the code under test."""
    words, i = [], 0
    while i < len(line):
        if line[i] == " ":
            i += 1
            continue
        assert line[i] == '"', line[i:]
        i += 1
        raw = bytearray()
        while line[i] != '"':
            if line[i] == "\\":
                if line[i + 1] == "x":
                    raw.append(int(line[i + 2 : i + 4], 16))
                    i += 4
                    continue
                raw += line[i + 1].encode()
                i += 2
            elif line[i] in "$%":
                assert line[i + 1] == line[i], "a lone $ or % would be expanded"
                raw += line[i].encode()
                i += 2
            else:
                raw += line[i].encode()
                i += 1
        words.append(raw.decode("utf-8", "surrogateescape"))
        i += 1
    return words


def test_export_systemd_writes_a_daily_timer_and_a_service_that_runs_autopilot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _issued(tmp_path)
    units = tmp_path / "units"
    metrics = tmp_path / 'text $HOME %h "q" \\ \'s\u00e9.prom'
    assert crdb("export", "systemd", "--out", units, "--from", out, "--metrics", metrics) == 0
    service, timer = units / autopilot.SERVICE, units / autopilot.TIMER

    parsed = configparser.ConfigParser(interpolation=None)
    parsed.optionxform = str  # type: ignore[assignment,method-assign]
    parsed.read(service)
    assert parsed["Service"]["Type"] == "oneshot"
    argv = _systemd_words(parsed["Service"]["ExecStart"])
    assert Path(argv[0]).is_absolute() and Path(argv[0]).exists()
    assert argv[argv.index("autopilot") :] == ["autopilot", "--out", str(out), "--metrics", str(metrics)]

    parsed = configparser.ConfigParser(interpolation=None)
    parsed.optionxform = str  # type: ignore[assignment,method-assign]
    parsed.read(timer)
    assert dict(parsed["Timer"]) == {"OnCalendar": "daily", "RandomizedDelaySec": "1h", "Persistent": "true"}

    # The service, run as written (its own quoting undone by hand): a real autopilot run.
    assert subprocess.run([*argv[:-2], "--within", "1d"], capture_output=True).returncode == 0


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze (Debian: systemd)")
def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    out = _issued(tmp_path)
    units = tmp_path / "units"
    metrics = tmp_path / 'm $x %h "q" \\ \'s.prom'
    assert crdb("export", "systemd", "--out", units, "--from", out, "--metrics", metrics) == 0
    verified = subprocess.run(
        ["systemd-analyze", "verify", units / autopilot.SERVICE, units / autopilot.TIMER],
        capture_output=True,
        text=True,
    )
    assert verified.returncode == 0 and verified.stderr == "", verified.stderr
