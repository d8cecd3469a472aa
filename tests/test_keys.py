"""Keys: never readable beyond their owner at any moment, whatever the caller's umask; the CA key only in
my-safe-directory/ (never in a certs directory, a transcript or an error message), never replaced, and
never used when others can read it."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from tests import pkicheck
from tests.conftest import REPO, crdb, write_spec

SPEC = '[[nodes]]\nname = "a"\nhosts = ["a.example.com"]\n\n[[clients]]\nuser = "root"\n'
REAL = shutil.which("openssl") or "/usr/bin/openssl"


def test_umask_000_openssl_children_run_under_077_and_no_key_is_ever_readable(tmp_path: Path) -> None:
    """The caller's umask is 000. Every openssl child records the umask it inherited; meanwhile the test
    polls the staging folder and records the mode of every key it sees."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    umasks = tmp_path / "umasks"
    (bin_dir / "openssl").write_text(f"#!/bin/sh\numask >> '{umasks}'\nexec '{REAL}' \"$@\"\n")
    (bin_dir / "openssl").chmod(0o755)
    spec, out = write_spec(tmp_path, SPEC), tmp_path / "out"
    seen: dict[str, int] = {}
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            with contextlib.suppress(FileNotFoundError):  # the run moved it (or the folder) meanwhile
                for key in (out / ".crdb-certs").glob("stage-*/**/*.key"):
                    seen[key.name] = seen.get(key.name, 0) | stat.S_IMODE(key.lstat().st_mode)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        run = subprocess.run(
            [sys.executable, "-m", "orchestrator", "issue", "--config", spec, "--out", out, "--quiet"],
            cwd=REPO,
            env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
            capture_output=True,
            text=True,
            preexec_fn=lambda: os.umask(0),
        )
    finally:
        done.set()
        poller.join()
    assert run.returncode == 0, run.stderr
    recorded = umasks.read_text().split()
    # version, genrsa and req -x509 (the CA), req -newkey and ca (a node, a client)
    assert len(recorded) == 7 and set(recorded) == {"0077"}, recorded
    assert {"node.key", "client.root.key"} <= seen.keys(), "the poller saw the keys being made"
    assert all(mode & 0o077 == 0 for mode in seen.values()), seen
    for path in out.rglob("*"):
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_dir():
            assert mode & 0o022 == 0, f"{path} is writable by others: {mode:o}"
        elif path.suffix == ".crt":
            assert mode == 0o644, path
        else:
            assert mode & 0o077 == 0, f"{path} is readable by others: {mode:o}"


def test_the_ca_key_is_only_in_my_safe_directory(cluster_pki: Path) -> None:
    secret = (cluster_pki / "my-safe-directory" / "ca.key").read_bytes()
    body = b"".join(secret.splitlines()[1:-1])
    for path in cluster_pki.rglob("*"):
        if path.is_file() and path.parent.name != "my-safe-directory":
            data = path.read_bytes()
            assert body[:64] not in data.replace(b"\n", b""), f"the CA key is in {path}"
    for transcript in cluster_pki.glob("transcript-*.sh"):
        assert b"PRIVATE KEY" not in transcript.read_bytes()
    assert {p.name for p in (cluster_pki / ".crdb-certs").iterdir()} - {"stamp.json"} == {"lock"}


@pytest.fixture
def pki(tmp_path: Path) -> tuple[Path, Path]:
    spec, out = write_spec(tmp_path, SPEC), tmp_path / "out"
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    return spec, out


def _state(out: Path) -> dict[str, tuple[int, bytes]]:
    return {
        p.relative_to(out).as_posix(): (p.stat().st_mtime_ns, p.read_bytes())
        for p in out.rglob("*")
        if p.is_file()
    }


def test_a_ca_key_others_can_read_is_refused(
    pki: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    spec, out = pki
    (out / "certs" / "client.root.crt").unlink()  # something to do, that needs the CA key
    (out / "my-safe-directory" / "ca.key").chmod(0o644)
    before = _state(out)
    capsys.readouterr()
    assert crdb("issue", "--config", spec, "--out", out) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "ca.key: readable by others (mode 0644)" in err and "\n" not in err
    assert _state(out) == before, "a refused run changed files"


def test_a_ca_key_others_can_read_fails_a_run_with_nothing_to_do(
    pki: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A no-op `issue` is a health check: a CA key others can read fails it (exit 1, one line) like the key
    a signing run is refused for, not only when something needs signing."""
    spec, out = pki
    key = out / "my-safe-directory" / "ca.key"
    key.chmod(0o644)
    before = _state(out)
    capsys.readouterr()
    assert crdb("issue", "--config", spec, "--out", out) == 1
    err = capsys.readouterr().err
    assert err == f"error: {key}: readable by others (mode 0644); `chmod 400` it, then run again\n", err
    assert _state(out) == before
    key.chmod(0o400)
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0


def test_a_ca_certificate_without_its_key_is_not_replaced(
    pki: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    spec, out = pki
    key = out / "my-safe-directory" / "ca.key"
    kept = tmp = key.read_bytes()
    key.unlink()
    before = _state(out)
    capsys.readouterr()
    assert crdb("issue", "--config", spec, "--out", out) == 2
    err = capsys.readouterr().err
    assert "this CA certificate exists but its key my-safe-directory/ca.key does not" in err
    assert _state(out) == before, "a new CA was made silently"
    key.write_bytes(kept)  # put back: the run completes with the same CA
    key.chmod(0o400)
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    assert key.read_bytes() == tmp


def test_a_different_ca_key_is_not_taken_for_the_ca_s(
    pki: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, out = pki
    other = tmp_path / "other.key"
    subprocess.run([REAL, "genrsa", "-out", other, "2048"], check=True, capture_output=True)
    key = out / "my-safe-directory" / "ca.key"
    key.chmod(0o600)
    key.write_bytes(other.read_bytes())
    key.chmod(0o400)
    before = _state(out)
    capsys.readouterr()
    assert crdb("issue", "--config", spec, "--out", out) == 2
    assert "ca.key: this is not the key of" in capsys.readouterr().err
    assert _state(out) == before


def test_a_renewed_ca_certificate_keeps_its_key(pki: tuple[Path, Path]) -> None:
    """certs/ca.crt gone: issue points at the copy every node holds (test_record); asked to, it makes the
    CA certificate again with the same key, never a new CA key."""
    spec, out = pki
    key = (out / "my-safe-directory" / "ca.key").read_bytes()
    (out / "certs" / "ca.crt").unlink()
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 1
    assert not (out / "certs" / "ca.crt").exists()
    assert crdb("issue", "--config", spec, "--out", out, "--quiet", "--reissue") == 0
    assert (out / "my-safe-directory" / "ca.key").read_bytes() == key
    pkicheck.assert_key_pair(out / "certs" / "ca.crt", out / "my-safe-directory" / "ca.key")
    pkicheck.assert_chains(out / "nodes/a/node.crt", out / "certs" / "ca.crt")


def test_my_safe_directory_on_another_file_system(tmp_path: Path) -> None:
    """my-safe-directory/ may be a link to removable media: the new CA key still arrives whole, private,
    and only there."""
    elsewhere = Path("/dev/shm") / f"crdb-certs-test-{uuid.uuid4().hex}"
    if os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        elsewhere = tmp_path / "elsewhere"  # same device here: still a symlinked folder
    elsewhere.mkdir(mode=0o700)
    try:
        out = tmp_path / "out"
        out.mkdir()
        (out / "my-safe-directory").symlink_to(elsewhere)
        spec = write_spec(tmp_path, SPEC)
        assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
        assert [p.name for p in elsewhere.iterdir()] == ["ca.key"]
        assert pkicheck.mode(elsewhere / "ca.key") == 0o400
        pkicheck.assert_key_pair(out / "certs" / "ca.crt", elsewhere / "ca.key")
    finally:
        shutil.rmtree(elsewhere)
