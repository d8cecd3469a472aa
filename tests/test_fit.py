"""Fitting the user's machine and organization: [subject] organization, --openssl / CRDB_CERTS_OPENSSL,
plain tables when not on a terminal, the progress line. Real openssl; certificates read back with
`cryptography`."""

from __future__ import annotations

import os
import pty
import re
import shutil
import string
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from tests.conftest import REPO, crdb, write_spec
from tests.test_faults import LAUNCH

SPEC = """\
key_type = "ec"
layout = "split-ca"
{extra}
[[nodes]]
name = "n1"
hosts = ["localhost", "127.0.0.1"]

[[clients]]
user = "root"

[ui]
hosts = ["console.example.com"]
issuer = "ui-ca"
"""


def organizations(out: Path) -> dict[str, list[str]]:
    found = {}
    for crt in sorted(out.glob("*/**/*.crt")):
        if "backup" in crt.parts:
            continue
        for i, cert in enumerate(x509.load_pem_x509_certificates(crt.read_bytes())):
            names = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
            found[f"{crt.relative_to(out)}#{i}"] = [str(n.value) for n in names]
    return found


def test_subject_organization_is_the_o_of_every_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(
        tmp_path, SPEC.format(extra='[subject]\norganization = "Example \\"Corp\\" #1 $HOME"\n')
    )
    out = tmp_path / "out"
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    found = organizations(out)
    assert len(found) >= 8 and all(o == ['Example "Corp" #1 $HOME'] for o in found.values()), found
    # The folder's record keeps it: a run without --config changes nothing, and audits clean.
    assert crdb("issue", "--out", out) == 0
    assert "up to date" in capsys.readouterr().out
    # Another organization is a difference like any other: refused until --reissue.
    other = write_spec(tmp_path, SPEC.format(extra='[subject]\norganization = "Other"\n'), "other.toml")
    assert crdb("issue", "--config", other, "--out", out) == 1
    assert "subject differs" in capsys.readouterr().err


def test_every_punctuation_mark_in_the_organization_reaches_the_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Review 15: openssl's config parser takes a backtick as a quote: "Acme `R&D`" passed validation,
    then issue failed (exit 3, "a certificate other than the one asked for") and `plan | bash` made
    O = Acme R&D. Every printable ASCII mark comes out exactly, from issue and from the printed plan."""
    organization = "Acme `R&D` " + string.punctuation
    toml = organization.replace("\\", "\\\\").replace('"', '\\"')
    spec = write_spec(tmp_path, SPEC.format(extra=f'[subject]\norganization = "{toml}"\n'))
    out = tmp_path / "out"
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    found = organizations(out)
    assert found and all(o == [organization] for o in found.values()), found
    capsys.readouterr()
    assert crdb("plan", "--config", spec) == 0
    script = tmp_path / "by-hand"
    script.mkdir()
    subprocess.run(
        ["bash"], input=capsys.readouterr().out, text=True, cwd=script, check=True, capture_output=True
    )
    found = organizations(script)
    assert found and all(o == [organization] for o in found.values()), found


def test_without_subject_every_certificate_says_cockroach(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, SPEC.format(extra=""))
    out = tmp_path / "out"
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    assert set(map(tuple, organizations(out).values())) == {("Cockroach",)}


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ('organization = ""', 'error: subject.organization: "" is not an organization name'),
        ('organization = "Caf\u00e9"', 'error: subject.organization: "Caf\\xe9" is not printable ASCII'),
        ('organization = "a\\tb"', 'error: subject.organization: "a\\tb" is not printable ASCII'),
        ('organization = " Corp"', 'error: subject.organization: " Corp" starts or ends with white space'),
        (f'organization = "{"x" * 65}"', "is longer than 64 characters"),
        ("organization = 1", "error: subject.organization: 1 is not an organization name"),
        ('org = "x"', 'error: subject.org: "x" is not a known key (known: organization)'),
    ],
)
def test_a_bad_organization_is_one_line_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], table: str, error: str
) -> None:
    spec = write_spec(tmp_path, SPEC.format(extra=f"[subject]\n{table}\n"))
    assert crdb("issue", "--config", spec, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert error in err and err.startswith("error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


# -------------------------------------------------------------------------- terminal or not


def in_terminal(*args: str | Path, cwd: Path) -> tuple[int, str]:
    """The command line run with a terminal (a pty) as its output, as a person runs it."""
    master, slave = pty.openpty()
    env = os.environ | {"PYTHONPATH": str(REPO), "TERM": "xterm", "COLUMNS": "200"}
    command = [sys.executable, "-m", "orchestrator", *map(str, args)]
    with subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, cwd=cwd, env=env
    ) as run:
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the other end is closed
                break
            if not chunk:
                break
            out += chunk
        os.close(master)
        return run.wait(timeout=60), out.decode(errors="replace")


def test_the_progress_line_shows_done_of_total_and_an_estimate(tmp_path: Path) -> None:
    # A slow openssl (0.2 s a command), so that the line is drawn between certificates.
    slow = tmp_path / "slow-openssl"
    slow.write_text(f'#!/bin/sh\n[ "$1" = version ] || sleep 0.2\nexec {shutil.which("openssl")} "$@"\n')
    slow.chmod(0o755)
    spec = write_spec(tmp_path, SPEC.format(extra=""))
    status, out = in_terminal("--openssl", slow, "issue", "--config", spec, "--out", "out", cwd=tmp_path)
    assert status == 0, out
    # CA, client CA, UI CA, node, client.node, client.root, ui: seven certificates, each verified once.
    assert re.search(r"\b[1-6]/7 verified, about \d+ s left, last: \S+\.crt", out), out
    assert "7/7 verified, last: " in out
    assert "made node n1" in out


def test_list_pads_a_table_on_a_terminal_and_prints_tab_separated_columns_elsewhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, SPEC.format(extra=""))
    assert crdb("issue", "--config", spec, "--out", tmp_path / "out", "--quiet") == 0
    capsys.readouterr()
    assert crdb("list", tmp_path / "out/nodes/n1") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"Certificate directory: {tmp_path / 'out/nodes/n1'}"
    assert lines[1] == "Usage\tCertificate File\tKey File\tExpires\tDays Left\tStatus\tNotes\tError"
    rows = [line.split("\t") for line in lines[2:-1]]
    assert [r[:3] for r in rows] == [
        ["CA", "ca.crt", ""],
        ["Client CA", "ca-client.crt", ""],
        ["UI CA", "ca-ui.crt", ""],
        ["Node", "node.crt", "node.key"],
        ["UI", "ui.crt", "ui.key"],
        ["Client", "client.node.crt", "client.node.key"],
    ]
    assert all(len(r) == 8 and r == [c.strip() for c in r] for r in rows)  # never padded
    assert lines[-1] == "(6 rows)"
    status, shown = in_terminal("list", "out/nodes/n1", cwd=tmp_path)
    assert status == 0
    assert "\t" not in shown and re.search(r"Node +node\.crt +node\.key", shown), shown


def test_a_run_whose_packages_are_on_pythonpath_runs_openssl_in_workers(tmp_path: Path) -> None:
    """Review of issue 16: workers start with `python -I`, which ignores PYTHONPATH: where crdb-certs and
    its packages are installed through PYTHONPATH, a run big enough for workers failed (they could not
    import `sh`). Played by a bare virtual environment of this Python (no packages of its own) with this
    one's packages on PYTHONPATH, and every run given workers (workers.SMALL = 0)."""
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", bare], check=True)
    python = bare / "bin" / "python"
    alone = subprocess.run([python, "-c", "import sh"], capture_output=True, cwd=tmp_path)
    assert alone.returncode != 0, "the bare environment has `sh` of its own"
    packages = dict.fromkeys([str(REPO), sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    spec = write_spec(tmp_path, 'key_type = "ec"\n[[nodes]]\nname = "n1"\nhosts = ["localhost"]\n')
    out = tmp_path / "out"
    run = subprocess.run(
        [python, "-c", LAUNCH, "0", "issue", "--config", spec, "--out", out, "--quiet"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(packages)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (run.returncode, run.stderr) == (0, ""), run.stderr
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", out / "certs/ca.crt", out / "nodes/n1/node.crt"], capture_output=True
    )
    assert verify.returncode == 0, verify.stdout
