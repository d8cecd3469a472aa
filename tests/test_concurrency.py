"""Two `issue` runs at once on one output folder: they take turns (an exclusive lock on the folder, taken
before either looks at it), so the CA database stays whole and no serial is issued twice
(openssl-traps.md §4.3: 16 unlocked `openssl ca` runs left 13 certificates, 12 of them serial 01)."""

from __future__ import annotations

import fcntl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509

from orchestrator import workers
from tests import pkicheck
from tests.conftest import REPO, write_spec
from tests.test_faults import assert_full_pki

NODES = {"a": ["a.example.com"], "b": ["b.example.com", "127.0.0.1"]}
SPEC = """\
[[nodes]]
name = "a"
hosts = ["a.example.com"]

[[nodes]]
name = "b"
hosts = ["b.example.com", "127.0.0.1"]

[[clients]]
user = "root"
"""
MORE = SPEC + '\n[[nodes]]\nname = "c"\nhosts = ["c.example.com"]\n\n[[clients]]\nuser = "bob"\n'


def start(spec: Path, out: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "issue", "--config", str(spec), "--out", str(out), *extra],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=err,
        )


def database(out: Path) -> list[list[str]]:
    return [line.split("\t") for line in (out / "index.txt").read_text().splitlines()]


def issued(out: Path) -> dict[Path, int]:
    certs = [*out.glob("nodes/*/node.crt"), *out.glob("certs/client.*.crt")]
    return {c: x509.load_pem_x509_certificate(c.read_bytes()).serial_number for c in certs}


def test_two_runs_at_once_take_turns(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, SPEC)
    out = tmp_path / "out"
    (out / ".crdb-certs").mkdir(parents=True)
    logs = [tmp_path / "a.err", tmp_path / "b.err"]
    # Hold the lock, so both runs are surely running at the same time and waiting for it.
    with (out / ".crdb-certs" / "lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        runs = [start(spec, out, log) for log in logs]
        deadline = time.monotonic() + 30
        while not all("waiting for another run" in log.read_text() for log in logs):
            assert time.monotonic() < deadline, [log.read_text() for log in logs]
            assert all(r.poll() is None for r in runs), "a run did not wait for the lock"
            time.sleep(0.05)
        assert not (out / "certs").exists()
        fcntl.flock(held, fcntl.LOCK_UN)
    outputs = [r.communicate(timeout=60)[0].decode() for r in runs]
    assert [r.returncode for r in runs] == [0, 0], [log.read_text() for log in logs]
    assert sum("nothing changed" in o for o in outputs) == 1, outputs
    assert len(list(out.glob("transcript-*.sh"))) == 1
    assert_full_pki(out, NODES, ["root"])
    rows = database(out)
    assert len(rows) == 3, "one line per certificate issued"
    assert sorted(int(r[3], 16) for r in rows) == sorted(issued(out).values())


def test_two_different_specs_at_once_with_sequential_serials(tmp_path: Path) -> None:
    """The docs profile counts serials 01, 02, ... in serial.txt: the runs race for real here (no lock
    held by the test), and whichever goes second adds to the first one's database."""
    small, big = write_spec(tmp_path, SPEC, "small.toml"), write_spec(tmp_path, MORE, "big.toml")
    out = tmp_path / "out"
    runs = [
        start(small, out, tmp_path / "small.err", "--profile", "docs", "--quiet"),
        start(big, out, tmp_path / "big.err", "--profile", "docs", "--quiet"),
    ]
    for run in runs:
        run.communicate(timeout=60)
    errors = [(tmp_path / name).read_text() for name in ("small.err", "big.err")]
    # Whichever goes second: the big spec adds to the small one's folder; the small spec, run second,
    # would leave out what the big one made, and is refused (nothing removed without --prune).
    small_refused = runs[0].returncode == 1 and "not in the spec any more" in errors[0]
    assert runs[0].returncode == 0 or small_refused, errors
    assert runs[1].returncode == 0, errors
    serials = [int(r[3], 16) for r in database(out)]
    assert len(serials) == len(set(serials)), f"a serial was issued twice: {serials}"
    assert sorted(serials) == list(range(1, len(serials) + 1)), "serials are 01, 02, ... without a gap"
    certs = issued(out)
    assert len(set(certs.values())) == len(certs) == 5
    assert set(certs.values()) <= set(serials)
    ca = out / "certs" / "ca.crt"
    for name in ("a", "b", "c"):
        pkicheck.assert_chains(out / f"nodes/{name}/node.crt", ca)
    for user in ("root", "bob"):
        pkicheck.assert_chains(out / f"certs/client.{user}.crt", ca)


# Reports every fork made while the process runs another Python thread, on any Python, in the run and in
# each of its workers (orchestrator/workers.py, where `sh` forks). On 3.12+, CPython also warns when the
# kernel counts more than one thread (posixmodule.c, warn_about_fork_with_threads): that warning cannot be
# made an error, as CPython clears it (PyErr_Clear) after warning, so `-W error` would let it pass;
# `-W always` prints it (the workers are given the run's -W options), and the test reads it. (On 3.11, a
# joined thread can still be on its way out in the kernel for a moment: the kernel's count is left to
# 3.13, whose join waits for it.)
WATCH = """
import os, sys, threading

def before_fork():
    if threading.active_count() > 1:
        sys.stderr.write(f"fork beside another thread: {[t.name for t in threading.enumerate()]}\\n")

os.register_at_fork(before=before_fork)
"""
FORK_WATCH = f"""\
import sys
WATCH = {WATCH!r}
exec(WATCH)
from orchestrator import workers
workers.SERVE = WATCH + workers.SERVE
workers.SMALL = int(sys.argv[1])
from orchestrator.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("small", [workers.SMALL, 0], ids=["forks of the run", "workers"])
def test_parallel_key_generation_never_forks_beside_another_thread(small: int, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, MORE.replace("[[nodes]]", 'key_type = "ec"\n\n[[nodes]]', 1))
    out = tmp_path / "out"
    issue = ["issue", "--config", str(spec), "--out", str(out), "--jobs", "2", "--quiet"]
    run = subprocess.run(
        [sys.executable, "-W", "always::DeprecationWarning", "-c", FORK_WATCH, str(small), *issue],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "multi-threaded" not in run.stderr
    assert "fork beside another thread" not in run.stderr
    assert_full_pki(out, {**NODES, "c": ["c.example.com"]}, ["root", "bob"])
