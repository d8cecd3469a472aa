"""The stamp (orchestrator/stamp.py): `issue` on a folder nothing has touched since the last clean run
answers without planning (issue 16: a no-op re-run of 10,000 nodes in seconds); anything that could
change the answer takes the full way and gets the full answer."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cryptography
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from orchestrator import audit, changes, names, recipes, record, runner, stamp, state
from orchestrator.certcheck import Expect
from orchestrator.cli import load_spec
from orchestrator.files import MAX_READ, read_regular
from orchestrator.steps import Copy, Plan, Task, writes
from tests import orgca
from tests.conftest import REPO, crdb, no_hang, write_spec
from tests.test_faults import tmpfs

SPEC = """\
key_type = "ec"

[[nodes]]
name = "a"
hosts = ["a.example.com"]

[[nodes]]
name = "b"
hosts = ["b.example.com"]

[[clients]]
user = "root"
"""


@pytest.fixture
def clean(tmp_path: Path) -> tuple[Path, Path]:
    spec, out = write_spec(tmp_path, SPEC), tmp_path / "out"
    stamped(spec, out)
    return spec, out


def stamped(spec: Path, out: Path) -> None:
    """`out` issued from `spec`, and stamped by a second run."""
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    time.sleep(0.05)  # a run of a few certificates ends within a clock tick of its last file: not stamped
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    assert (out / names.STAMP).is_file(), "a clean run that changed nothing stamps the folder"


def held_in(out: Path) -> dict[str, Any]:
    """The stamp's members (its last line is the seal: the digest of the rest)."""
    body, _, _ = (out / names.STAMP).read_bytes().rpartition(b"\n")
    return dict(json.loads(body))


def rewritten(out: Path, held: dict[str, Any]) -> None:
    """The stamp written again with `held` as crdb-certs writes it, sealed: what the edit changes is
    what is tested, not the seal."""
    body = json.dumps(held, separators=(",", ":")).encode()
    (out / names.STAMP).write_bytes(body + b"\n" + hashlib.sha256(body).hexdigest().encode())


def issue(
    spec: Path, out: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, str, dict[str, float]]:
    """`issue`, its status, what it printed, and the phases it went through."""
    phases = out.parent / "phases.json"
    phases.unlink(missing_ok=True)
    monkeypatch.setenv("CRDB_CERTS_PHASES", str(phases))
    capsys.readouterr()
    status = crdb("issue", "--config", spec, "--out", out, *extra)
    printed = capsys.readouterr()
    return status, printed.out + printed.err, json.loads(phases.read_text())


def test_an_untouched_folder_is_answered_without_planning(
    clean: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, out = clean
    status, printed, phases = issue(spec, out, monkeypatch, capsys)
    assert (status, printed) == (0, f"{out}: up to date, nothing changed\n")
    assert "planning" not in phases and "audit" not in phases, phases
    status, printed, phases = issue(spec, out, monkeypatch, capsys, "--check")
    assert (status, printed) == (0, f"{out}: up to date\n")
    assert "planning" not in phases, phases
    # The same spec from the folder's record (no --config) is another input: the full way, once.
    capsys.readouterr()
    assert crdb("issue", "--out", out) == 0
    assert "planning" in json.loads((out.parent / "phases.json").read_text())


def _copy_other_node(out: Path) -> None:
    shutil.copyfile(out / "nodes/b/node.crt", out / "nodes/a/node.crt")


def _same_bytes(out: Path) -> None:
    path = out / "certs/client.root.crt"
    path.write_bytes(path.read_bytes())


# Each: what is done to a stamped folder, then the status and a line `issue` must answer with.
CHANGES: dict[str, tuple[Callable[[Path], object], int, str]] = {
    "a certificate replaced by another node's": (_copy_other_node, 0, "made node a"),  # a lost key: a repair
    "a file removed": (lambda out: (out / "certs/client.root.crt").unlink(), 0, "made client root"),
    "a key made readable by others": (lambda out: (out / "nodes/a/node.key").chmod(0o644), 1, "node.key"),
    "the CA key made readable": (lambda out: (out / "my-safe-directory/ca.key").chmod(0o644), 1, "ca.key"),
    "a node's folder removed": (lambda out: shutil.rmtree(out / "nodes/b"), 0, "nodes/b"),
    "the record overwritten": (lambda out: (out / "crdb-certs.toml").write_text("x = 1\n"), 2, "format"),
    "a file rewritten with the same bytes": (_same_bytes, 0, "up to date, nothing changed"),
}


@pytest.mark.parametrize("change", CHANGES)
def test_any_change_takes_the_full_way(
    change: str,
    clean: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec, out = clean
    do, status, said = CHANGES[change]
    do(out)
    got, printed, phases = issue(spec, out, monkeypatch, capsys)
    assert "planning" in phases, f"{change}: answered from the stamp"
    assert got == status and said in printed, printed


def test_another_spec_takes_the_full_way(
    clean: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, out = clean
    write_spec(spec.parent, SPEC + '\n[[clients]]\nuser = "bob"\n')
    status, printed, _ = issue(spec, out, monkeypatch, capsys)
    assert status == 0 and "made client bob" in printed, printed
    status, printed, _ = issue(spec, out, monkeypatch, capsys, "--profile", "docs")
    assert status == 1 and "profile" in printed, printed  # a difference, refused as ever


def test_a_certificate_near_its_end_is_warned_about_whatever_the_stamp(clean: tuple[Path, Path]) -> None:
    """340 days on, the 365-day certificates expire within the audit's 30 days: the run says so."""
    spec, out = clean
    run = _issue_later(340, spec, out)
    assert run.returncode == 0, run.stderr
    assert "node.crt expires on" in run.stdout, run.stdout


def _issue_later(days: int, spec: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """`issue` run `days` from now (faketime: openssl's clock too)."""
    command = ["issue", "--config", str(spec), "--out", str(out)]
    return subprocess.run(
        ["faketime", "-f", f"+{days}d", sys.executable, "-m", "orchestrator", *command],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_your_own_ca_changed_elsewhere_takes_the_full_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The files a spec names outside the folder are part of what the stamp holds."""
    ca = orgca.OrgCA(tmp_path / "org")
    own_ca = f'\n[ca]\ncert = "{ca.cert_path}"\nkey = "{ca.key_path}"\n'
    spec = write_spec(tmp_path, SPEC.replace("\n", own_ca, 1))
    out = tmp_path / "out"
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    time.sleep(0.05)
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    assert issue(spec, out, monkeypatch, capsys)[2].get("planning") is None
    ca.key_path.chmod(0o644)
    status, printed, _ = issue(spec, out, monkeypatch, capsys)
    assert status == 2 and "org-ca.key" in printed, printed


def test_a_file_changed_within_a_clock_tick_of_the_stamp_is_not_trusted(clean: tuple[Path, Path]) -> None:
    """A file written in the same clock tick as its signature was taken could be written again unseen
    (same times, same size): a stamp never vouches for such a file. None is written then; one taken as
    the file was written (crafted here) does not match."""
    _, out = clean
    key = held_in(out)["key"]
    _same_bytes(out)
    stamp.write(out, key, [], {}, {})
    assert not stamp.matches(out, key), "the old stamp, and no new one"
    time.sleep(0.05)
    stamp.write(out, key, [], {}, {})
    assert stamp.matches(out, key)
    held = held_in(out)
    held["taken"] = held["newest"] = (out / "certs/client.root.crt").stat().st_ctime_ns
    rewritten(out, held)
    assert not stamp.matches(out, key)


def test_a_file_that_is_another_one_is_not_trusted_even_with_older_times(clean: tuple[Path, Path]) -> None:
    """Every change moves a file's change time past the stamp's, but a clock set back would not: the
    signature itself must match (here the stamp remembers another inode for one file)."""
    _, out = clean
    held = held_in(out)
    assert stamp.matches(out, held["key"])
    mode, uid, gid, inode, rest = held["files"]["nodes/a/node.key"].split(":", 4)
    held["files"]["nodes/a/node.key"] = f"{mode}:{uid}:{gid}:{int(inode) + 1}:{rest}"
    rewritten(out, held)
    assert not stamp.matches(out, held["key"])


def test_a_key_behind_a_linked_nodes_folder_is_looked_at(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Review of issue 16: only my-safe-directory/ was followed through a link; a key made readable
    behind a linked nodes/ was answered "up to date"."""
    spec, out = write_spec(tmp_path, SPEC), tmp_path / "out"
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    (out / "nodes").rename(tmp_path / "nodes-elsewhere")
    (out / "nodes").symlink_to(tmp_path / "nodes-elsewhere")
    time.sleep(0.05)
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0  # stamps the linked layout
    assert "planning" not in issue(spec, out, monkeypatch, capsys)[2]
    (tmp_path / "nodes-elsewhere/a/node.key").chmod(0o644)
    status, printed, phases = issue(spec, out, monkeypatch, capsys)
    assert "planning" in phases and status == 1 and "node.key" in printed, printed


def test_what_a_killed_run_left_is_cleaned_up_whatever_the_stamp(
    clean: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Review of issue 16: a run killed before its commit leaves the folder as it was (the stamp still
    matches) and its staging folder, with new keys, in .crdb-certs/: the next run removes it."""
    spec, out = clean
    left = out / ".crdb-certs" / "stage-killed"
    (left / "nodes/c").mkdir(parents=True)
    (left / "nodes/c/node.key").write_text("a key")
    status, _, phases = issue(spec, out, monkeypatch, capsys)
    assert status == 0 and "planning" in phases and not left.exists()


def test_cockroach_s_key_permission_switch_is_part_of_the_input(
    clean: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The audit reads COCKROACH_SKIP_KEY_PERMISSION_CHECK: set to what CockroachDB refuses, the answer
    changes, stamp or not."""
    spec, out = clean
    monkeypatch.setenv("COCKROACH_SKIP_KEY_PERMISSION_CHECK", "maybe")
    status, printed, phases = issue(spec, out, monkeypatch, capsys)
    assert "planning" in phases and status == 1, printed


def test_a_stamp_that_cannot_be_written_fails_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A full disk or a quota at the stamp (several MB at 10,000 nodes): the run that succeeded still
    succeeds, and leaves no half-written stamp."""
    spec, out = write_spec(tmp_path, SPEC), tmp_path / "out"
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    (out / names.STAMP).unlink(missing_ok=True)
    time.sleep(0.05)
    real_replace = os.replace

    def full(src: Path, dst: Path) -> None:  # the disk is full when the stamp is written
        if Path(dst).name == "stamp.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full)
    status, printed, _ = issue(spec, out, monkeypatch, capsys)
    assert status == 0, printed
    assert {p.name for p in (out / ".crdb-certs").iterdir()} == {"lock"}


def test_your_own_ca_behind_a_link_that_now_points_elsewhere_takes_the_full_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Review of issue 16: the spec names org/current/org-ca.crt; `current` is re-pointed from one CA to
    another. The stamp knew the files the link led to then: the full way refuses the other CA."""
    orgca.OrgCA(tmp_path / "org/v1")
    orgca.OrgCA(tmp_path / "org/v2", cn="Example Org Root CA 2")
    (tmp_path / "org/current").symlink_to("v1")
    own_ca = '\n[ca]\ncert = "org/current/org-ca.crt"\nkey = "org/current/org-ca.key"\n'
    spec, out = write_spec(tmp_path, SPEC.replace("\n", own_ca, 1)), tmp_path / "out"
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    time.sleep(0.05)
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    assert "planning" not in issue(spec, out, monkeypatch, capsys)[2]
    (tmp_path / "org/current").unlink()
    (tmp_path / "org/current").symlink_to("v2")
    status, printed, phases = issue(spec, out, monkeypatch, capsys)
    assert "planning" in phases and status == 1 and "ca" in printed, printed


ONE_MORE = SPEC + '\n[[nodes]]\nname = "c"\nhosts = ["c.example.com"]\n'


def test_one_node_more_checks_only_the_new_certificate(
    clean: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 16: the stamp vouches for each certificate it saw right whatever the spec is now, so a node
    added to a stamped folder is the one certificate read and checked (not all 10,000 others)."""
    spec, out = clean
    checked: list[str] = []
    real = state.problems

    def counted(expect: Expect, root: Path, now: datetime | None = None) -> list[str]:
        checked.append(expect.cert)
        return real(expect, root, now)

    monkeypatch.setattr(state, "problems", counted)
    planned: list[str] = []
    real_task = recipes.node_task

    def planned_node(name: str, *rest: Any) -> Task:
        planned.append(name)
        return real_task(name, *rest)

    monkeypatch.setattr(recipes, "node_task", planned_node)
    listed: list[Path] = []
    real_listing = changes._names_in
    monkeypatch.setattr(changes, "_names_in", lambda folder: listed.append(folder) or real_listing(folder))
    records: list[Path] = []
    real_read = record.read
    monkeypatch.setattr(record, "read", lambda folder: records.append(folder) or real_read(folder))
    plans: list[Plan] = []
    real_pending = runner.pending
    monkeypatch.setattr(runner, "pending", lambda *args: plans.append(real_pending(*args)) or plans[-1])
    write_spec(spec.parent, ONE_MORE)
    status, printed, _ = issue(spec, out, monkeypatch, capsys)
    assert status == 0 and "made node c" in printed, printed
    assert checked == ["nodes/c/node.crt"]
    assert planned == ["c"], "the nodes the stamp vouches for are not planned at all"
    # Nor are their folders listed, their copies planned, or the record (as the stamp saw it) read again.
    assert sorted(p.relative_to(out).as_posix() for p in listed) == ["certs", "nodes/c"]
    assert [s.dst for p in plans for s in p.steps if isinstance(s, Copy)] == ["nodes/c/ca.crt"]
    assert records == []


def _hosts_changed(out: Path) -> str:
    return ONE_MORE.replace('hosts = ["a.example.com"]', 'hosts = ["a.example.com", "a2.example.com"]')


def _ca_replaced(out: Path) -> str:
    """Another CA's certificate in certs/ca.crt (the stamp saw the folder's own)."""
    other = orgca.OrgCA(out.parent / "other-ca")
    shutil.copyfile(other.cert_path, out / "certs/ca.crt")
    return ONE_MORE


def _edited(path: Path) -> str:
    with path.open("a") as f:
        f.write("# edited\n")
    return ONE_MORE


def _put(path: Path) -> str:
    shutil.copyfile(path.parent / "node.crt", path)
    return ONE_MORE


def _replaced(path: Path, old: str, new: str) -> str:
    text = path.read_text()
    assert old in text, (old, text)
    path.write_text(text.replace(old, new))
    return ONE_MORE


# Each: what is done to a stamped folder (returning the spec to run then, one node more than the
# stamp's): the stamp must not vouch for what changed, so the run answers as it would without a stamp.
NOT_VOUCHED: dict[str, Callable[[Path], str]] = {
    "a node's config edited": lambda out: _edited(out / "requests/node.a.cnf"),
    "a node's copy of the CA certificate edited": lambda out: _edited(out / "nodes/b/ca.crt"),
    "the CA key removed": lambda out: (out / "my-safe-directory/ca.key").unlink() or ONE_MORE,
    "the organization changed in the spec": lambda out: '[subject]\norganization = "Other"\n\n' + ONE_MORE,
    "a certificate replaced by another node's": lambda out: _copy_other_node(out) or ONE_MORE,
    "a node's hosts changed in the spec": _hosts_changed,
    "the CA certificate replaced": _ca_replaced,
    "a node's copy of the CA certificate removed": lambda out: (out / "nodes/b/ca.crt").unlink() or ONE_MORE,
    "a file the spec does not make put in a node's folder": lambda out: _put(out / "nodes/b/ui.crt"),
    "the record's profile edited": lambda out: _replaced(
        out / names.RECORD, 'profile = "secure"', 'profile = "docs"'
    ),
    "the record's CA edited": lambda out: _replaced(out / names.RECORD, '"made-here"', '"signed-elsewhere"'),
    "a key replaced by a link to another": lambda out: (
        (
            (out / "nodes/a/node.key").unlink(),
            (out / "nodes/a/node.key").symlink_to(out / "nodes/b/node.key"),
        )
        and ONE_MORE
    ),
}


def _with_and_without_stamp(tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    """The same clean folder made twice (its folder, spec and output folder): stamped, then without."""
    for with_stamp in (True, False):
        folder = tmp_path / ("stamped" if with_stamp else "not")
        spec, out = write_spec(folder, SPEC), folder / "out"
        stamped(spec, out)
        if not with_stamp:
            (out / names.STAMP).unlink()
        yield folder, spec, out


def _same_for_both(printed: str, folder: Path) -> str:
    """What a run printed, without what differs between two folders: their names, the time (backups,
    transcripts), the dates (the two folders' certificates may be made a minute apart) and serials."""
    printed = re.sub(r"\d{8}T\d{6,}Z", "TIME", printed.replace(str(folder), "FOLDER"))
    printed = re.sub(r"--serial [0-9A-F]+", "--serial SERIAL", printed)
    return re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", "DATE", printed)


@pytest.mark.parametrize("change", NOT_VOUCHED)
def test_the_stamp_vouches_only_for_what_it_saw(
    change: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = []
    for folder, spec, out in _with_and_without_stamp(tmp_path):
        write_spec(folder, NOT_VOUCHED[change](out))
        answers.append(_answer(spec, out, monkeypatch, capsys))
    assert answers[0] == answers[1]
    assert "node c" in answers[0][1] or answers[0][0] != 0, answers[0]


def _stamped_with(
    tmp_path: Path, prepared: Callable[[Path], object] | None
) -> Iterator[tuple[Path, Path, Path]]:
    """_with_and_without_stamp, with `prepared` done to each folder first (and stamped so)."""
    for folder, spec, out in _with_and_without_stamp(tmp_path):
        if prepared is not None:
            with_stamp = (out / names.STAMP).exists()
            prepared(out)
            time.sleep(0.05)  # so that the run below stamps
            assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
            if not with_stamp:
                (out / names.STAMP).unlink()
            assert (out / names.STAMP).exists() == with_stamp
        yield folder, spec, out


def _one_more_made(
    tmp_path: Path, prepared: Callable[[Path], object] | None = None
) -> Iterator[tuple[Path, Path, Path]]:
    """_stamped_with, then one node more: a run that writes, so it stamps nothing (stamp.py) and audits
    only the folder it wrote; the next run that writes nothing is the health check."""
    for folder, spec, out in _stamped_with(tmp_path, prepared):
        write_spec(folder, ONE_MORE)
        assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
        yield folder, spec, out


def test_a_health_check_audits_only_what_the_stamp_did_not_see_clean(
    clean: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 16: the run after one node more writes nothing, so it audits as a health check. It audited
    every certs directory: 7.4 s at 10,000 nodes. The stamp's run audited all but the new node's clean,
    and the stamp says they are as they were then: only the new one is audited, then the folder is
    stamped."""
    spec, out = clean
    audited: list[str] = []
    real = audit.audit
    monkeypatch.setattr(
        audit, "audit", lambda d, *a, **k: audited.append(d.relative_to(out).as_posix()) or real(d, *a, **k)
    )
    write_spec(spec.parent, ONE_MORE)
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    assert audited == ["nodes/c"], "a run that writes audits what it wrote"
    audited.clear()
    time.sleep(0.05)  # so that the run below stamps
    status, printed, _ = issue(spec, out, monkeypatch, capsys)
    assert (status, printed) == (0, f"{out}: up to date, nothing changed\n")
    assert audited == ["nodes/c"]
    assert "planning" not in issue(spec, out, monkeypatch, capsys)[2], "stamped: every folder is clean"


def _crl_revoking(out: Path, cert: str | None, crl: Path) -> str:
    """`crl` (a folder crls.find looks in) holding a CRL of the folder's CA that revokes `cert` (or none),
    signed with `cryptography` by the CA's key; ca.crl there rewritten in place if there is one."""
    ca = x509.load_pem_x509_certificate((out / "certs/ca.crt").read_bytes())
    key = serialization.load_pem_private_key((out / "my-safe-directory/ca.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    now = datetime.now(UTC)
    builder = x509.CertificateRevocationListBuilder().issuer_name(ca.subject).last_update(now)
    if cert is not None:
        serial = x509.load_pem_x509_certificate((out / cert).read_bytes()).serial_number
        revoked = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
        builder = builder.add_revoked_certificate(revoked)
    made = builder.next_update(now + timedelta(days=7)).sign(key, hashes.SHA256())
    crl.mkdir(exist_ok=True)
    (crl / "ca.crl").write_bytes(made.public_bytes(serialization.Encoding.PEM))
    return ONE_MORE


def _moved_and_linked(out: Path, folder: str, *names_too: str) -> None:
    """out/`folder` moved to elsewhere/, and linked back (and from out/`names_too`)."""
    elsewhere = out.parent / "elsewhere" / Path(folder).name
    elsewhere.parent.mkdir(exist_ok=True)
    (out / folder).rename(elsewhere)
    for name in (folder, *names_too):
        (out / name).symlink_to(elsewhere)


def _rewritten_in_place(path: Path, text: bytes) -> str:
    with path.open("r+b") as f:  # the same file (inode), so the folder's listing stays the same
        f.truncate()
        f.write(text)
    return ONE_MORE


# Each: what is done to a stamped folder after one node more was added to it, before the run that
# writes nothing (the spec it returns): the audit's answer for a folder the stamp saw clean may change,
# so that folder is audited, as without a stamp. PREPARED: what the stamp saw there first.
NOT_CLEAN_NOW: dict[str, Callable[[Path], str]] = {
    "a node's key made readable by others": lambda out: (out / "nodes/a/node.key").chmod(0o644) or ONE_MORE,
    "a file beside the node's files rewritten into the CA key": lambda out: _rewritten_in_place(
        out / "nodes/a/notes.txt", (out / "my-safe-directory/ca.key").read_bytes()
    ),
    "a CRL revoking a node's certificate": lambda out: _crl_revoking(out, "nodes/a/node.crt", out / "crl"),
    # The audit of nodes/a reads the CRLs beside where it really is (crls.find), which the stamp never saw.
    "nodes/ moved beside a CRL, and linked": lambda out: (
        (
            _moved_and_linked(out, "nodes"),
            _crl_revoking(out, "nodes/a/node.crt", out.parent / "elsewhere" / names.CRL_DIR),
        )
        and ONE_MORE
    ),
    # Review: a certs directory that is a link was judged by the folders on its way only.
    "a node's folder linked, a CRL beside its target": lambda out: _crl_revoking(
        out, "nodes/a/node.crt", out.parent / "elsewhere" / names.CRL_DIR
    ),
    "a node's folder linked under two names, a file in it rewritten into the CA key": lambda out: (
        _rewritten_in_place(out / "nodes/a/notes.txt", (out / "my-safe-directory/ca.key").read_bytes())
    ),
    # Second review: nodes/crl (read by the audit of nodes/a) a link to a folder that the stamp holds
    # under another name (www/, walked first), the CRL there rewritten in place.
    "a CRL folder linked, its CRL rewritten in place": lambda out: _crl_revoking(
        out, "nodes/a/node.crt", out.parent / "shared"
    ),
}
PREPARED: dict[str, Callable[[Path], object]] = {
    "a file beside the node's files rewritten into the CA key": lambda out: _notes_in(out / "nodes/a"),
    "a node's folder linked, a CRL beside its target": lambda out: _moved_and_linked(out, "nodes/a"),
    "a CRL folder linked, its CRL rewritten in place": lambda out: (
        _crl_revoking(out, None, out.parent / "shared"),
        (out / "www").symlink_to(out.parent / "shared"),  # at the top: walked before nodes/ is
        (out / "nodes" / names.CRL_DIR).symlink_to(out.parent / "shared"),
    ),
    # signatures walks a linked folder once: here under alias/, so the stamp holds no nodes/a/notes.txt.
    "a node's folder linked under two names, a file in it rewritten into the CA key": lambda out: (
        _notes_in(out / "nodes/a"),
        _moved_and_linked(out, "nodes/a", "alias"),
    ),
}


def _notes_in(folder: Path) -> None:
    (folder / "notes.txt").write_text("CockroachDB does not read this file\n")


@pytest.mark.parametrize("change", NOT_CLEAN_NOW)
def test_a_health_check_audits_what_may_audit_otherwise_now(
    change: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = []
    for folder, spec, out in _one_more_made(tmp_path, PREPARED.get(change)):
        write_spec(folder, NOT_CLEAN_NOW[change](out))
        answers.append(_answer(spec, out, monkeypatch, capsys))
    assert answers[0] == answers[1]
    assert answers[0][0] != 0 and "nodes/a" in answers[0][1], answers[0]


def _answer(
    spec: Path, out: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    """`issue`'s status, and what it printed without what differs between two folders."""
    status, printed, _ = issue(spec, out, monkeypatch, capsys)
    return status, _same_for_both(printed, out.parent)


def test_a_health_check_audits_again_under_another_key_permission_switch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The audit reads COCKROACH_SKIP_KEY_PERMISSION_CHECK: what the stamp's run found clean without it
    is audited again with it set to what CockroachDB refuses, as without a stamp."""
    answers = []
    for _, spec, out in _one_more_made(tmp_path):
        with monkeypatch.context() as switched:
            switched.setenv("COCKROACH_SKIP_KEY_PERMISSION_CHECK", "maybe")
            answers.append(_answer(spec, out, monkeypatch, capsys))
    assert answers[0] == answers[1]
    assert answers[0][0] != 0 and "nodes/a" in answers[0][1], answers[0]


def test_a_crl_beside_a_linked_folder_s_target_is_part_of_what_the_stamp_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Review of issue 16: the audit of a certs directory that is a link reads the CRLs beside its target
    (crls.find resolves it); the stamp held those beside the output folder only, so a CRL revoking a
    certificate there was answered "up to date"."""
    answers = []
    for _, spec, out in _stamped_with(tmp_path, lambda out: _moved_and_linked(out, "certs")):
        _crl_revoking(out, "certs/client.root.crt", out.parent / "elsewhere" / names.CRL_DIR)
        answers.append(_answer(spec, out, monkeypatch, capsys))
    assert answers[0] == answers[1]
    assert answers[0][0] != 0 and "client.root.crt: revoked" in answers[0][1], answers[0]


def test_a_health_check_audits_again_with_another_cryptography(
    clean: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Review of issue 16: the audit's answer depends on the library that parses the files, and an
    upgrade of it keeps crdb-certs' code as it was."""
    spec, out = clean
    write_spec(spec.parent, ONE_MORE)
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    audited: list[str] = []
    real = audit.audit
    monkeypatch.setattr(
        audit, "audit", lambda d, *a, **k: audited.append(d.relative_to(out).as_posix()) or real(d, *a, **k)
    )
    monkeypatch.setattr(cryptography, "__version__", "0.0.1")
    assert issue(spec, out, monkeypatch, capsys)[0] == 0
    assert audited == ["certs", "nodes/a", "nodes/b", "nodes/c"]


def test_a_record_longer_than_a_certificate_is_found_as_the_spec_renders_it(
    clean: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Measured at 10,000 nodes: the record (1 MB) was read only up to a certificate's read limit
    (files.MAX_READ, 1 MiB), so it never matched what the spec renders and every run planned it again. The
    run after one node more then wrote nothing, yet its plan wrote a file: no health check could skip a
    folder. Here the read limit is made shorter than this folder's record."""
    spec, out = clean
    short = (out / names.RECORD).stat().st_size // 2

    def read(path: str, limit: int | None = None) -> bytes:
        if limit is None:  # read up to the default limit, as for a certificate
            limit = short if path.endswith(names.RECORD) else MAX_READ
        return read_regular(path, limit)

    monkeypatch.setattr(state, "read_regular", read)
    the_spec = load_spec(spec, out, None, None)
    todo = runner.pending(the_spec, out)
    assert not [p for step in todo.steps for p in writes(step)], "a plan that writes nothing"


def test_a_linked_certificate_s_dates_are_part_of_the_stamp(tmp_path: Path) -> None:
    """Second review of issue 16: the stamp took the dates of the certificates that are regular files
    only. Node a's certificate (300 days, the others 365) kept elsewhere and linked into its folder:
    310 days on, it had ended, and the stamp answered "up to date"."""
    answers = []
    for with_stamp in (True, False):
        folder = tmp_path / ("stamped" if with_stamp else "not")
        out, first = folder / "out", SPEC.split('\n\n[[nodes]]\nname = "b"')[0]
        spec = write_spec(folder, "cert_days = 300\n" + first)
        assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
        write_spec(folder, SPEC)  # the others with the default lifetime; node a's certificate is kept
        assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
        _moved_and_linked(out, "nodes/a/node.crt")
        stamped(spec, out)
        if not with_stamp:
            (out / names.STAMP).unlink()
        run = _issue_later(310, spec, out)
        answers.append((run.returncode, _same_for_both(run.stdout + run.stderr, folder)))
    assert answers[0] == answers[1]
    assert answers[0][0] != 0 and "a: expired" in answers[0][1], answers[0]


def test_a_health_check_warns_of_every_certificate_near_its_end(tmp_path: Path) -> None:
    """340 days on, every 365-day certificate is within the audit's 30-day warning: each folder the stamp
    saw clean says so, as without a stamp."""
    answers = []
    for folder, spec, out in _one_more_made(tmp_path):
        run = _issue_later(340, spec, out)
        answers.append((run.returncode, _same_for_both(run.stdout + run.stderr, folder)))
    assert answers[0] == answers[1]
    assert all(f"nodes/{n}:" in answers[0][1] for n in "abc"), answers[0]


def test_a_stamp_of_another_input_is_not_parsed(
    clean: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16: a spec with one node more is another input; the stamp of 10,000 nodes is 8 MB of JSON,
    and its first bytes say it is not this input's."""
    _, out = clean
    key = held_in(out)["key"]
    loads = json.loads

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the stamp was parsed")

    monkeypatch.setattr(json, "loads", refused)
    assert not stamp.matches(out, "0" * 64)
    monkeypatch.setattr(json, "loads", loads)
    assert stamp.matches(out, key)


def test_the_stamp_vouches_for_no_certificate_past_its_end(tmp_path: Path) -> None:
    """400 days on, every 365-day certificate has ended: one node more, and each is found expired, as
    without a stamp."""
    answers = []
    for folder, spec, out in _with_and_without_stamp(tmp_path):
        write_spec(folder, ONE_MORE)
        run = _issue_later(400, spec, out)
        answers.append((run.returncode, _same_for_both(run.stdout + run.stderr, folder)))
    assert answers[0] == answers[1]
    assert "node.crt" in answers[0][1], answers[0]


def test_check_of_a_read_only_folder_is_answered_from_the_stamp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Review of issue 16: the stamp was looked at under the run's lock, its file opened for writing:
    `issue --check` of a folder this user may not write to failed instead of answering. It is read under
    a shared lock on the file opened read-only. Read-only here: `chmod -R a-w`, or as root (whom modes do
    not stop) a tmpfs remounted read-only."""
    spec, out = write_spec(tmp_path, SPEC), tmp_path / "out"
    as_root = os.geteuid() == 0
    with tmpfs(out, "size=4m,mode=0755") if as_root else nullcontext():
        stamped(spec, out)
        if as_root:
            subprocess.run(["mount", "-o", "remount,ro", out], check=True)
        else:
            subprocess.run(["chmod", "-R", "a-w", out], check=True)
        try:
            status, printed, phases = issue(spec, out, monkeypatch, capsys, "--check")
        finally:
            if not as_root:
                subprocess.run(["chmod", "-R", "u+w", out], check=True)
    assert (status, printed) == (0, f"{out}: up to date\n")
    # A remount changes no file: the stamp answers. chmod changes every file's mode: the full way does.
    assert ("planning" in phases) == (not as_root), phases


def test_check_beside_a_run_that_holds_the_lock_answers_at_once(
    clean: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Review of issue 16: the stamp was looked at under the run's exclusive lock, waited for: `issue
    --check` beside a running `issue` (minutes at 10,000 nodes) waited for it to end. The stamp is not
    waited for: --check takes the full way, which changes nothing and takes no lock, and answers now."""
    spec, out = clean
    hold = (
        "import fcntl, sys; f = open(sys.argv[1], 'rb'); fcntl.flock(f, fcntl.LOCK_EX);"
        " print('held', flush=True); sys.stdin.read()"
    )
    lock = out / ".crdb-certs" / "lock"
    argv = [sys.executable, "-c", hold, str(lock)]
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as holder:
        assert holder.stdin is not None and holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        try:
            with no_hang(30):
                status, printed, phases = issue(spec, out, monkeypatch, capsys, "--check")
        finally:
            holder.stdin.close()  # it ends, and the lock with it
    assert (status, printed) == (0, f"{out}: up to date\n")
    assert "planning" in phases, phases


def test_a_crl_beside_the_folder_is_part_of_what_the_stamp_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Review of issue 16: the audit of certs/ also reads the CRLs beside the output folder (crls.find:
    <its parent>/crl/*.crl); a CRL put or changed there was answered "up to date" from the stamp. The
    CRLs here are the folder's CA's, made by `crl` and `revoke` in a copy of the folder."""
    spec, out = write_spec(tmp_path, SPEC), tmp_path / "out"
    stamped(spec, out)
    copy = tmp_path / "copy" / "out"
    shutil.copytree(out, copy, symlinks=True)
    assert crdb("crl", "--out", copy) == 0  # revokes nothing
    beside = tmp_path / names.CRL_DIR
    beside.mkdir()
    shutil.copyfile(copy / "crl/ca.crl", beside / "ca.crl")
    time.sleep(0.05)  # so that the run below stamps the folder with the CRL
    status, printed, phases = issue(spec, out, monkeypatch, capsys)
    assert (status, printed) == (0, f"{out}: up to date, nothing changed\n")
    assert "planning" in phases, "a CRL added beside the folder: answered from the stamp"
    assert "planning" not in issue(spec, out, monkeypatch, capsys)[2], "stamped with the CRL"
    assert crdb("revoke", "--out", copy, "--clients", "root") == 0
    shutil.copyfile(copy / "crl/ca.crl", beside / "ca.crl")  # the same file, rewritten
    status, printed, phases = issue(spec, out, monkeypatch, capsys)
    assert "planning" in phases, "a CRL changed beside the folder: answered from the stamp"
    assert status == 1 and "client.root.crt" in printed and "revoked" in printed, printed


def test_a_stamp_made_by_other_code_is_not_trusted(
    clean: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The stamp holds a digest of crdb-certs' code and templates, not only its version: a template
    edited under the same version number (a checkout, a patch) is planned again."""
    spec, out = clean
    templates = tmp_path / "templates"
    shutil.copytree(REPO / "templates", templates)
    with (templates / "node.cnf.j2").open("a") as f:
        f.write("{# another template #}\n")
    monkeypatch.setattr(stamp, "resource", lambda name: templates)
    stamp.code.cache_clear()
    try:
        status, printed, phases = issue(spec, out, monkeypatch, capsys)
    finally:
        stamp.code.cache_clear()
    assert status == 0 and "planning" in phases, printed


def test_the_stamp_is_written_without_a_whole_copy_of_it_in_memory(tmp_path: Path) -> None:
    """Issue 16 (peak memory): the stamp of 10,000 nodes (~6 MB) is written at the end of the run, when its
    memory is at its highest. It is streamed to the file: built whole first, its pieces and the string
    cost ~3.5 times its size (~13 MB at 10,000 nodes) on top of the signatures it holds."""
    out = tmp_path / "out"
    for i in range(1000):
        folder = out / names.NODES_DIR / f"node{i}"
        folder.mkdir(parents=True)
        for name in ("node.key", "client.node.key", "extra.txt"):
            (folder / name).write_text("x")
    (out / names.STATE_DIR).mkdir()
    time.sleep(0.05)  # no file within a clock tick of the stamp: it is written
    tracemalloc.start()
    try:
        stamp.write(out, "key", [], {}, {})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    size = (out / names.STAMP).stat().st_size
    # What it needs: the signatures (~2.6 times the file's size); built whole first, ~6 times.
    assert peak < 4 * size, (peak, size)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("inputs", None),
        ("inputs", []),
        ("inputs", {"node:a": [1, 2]}),
        ("files", []),
        ("dates", None),
        ("dates", {"nodes/a/node.crt": "x"}),
        ("named", None),
        ("taken", "0"),
        ("expects", {"node:a": 1}),
    ],
)
def test_a_stamp_edited_by_hand_is_no_stamp(
    field: str,
    value: object,
    clean: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Review of issue 16: a stamp whose fields have another shape crashed the run with a traceback
    (`"inputs": null`, `"files": []`, …). It is no stamp: the full way, and its answer."""
    spec, out = clean
    held = held_in(out)
    held[field] = value
    rewritten(out, held)  # sealed again: the shape is what is looked at
    status, printed, phases = issue(spec, out, monkeypatch, capsys)
    assert (status, "planning" in phases) == (0, True), printed
    write_spec(spec.parent, ONE_MORE)
    rewritten(out, held)
    status, printed, _ = issue(spec, out, monkeypatch, capsys)
    assert status == 0 and "made node c" in printed, printed


def test_a_stamp_edited_in_any_member_is_no_stamp(
    clean: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Review of issue 16: the record's settings (and a certificate's dates) are believed as the stamp
    holds them; edited ("docs" for "secure"), the run refused a difference the folder does not have.
    The seal (the digest of the rest) makes any edit no stamp."""
    spec, out = clean
    path = out / names.STAMP
    body, _, seal = path.read_bytes().rpartition(b"\n")
    assert b'"secure"' in body
    path.write_bytes(body.replace(b'"secure"', b'"docs"', 1) + b"\n" + seal)
    assert not stamp.matches(out, held_in(out)["key"])
    write_spec(spec.parent, ONE_MORE)
    status, printed, _ = issue(spec, out, monkeypatch, capsys)
    assert status == 0 and "made node c" in printed, printed


def test_a_dangling_link_among_the_code_is_no_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review of issue 16: the code's digest read every *.py of the package, and an editor's lock link
    (`.#cli.py`, pointing nowhere) made every `issue` fail."""
    package = tmp_path / "orchestrator"
    shutil.copytree(REPO / "orchestrator", package, ignore=shutil.ignore_patterns("__pycache__"))
    before = _code_of(package, monkeypatch)
    (package / ".#cli.py").symlink_to("root@host.1234:1700000000")
    assert _code_of(package, monkeypatch) == before
    (package / "cli.py").chmod(0o000)
    if os.access(package / "cli.py", os.R_OK):
        return  # root reads it anyway: the rest holds without this part
    assert _code_of(package, monkeypatch) not in (before, _code_of(package, monkeypatch))


def _code_of(package: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(stamp.orchestrator, "__file__", str(package / "__init__.py"))
    stamp.code.cache_clear()
    try:
        return stamp.code()
    finally:
        stamp.code.cache_clear()


def test_a_file_system_of_whole_seconds_keeps_a_stamp_racy_for_two_seconds() -> None:
    """Review of issue 16: on a file system that keeps whole seconds (ext4 with 128-byte inodes) or two
    (FAT), a file rewritten in place within that second keeps its times, so 20 ms was no guard."""
    st = os.stat("/")
    whole = os.stat_result(tuple(st)[:10], {"st_mtime_ns": 7 * 10**9, "st_ctime_ns": 7 * 10**9})
    fine = os.stat_result(tuple(st)[:10], {"st_mtime_ns": 7 * 10**9 + 1, "st_ctime_ns": 7 * 10**9})
    assert stamp.changed(whole) == 9 * 10**9
    assert stamp.changed(fine) == 7 * 10**9 + 1


@pytest.fixture
def whole_seconds(tmp_path: Path) -> Iterator[Path]:
    """A folder on an ext4 file system with 128-byte inodes (file times in whole seconds), loop-mounted;
    the test is skipped where this process may not make or mount one."""
    image, where = tmp_path / "fs.img", tmp_path / "mnt"
    where.mkdir()
    try:
        subprocess.run(
            ["mke2fs", "-q", "-F", "-t", "ext4", "-I", "128", image, "16M"], check=True, capture_output=True
        )
        subprocess.run(["mount", "-o", "loop", image, where], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"cannot make and mount an ext4 file system of whole seconds here ({e})")
    try:
        yield where
    finally:
        subprocess.run(["umount", where], check=True)


def test_a_key_rewritten_within_the_second_of_the_stamp_is_looked_at(
    whole_seconds: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Review of issue 16 (reproduced on such a file system): node b's key written into node a's in
    place, within the second the run ended in, kept every time of the file; one node more was then
    answered with node a left broken. A run that ends within two seconds of its last write there leaves
    no stamp, and node a is made again."""
    spec, out = write_spec(whole_seconds, SPEC), whole_seconds / "out"
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    assert not (out / names.STAMP).exists(), "stamped within the resolution of the file times"
    with (out / "nodes/a/node.key").open("r+b") as key:
        key.write((out / "nodes/b/node.key").read_bytes())
    write_spec(whole_seconds, ONE_MORE)
    status, printed, _ = issue(spec, out, monkeypatch, capsys)
    assert status == 0 and "made node a" in printed and "made node c" in printed, printed


# Review of issue 16's +1 speed-ups: a run with the stamp left another folder than the same run without.

_NODE = '[[nodes]]\nname = "{0}"\nhosts = ["{0}.example.com"]\n'
_WITH_UI = 'key_type = "ec"\n{nodes}[[clients]]\nuser = "root"\n[ui]\nhosts = ["ui.example.com"]\n'


def _nodes(names: str) -> str:
    return "".join(_NODE.format(n) for n in names)


def _stamped_twice(tmp_path: Path, text: str) -> list[tuple[Path, Path]]:
    """A stamped folder and a byte-for-byte copy of it without its stamp (the same keys): (spec, out)."""
    folder = tmp_path / "stamped"
    spec, out = write_spec(folder, text), folder / "out"
    stamped(spec, out)
    subprocess.run(["cp", "-a", str(folder), str(tmp_path / "not")], check=True)
    (tmp_path / "not/out" / names.STAMP).unlink()
    return [(spec, out), (tmp_path / "not" / spec.name, tmp_path / "not/out")]


def _same_ui_everywhere(out: Path, nodes: str) -> list[bool]:
    first = (out / f"nodes/{nodes[0]}/ui.crt").read_bytes()
    return [(out / f"nodes/{n}/ui.crt").read_bytes() == first for n in nodes]


def test_a_node_added_first_gets_the_db_console_pair_of_every_node(tmp_path: Path) -> None:
    """The DB Console pair is made in the first node's folder and copied into the others: a node added
    first makes a new one there, which every node gets, stamp or not."""
    outcome = []
    for spec, out in _stamped_twice(tmp_path, _WITH_UI.format(nodes=_nodes("ab"))):
        write_spec(spec.parent, _WITH_UI.format(nodes=_nodes("cab")))
        assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
        outcome.append(_same_ui_everywhere(out, "cab"))
    assert outcome == [[True, True, True]] * 2, outcome


def test_the_node_left_alone_gets_the_db_console_pair_made_in_certs(tmp_path: Path) -> None:
    """One node left: certs/ is its folder too, the DB Console pair is made there and copied to it."""
    outcome = []
    for spec, out in _stamped_twice(tmp_path, _WITH_UI.format(nodes=_nodes("ab"))):
        write_spec(spec.parent, _WITH_UI.format(nodes=_nodes("a")))
        shutil.rmtree(out / "nodes/b")
        assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
        outcome.append((out / "certs/ui.crt").read_bytes() == (out / "nodes/a/ui.crt").read_bytes())
    assert outcome == [True, True], outcome


def test_an_imported_db_console_certificate_renewed_in_place_reaches_every_node(tmp_path: Path) -> None:
    org = orgca.OrgCA(tmp_path / "org")
    for version in ("v1", "v2", "current"):
        (tmp_path / version).mkdir()
    old = org.issue(tmp_path / "v1", "ui", ["ui.example.com"])
    new = org.issue(tmp_path / "v2", "ui", ["ui.example.com"])
    current = tmp_path / "current"
    for src, name in zip(old, ("ui.crt", "ui.key"), strict=True):
        shutil.copy(src, current / name)
    text = (
        f'key_type = "ec"\n[ca]\ncert = "{org.cert_path}"\nkey = "{org.key_path}"\n{_nodes("abc")}'
        f'[[clients]]\nuser = "root"\n[ui]\nissuer = "import"\nhosts = ["ui.example.com"]\n'
        f'cert = "{current}/ui.crt"\nkey = "{current}/ui.key"\n'
    )
    folders = _stamped_twice(tmp_path, text)
    for src, name in zip(new, ("ui.crt", "ui.key"), strict=True):
        shutil.copy(src, current / name)
    outcome = []
    for spec, out in folders:
        assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
        outcome.append([(out / f"nodes/{n}/ui.crt").read_bytes() == new[0].read_bytes() for n in "abc"])
    assert outcome == [[True, True, True]] * 2, outcome


def test_your_own_ca_file_made_a_link_to_a_copy_of_it_is_the_same_ca(tmp_path: Path) -> None:
    """The record holds [ca]'s path, resolved when it was written; read back, it is resolved again. The
    stamp's copy of it must be too: else the same CA behind a link is "[ca] differs"."""
    org = orgca.OrgCA(tmp_path / "org")
    own = f'key_type = "ec"\n[ca]\ncert = "{org.cert_path}"\nkey = "{org.key_path}"\n'
    folders = _stamped_twice(tmp_path, own + _nodes("ab") + '[[clients]]\nuser = "root"\n')
    dated = org.cert_path.with_name("org-ca-2026.crt")
    shutil.copy2(org.cert_path, dated)
    org.cert_path.unlink()
    org.cert_path.symlink_to(dated.name)
    assert [crdb("issue", "--config", spec, "--out", out, "--quiet") for spec, out in folders] == [0, 0]


def test_a_link_in_a_node_s_folder_is_looked_at_whatever_its_listing(tmp_path: Path) -> None:
    """nodes/b/ui.crt, a link to a folder when the stamp was written (not a file: nothing to say), then to
    a file (a file the spec does not make): the folder's listing is the same, the answer is not."""
    outcome = []
    for number, (spec, out) in enumerate(_stamped_twice(tmp_path, SPEC)):
        target = tmp_path / f"target-{number}"
        target.mkdir()
        (out / "nodes/b/ui.crt").symlink_to(target)
        time.sleep(0.05)
        assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0  # stamps it so
        if number == 1:
            (out / names.STAMP).unlink()
        target.rmdir()
        shutil.copyfile(out / "nodes/b/node.crt", target)
        write_spec(spec.parent, ONE_MORE)
        outcome.append(crdb("issue", "--config", spec, "--out", out, "--quiet"))
    assert outcome == [1, 1], outcome


def test_rotate_ca_reads_of_the_record_only_whose_ca_signs(clean: tuple[Path, Path]) -> None:
    """Review of issue 16: the state inspection took the record's settings by parsing its whole spec, so
    a command given --config (rotate-ca) failed on a host in the record it never uses."""
    spec, out = clean
    path = out / names.RECORD
    path.write_text(path.read_text().replace('"a.example.com"', '"bad host!"'))
    assert crdb("rotate-ca", "--config", spec, "--out", out, "--quiet") == 0
