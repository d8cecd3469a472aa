"""The stamp (orchestrator/stamp.py): `issue` on a folder nothing has touched since the last clean run
answers without planning (issue 16: a no-op re-run of 10,000 nodes in seconds); anything that could
change the answer takes the full way and gets the full answer."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator import names, stamp
from tests import orgca
from tests.conftest import REPO, crdb, write_spec

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
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    time.sleep(0.05)  # a run of a few certificates ends within a clock tick of its last file: not stamped
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    assert (out / names.STAMP).is_file(), "a clean run that changed nothing stamps the folder"
    return spec, out


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
    command = ["issue", "--config", str(spec), "--out", str(out)]
    run = subprocess.run(
        ["faketime", "-f", "+340d", sys.executable, "-m", "orchestrator", *command],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert run.returncode == 0, run.stderr
    assert "node.crt expires on" in run.stdout, run.stdout


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
    key = json.loads((out / names.STAMP).read_text())["key"]
    _same_bytes(out)
    stamp.write(out, key, [])
    assert not stamp.matches(out, key), "the old stamp, and no new one"
    time.sleep(0.05)
    stamp.write(out, key, [])
    assert stamp.matches(out, key)
    held = json.loads((out / names.STAMP).read_text())
    held["taken"] = held["newest"] = (out / "certs/client.root.crt").stat().st_ctime_ns
    (out / names.STAMP).write_text(json.dumps(held))
    assert not stamp.matches(out, key)


def test_a_file_that_is_another_one_is_not_trusted_even_with_older_times(clean: tuple[Path, Path]) -> None:
    """Every change moves a file's change time past the stamp's, but a clock set back would not: the
    signature itself must match (here the stamp remembers another inode for one file)."""
    _, out = clean
    path = out / names.STAMP
    held = json.loads(path.read_text())
    assert stamp.matches(out, held["key"])
    mode, uid, gid, inode, rest = held["files"]["nodes/a/node.key"].split(":", 4)
    held["files"]["nodes/a/node.key"] = f"{mode}:{uid}:{gid}:{int(inode) + 1}:{rest}"
    path.write_text(json.dumps(held))
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
        stamp.write(out, "key", [])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    size = (out / names.STAMP).stat().st_size
    # What it needs: the signatures (~2.6 times the file's size); built whole first, ~6 times.
    assert peak < 4 * size, (peak, size)
