"""Fault injection: `crdb-certs issue` is SIGKILLed at chosen points (after a plan step, or between two
renames while committing; see tests/fault_harness.py), or while an openssl child is running (a wrapper
`openssl` earlier on PATH that kills its parent). After every kill the output folder is consistent: each
certs directory present is complete and right (or is the old one, untouched), the CA key is neither lost
nor rewritten, no key is readable beyond its owner; and a re-run completes a PKI that passes the full
verification."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from orchestrator import files, runner, state, workers
from tests import pkicheck
from tests.conftest import REPO, crdb, is_stamp, no_hang, write_spec
from tests.pkicheck import CLIENT, SERVER

PYTHON = sys.executable

NODES = {"a": ["a.example.com", "127.0.0.1"], "b": ["b.example.com", "::1"]}
USERS = ["root"]
SPEC = """\
[[nodes]]
name = "a"
hosts = ["a.example.com", "127.0.0.1"]

[[nodes]]
name = "b"
hosts = ["b.example.com", "::1"]

[[clients]]
user = "root"
"""

# `python -m orchestrator` with workers.SMALL set first (0: every run uses workers, as a big one does).
LAUNCH = (
    "import sys; from orchestrator import cli, workers; workers.SMALL = int(sys.argv[1]);"
    " sys.exit(cli.main(sys.argv[2:]))"
)
POOLS = pytest.mark.parametrize("small", [workers.SMALL, 0], ids=["forks of the run", "workers"])

# A one-node PKI and its update, with EC keys: where a kill lands in the commit is under test, not the kind
# of key (test_a_killed_first_run_leaves_nothing_half_written keeps RSA ones); RSA keys take ~100x longer.
ONE_NODE = 'key_type = "ec"\n[[nodes]]\nname = "a"\nhosts = ["a.example.com"]\n\n[[clients]]\nuser = "root"\n'
UPDATED = (
    'key_type = "ec"\n[[nodes]]\nname = "a"\nhosts = ["a.example.com", "10.0.0.1"]\n\n'
    '[[nodes]]\nname = "b"\nhosts = ["b.example.com"]\n\n'
    '[[clients]]\nuser = "root"\n\n[[clients]]\nuser = "bob"\n'
)


def harness(when: str, log: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "tests.fault_harness", when, str(log), *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def events(log: Path) -> list[str]:
    return log.read_text().splitlines()


def snapshot(out: Path) -> dict[str, bytes]:
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in out.rglob("*")
        if p.is_file() and not is_stamp(p)  # a cache of a clean run
    }


def bundle_files(nodes: Iterable[str], users: Iterable[str]) -> dict[str, set[str]]:
    nodes, users = list(nodes), list(users)
    certs = {"ca.crt"} | {f"client.{u}.{x}" for u in users for x in ("crt", "key")}
    if len(nodes) == 1:
        certs |= {"node.crt", "node.key"}
    return {"certs": certs, **{f"nodes/{n}": {"ca.crt", "node.crt", "node.key"} for n in nodes}}


def assert_consistent(
    out: Path,
    nodes: dict[str, list[str]],
    users: list[str],
    old: dict[str, bytes] | None = None,
) -> None:
    """What a reader may find at any moment: each certs directory absent, old (byte for byte) or complete."""
    ca_key = out / "my-safe-directory" / "ca.key"
    if old and "my-safe-directory/ca.key" in old:
        assert ca_key.read_bytes() == old["my-safe-directory/ca.key"], "the CA key was rewritten or lost"
    for key in out.rglob("*.key"):
        assert pkicheck.mode(key) & 0o077 == 0, f"{key} is readable beyond its owner"
    if (out / "certs" / "ca.crt").exists():
        assert ca_key.exists(), "certs/ca.crt is there but its key is lost"
        pkicheck.assert_key_pair(out / "certs" / "ca.crt", ca_key)
    for folder, wanted in bundle_files(nodes, users).items():
        bundle = out / folder
        if not bundle.exists():
            continue
        present = {p.name for p in bundle.iterdir()}
        names = [f"{folder}/{n}" for n in present]
        if old is not None and all(n in old and (out / n).read_bytes() == old[n] for n in names):
            continue  # the old directory, untouched
        assert wanted <= present, f"{folder} is half-written: {sorted(present)}"
        ca = bundle / "ca.crt"
        if "node.crt" in present:
            pkicheck.assert_key_pair(bundle / "node.crt", bundle / "node.key")
            pkicheck.assert_chains(bundle / "node.crt", ca)
        for user in users if folder == "certs" else ():
            pkicheck.assert_key_pair(bundle / f"client.{user}.crt", bundle / f"client.{user}.key")
            pkicheck.assert_chains(bundle / f"client.{user}.crt", ca)
    _assert_ca_key_only_in_safe_directory(out)


def _assert_ca_key_only_in_safe_directory(out: Path) -> None:
    ca_key = out / "my-safe-directory" / "ca.key"
    if not ca_key.exists():
        return
    secret = ca_key.read_bytes()
    for path in out.rglob("*"):
        if path.is_file() and path != ca_key and ".crdb-certs" not in path.parts:
            assert secret not in path.read_bytes(), f"the CA key is in {path}"
    assert {p.name for p in (out / "my-safe-directory").iterdir()} == {"ca.key"}


def assert_full_pki(
    out: Path, nodes: dict[str, list[str]], users: list[str], profile: str = "secure"
) -> None:
    secure = profile == "secure"
    ca = out / "certs" / "ca.crt"
    pkicheck.assert_ca(ca)
    pkicheck.assert_key_pair(ca, out / "my-safe-directory" / "ca.key")
    for folder, wanted in bundle_files(nodes, users).items():
        assert wanted <= {p.name for p in (out / folder).iterdir()}, folder
        assert (out / folder / "ca.crt").read_bytes() == ca.read_bytes()
    cn = ["node"] if profile != "docs" else []
    for name, hosts in nodes.items():
        pkicheck.assert_node(out / f"nodes/{name}/node.crt", hosts, ca, cn, {SERVER, CLIENT}, secure=secure)
    for i, user in enumerate(users):
        dns = {"root"} if profile == "docs" and i == 0 else None
        pkicheck.assert_client(out / f"certs/client.{user}.crt", user, ca, secure=secure, dns=dns)
    assert not list((out / "certs").glob("*.pem"))
    left = {p.name for p in (out / ".crdb-certs").iterdir()} - {"stamp.json"}
    assert left == {"lock"}, "leftovers in the staging area"
    serials = [line.split("\t")[3] for line in (out / "index.txt").read_text().splitlines()]
    assert len(serials) == len(set(serials)), f"a serial was issued twice: {serials}"


STEP_KINDS = [
    "MakeDirs",
    "Write",
    "Run:genrsa",
    "Chmod",
    "Run:req",
    "Verify",
    "Remove",
    "RandomSerial",
    "Run:ca",
    "Copy",
]


def test_a_killed_first_run_leaves_nothing_half_written(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, SPEC)
    args = ("issue", "--config", spec, "--quiet", "--jobs", "2")
    log = tmp_path / "count.log"
    assert harness("never", log, *args, "--out", tmp_path / "full").returncode == 0
    assert_full_pki(tmp_path / "full", NODES, USERS)
    kinds = events(log)
    assert set(STEP_KINDS) <= {k.split(" ")[0] for k in kinds}, kinds
    # Killed after any step, a run has committed nothing: the kills are chained on one folder (each run
    # first cleans up after the one before), then one run completes it.
    out = tmp_path / "steps"
    for kind in STEP_KINDS:
        run = harness(kind, tmp_path / f"{kind}.log", *args, "--out", out)
        assert run.returncode == -9, f"no kill after {kind}: {run.stderr}"
        assert events(tmp_path / f"{kind}.log")[-1] == kind
        assert {p.relative_to(out).parts[0] for p in out.rglob("*")} == {".crdb-certs"}, "committed early"
        assert_consistent(out, NODES, USERS)
    assert crdb(*args, "--out", out) == 0
    assert_full_pki(out, NODES, USERS)
    # Killed while committing: whatever is in place is consistent, the CA key is never lost or rewritten,
    # and a re-run completes the PKI without re-doing what is already there.
    commit = [k for k in kinds if k.startswith(("link", "replace", "rename"))]
    assert commit[0] == "link ca.key", "the CA key is put in place first"
    for when in ("link ca.key", "replace index.txt", "rename certs", "rename b"):
        out = tmp_path / when.replace(" ", "-")
        run = harness(when, tmp_path / f"{when}.log", *args, "--out", out)
        assert run.returncode == -9, f"no kill after {when}: {run.stderr}"
        assert_consistent(out, NODES, USERS)
        ca_key = out / "my-safe-directory" / "ca.key"
        key_before = ca_key.read_bytes()
        assert crdb(*args, "--out", out) == 0, f"re-run after a kill after {when}"
        assert_full_pki(out, NODES, USERS)
        assert ca_key.read_bytes() == key_before, f"the CA key was replaced after a kill after {when}"
        recorded = {int(line.split("\t")[3], 16) for line in (out / "index.txt").read_text().splitlines()}
        for cert in [*out.glob("nodes/*/node.crt"), *out.glob("certs/client.*.crt")]:
            serial = x509.load_pem_x509_certificate(cert.read_bytes()).serial_number
            assert serial in recorded, f"{cert} is not in the CA database"


@pytest.fixture(scope="module")
def one_node_pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    made = {}
    for profile in ("secure", "docs"):
        folder = tmp_path_factory.mktemp(f"one-{profile}")
        spec = write_spec(folder, ONE_NODE)
        assert crdb("issue", "--config", spec, "--out", folder / "out", "--quiet", "--profile", profile) == 0
        made[profile] = folder / "out"
    return made


UPDATED_NODES = {"a": ["a.example.com", "10.0.0.1"], "b": ["b.example.com"]}


@pytest.mark.parametrize(
    ("profile", "when"),
    [
        ("secure", "rename old-certs"),  # certs/ moved aside, the new one not yet in place
        ("secure", "rename certs"),  # certs/ new, nodes/a old, nodes/b missing
        ("secure", "rename a"),  # nodes/a new, nodes/b missing
        ("docs", "replace index.txt"),  # the sequential serials' database half committed
        ("docs", "replace serial.txt"),
    ],
)
def test_a_killed_update_leaves_old_or_new_never_a_mix(
    profile: str, when: str, tmp_path: Path, one_node_pki: dict[str, Path]
) -> None:
    """A run that adds a host, a node and a user, killed while committing: every certs directory is the old
    one or the new one. With the docs' sequential serials, the CA database is never left behind its
    serial file (a re-run would then issue a serial twice, or fail)."""
    spec = write_spec(tmp_path, UPDATED)
    base = one_node_pki[profile]
    old = snapshot(base)
    out = tmp_path / "out"
    shutil.copytree(base, out, symlinks=True)
    args = ("issue", "--config", spec, "--quiet", "--profile", profile, "--out", out, "--reissue", "a")
    run = harness(when, tmp_path / "kill.log", *args)
    assert run.returncode == -9, run.stderr
    assert_consistent(out, UPDATED_NODES, ["root", "bob"], old)
    assert crdb(*args) == 0, f"re-run after a kill after {when}"
    assert_full_pki(out, UPDATED_NODES, ["root", "bob"], profile)
    assert (out / "my-safe-directory/ca.key").read_bytes() == old["my-safe-directory/ca.key"]
    for kept in ("certs/ca.crt", "certs/client.root.crt"):  # what the update did not need to redo
        assert (out / kept).read_bytes() == old[kept], f"{kept} was re-issued after a kill after {when}"


def _wrapper(folder: Path, kill_at: int, real: str) -> Path:
    """An `openssl` that counts its invocations and, at the k-th, SIGKILLs crdb-certs (the run, and the
    worker running that openssl) and then runs the real openssl as an orphan, as a crash in the middle of
    a step would leave it."""
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    counter = folder / "count"
    script = bin_dir / "openssl"
    script.write_text(
        f"""#!/bin/sh
exec 9>>'{counter}.lock'
flock 9
n=$(( $(cat '{counter}' 2>/dev/null || echo 0) + 1 ))
echo "$n" > '{counter}'
flock -u 9
echo "$n $1" >> '{counter}.log'
if [ "$n" -eq {kill_at} ]; then
    # openssl's parent is a worker (orchestrator/workers.py), whose parent is the run
    grand=$(awk '{{print $4}}' /proc/$PPID/stat)
    if tr '\\0' ' ' < /proc/$grand/cmdline | grep -q orchestrator; then kill -9 "$grand"; fi
    kill -9 "$PPID"
fi
exec '{real}' "$@"
"""
    )
    script.chmod(0o755)
    return bin_dir


@POOLS
def test_killed_while_openssl_runs(small: int, tmp_path: Path) -> None:
    """The external way: the kill comes from an openssl child, while it runs (genrsa, req, ca)."""
    real = shutil.which("openssl")
    assert real is not None
    spec = write_spec(tmp_path, SPEC)
    seen = set()
    # 1 is `openssl version`; then workers make the CA's key (genrsa) and each leaf's key with its request
    # (`req -newkey`), two at a time, while another signs: 2 makes a key (the CA's, or a leaf's if that
    # worker started first), the last of the 9, the third `ca`, is a signature whatever the interleaving.
    for k in (2, 9):
        folder = tmp_path / f"w{k}"
        folder.mkdir()
        bin_dir = _wrapper(folder, k, real)
        out = folder / "out"
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
        run = subprocess.run(
            [PYTHON, "-c", LAUNCH, str(small), "issue", "--config", spec, "--out", out, "--quiet"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
        )
        assert run.returncode == -9, run.stderr
        seen.add((folder / "count.log").read_text().splitlines()[k - 1].split()[1])
        assert_consistent(out, NODES, USERS)
        assert not (out / "certs").exists(), "nothing is committed before every step succeeded"
        assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
        assert_full_pki(out, NODES, USERS)
    assert len(seen) == 2 and "ca" in seen and seen & {"genrsa", "req"}, seen


def _issue_running_before_each_ca(
    tmp_path: Path, command: str, *extra: str, small: int = workers.SMALL
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """`issue` in tmp_path/out with an `openssl` first on PATH that runs the shell `command` before each
    `openssl ca`, then the real openssl."""
    real = shutil.which("openssl")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "openssl").write_text(f'#!/bin/sh\n[ "$1" = ca ] && {command}\nexec \'{real}\' "$@"\n')
    (bin_dir / "openssl").chmod(0o755)
    spec, out = write_spec(tmp_path, SPEC), tmp_path / "out"
    run = subprocess.run(
        [PYTHON, "-c", LAUNCH, str(small), "issue", "--config", spec, "--out", out, *extra],
        cwd=REPO,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return run, out


def test_what_an_orphaned_openssl_writes_during_the_next_run_is_removed_at_its_end(tmp_path: Path) -> None:
    """The openssl of a killed run can outlive it and write into the killed run's staging folder after the
    next run's first clean-up (seen under load: `openssl ca` renaming index.txt.new into place). Here an
    `openssl` plays that orphan: at each `ca` of the run it writes such a folder."""
    orphan = tmp_path / "out" / ".crdb-certs" / "stage-orphan"
    run, out = _issue_running_before_each_ca(
        tmp_path, f"mkdir -p '{orphan}' && touch '{orphan}/index.txt'", "--quiet"
    )
    assert run.returncode == 0, run.stderr
    assert {p.name for p in (out / ".crdb-certs").iterdir()} - {"stamp.json"} == {"lock"}


# openssl's parent is a worker (orchestrator/workers.py), whose parent is the run.
_THE_RUN = "$(awk '{print $4}' /proc/$PPID/stat)"


@POOLS
@pytest.mark.parametrize("who", ["the run", "the run, its worker and openssl"])
@pytest.mark.parametrize(("signal_name", "status"), [("TERM", 143), ("INT", 130)])
def test_sigterm_removes_the_staging_folder(
    signal_name: str, status: int, who: str, small: int, tmp_path: Path
) -> None:
    """SIGTERM (docker stop, a CI timeout) or SIGINT (Ctrl-C) arrives while `openssl ca` runs, at the run
    alone (`kill PID`) or at every process of it (systemd stopping a unit's control group): the run
    ends before its next step, says `interrupted` and exits as a shell reports the signal; its staging
    folder with the new keys is removed, nothing is put in place."""
    targets = f'"{_THE_RUN}"' + (' "$PPID" $$' if who != "the run" else "")
    run, out = _issue_running_before_each_ca(tmp_path, f"kill -{signal_name} {targets}", small=small)
    assert (run.returncode, run.stderr) == (status, "interrupted\n")
    assert {p.relative_to(out).as_posix() for p in out.rglob("*")} == {".crdb-certs", ".crdb-certs/lock"}


@pytest.mark.parametrize("when", ["SIGTERM:link ca.key", "SIGTERM:rename certs", "SIGTERM:rename b"])
def test_a_sigterm_during_the_commit_is_honoured_once_the_commit_is_whole(when: str, tmp_path: Path) -> None:
    """SIGTERM (docker stop) lands while the run commits: the commit is not cut short (a certs directory
    half-swapped), nor is the signal swallowed (exit 0 as if nothing had happened): the run completes the
    commit, removes its staging folder, says `interrupted` and exits 143 as a shell reports SIGTERM."""
    spec = write_spec(tmp_path, 'key_type = "ec"\n' + SPEC)
    out = tmp_path / "out"
    run = harness(when, tmp_path / "term.log", "issue", "--config", spec, "--out", out, "--quiet")
    assert (run.returncode, run.stderr) == (143, "interrupted\n")
    assert_full_pki(out, NODES, USERS)  # the commit is whole; the staging area holds only the lock
    assert crdb("issue", "--config", spec, "--out", out, "--check") == 0


def test_a_signal_while_planning_ends_the_run_where_it_lands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16: planning 10,000 nodes takes seconds and writes nothing: a SIGTERM there ends the run at
    once, not when planning is over."""
    spec, out = write_spec(tmp_path, 'key_type = "ec"\n' + SPEC), tmp_path / "out"
    went_on: list[str] = []
    real_inspect = state.inspect

    def inspect(*args: Any) -> Any:
        os.kill(os.getpid(), signal.SIGTERM)
        went_on.append("the state inspection went on")
        return real_inspect(*args)

    monkeypatch.setattr(state, "inspect", inspect)
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 143
    assert went_on == []
    assert {p.relative_to(out).as_posix() for p in out.rglob("*")} == {".crdb-certs", ".crdb-certs/lock"}


def test_a_long_commit_honours_a_sigterm_between_two_certs_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16: a commit of 10,000 certs directories takes longer than a signal may wait. Once the hold
    has lasted runner._HOLD_SECONDS (here: at once), a SIGTERM is honoured between two certs directories:
    the one being swapped is whole, the next is not begun, nothing is left in the staging area, and a
    re-run completes the PKI."""
    spec = write_spec(tmp_path, 'key_type = "ec"\n' + SPEC)
    out = tmp_path / "out"
    monkeypatch.setattr(runner, "_HOLD_SECONDS", 0.0, raising=False)
    swapped: list[str] = []
    real_swap_in = runner._swap_in

    def swap_in(folder: str, *args: Any, **kwargs: Any) -> None:
        real_swap_in(folder, *args, **kwargs)
        swapped.append(folder)
        if len(swapped) == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # the run holds it: it only records it

    monkeypatch.setattr(runner, "_swap_in", swap_in)
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 143
    assert swapped == ["certs"]
    assert not (out / "nodes" / "a").exists() and not (out / "nodes" / "b").exists()
    assert_consistent(out, NODES, USERS)
    assert {p.name for p in (out / ".crdb-certs").iterdir()} - {"stamp.json"} == {"lock"}
    monkeypatch.setattr(runner, "_swap_in", real_swap_in)
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    assert_full_pki(out, NODES, USERS)


def test_a_killed_rotation_names_the_kept_key_and_a_re_run_completes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`rotate-ca` SIGKILLed at each point of its commit. The key of the CA that certs/ca.crt holds is never
    lost (it is my-safe-directory/ca.key or kept in my-safe-directory/backup/); where certs/ca.crt and
    ca.key no longer pair, every command that refuses says which backup file holds the key and that
    `rotate-ca` completes the rotation (and `check` exits 1); a re-run of `rotate-ca` completes it."""
    spec = write_spec(tmp_path, 'key_type = "ec"\n' + SPEC)
    base = tmp_path / "base"
    assert crdb("issue", "--config", spec, "--out", base, "--quiet") == 0
    old_ca = (base / "certs/ca.crt").read_bytes()
    old_key = (base / "my-safe-directory/ca.key").read_bytes()
    shutil.copytree(base, tmp_path / "count", symlinks=True)
    rotate = ("rotate-ca", "--config", spec, "--quiet")
    log = tmp_path / "count.log"
    assert harness("never", log, *rotate, "--out", tmp_path / "count").returncode == 0
    commit = [k for k in events(log) if k.startswith(("link", "replace", "rename"))]
    assert commit, events(log)
    for n, when in enumerate(dict.fromkeys(commit)):
        out = tmp_path / f"kill{n}"
        shutil.copytree(base, out, symlinks=True)
        run = harness(when, tmp_path / f"kill{n}.log", *rotate, "--out", out)
        assert run.returncode == -9, f"no kill after {when}: {run.stderr}"
        safe = out / "my-safe-directory"
        kept = [p for p in safe.rglob("*.key") if p.read_bytes() == old_key]
        assert kept, f"the old CA key is lost after a kill after {when}"
        ca_key = safe / "ca.key"
        try:
            pkicheck.assert_key_pair(out / "certs/ca.crt", ca_key)
        except (AssertionError, OSError):  # ca.key is the new CA's (or missing), ca.crt the old
            (backup,) = [p for p in kept if p != ca_key]
            before = _outside_state(out)
            capsys.readouterr()
            for command in (("issue",), ("renew", "--nodes", "a"), ("rotate-ca", "--finish")):
                args = (*command, "--config", spec, "--out", out)
                assert crdb(*args) != 0, f"{command} after a kill after {when}"
                said = capsys.readouterr()
                text = said.err + said.out
                assert str(backup) in text and "crdb-certs rotate-ca --out" in text, (command, when, text)
                after = _outside_state(out)  # (a certs directory the kill left mid-swap is put back)
                changed = [p for p, data in before.items() if after.get(p) != data]
                assert not changed, f"{command} changed {changed} after a kill after {when}"
            assert crdb("check", out) == 1, f"check after a kill after {when}"
            assert str(backup) in capsys.readouterr().out
        capsys.readouterr()
        status = crdb(*rotate, "--out", out)
        err = capsys.readouterr().err
        # (killed after its last rename, the rotation was complete: a second one is refused)
        assert status == 0 or "a rotation is not finished" in err, (when, err)
        # The rotation is complete: the new CA first in every CA file, the old one after it, every leaf
        # from the new CA, the old CA's key kept beside the CA keys and nowhere else.
        for folder in ("certs", "nodes/a", "nodes/b"):
            bundle = x509.load_pem_x509_certificates((out / folder / "ca.crt").read_bytes())
            assert len(bundle) == 2 and bundle[1] == x509.load_pem_x509_certificate(old_ca), (when, folder)
            pkicheck.assert_key_pair(out / folder / "ca.crt", safe / "ca.key")
        for leaf in ("nodes/a/node.crt", "nodes/b/node.crt", "certs/client.root.crt"):
            pkicheck.assert_chains(out / leaf, out / "certs/ca.crt")
        assert [p for p in safe.glob("backup/*/ca.key") if p.read_bytes() == old_key], when
        for path in (out / "backup").rglob("*"):
            assert not path.is_file() or old_key not in path.read_bytes(), f"{path} holds the old CA key"
        assert crdb("issue", "--config", spec, "--out", out, "--check") == 0, when
        assert crdb("rotate-ca", "--finish", "--config", spec, "--out", out, "--quiet") == 0, when


def _outside_state(out: Path) -> dict[str, bytes]:
    """Every file but the lock and what a killed run left in its staging area (the next run removes it)."""
    return {p: data for p, data in snapshot(out).items() if not p.startswith(".crdb-certs/")}


# ------------------------------------------------------------------- the file system fails the run

EC_SPEC = 'key_type = "ec"\n' + SPEC


@pytest.fixture(scope="module")
def ec_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two nodes, one user, EC keys (fast): copied by each test that changes it."""
    folder = tmp_path_factory.mktemp("ec")
    spec = write_spec(folder, EC_SPEC)
    assert crdb("issue", "--config", spec, "--out", folder / "out", "--quiet") == 0
    return folder


def copied(ec_pki: Path, tmp_path: Path) -> tuple[Path, Path]:
    shutil.copytree(ec_pki / "out", tmp_path / "out", symlinks=True)
    return write_spec(tmp_path, EC_SPEC), tmp_path / "out"


def one_line(capsys: pytest.CaptureFixture[str], *wanted: str) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: "), captured.err
    for text in wanted:
        assert text in captured.err, captured.err
    return captured.err


@contextmanager
def tmpfs(where: Path, options: str) -> Iterator[None]:
    """A tmpfs mounted at `where` (created), or the test skipped where this process may not mount."""
    where.mkdir(exist_ok=True)
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", where], check=True, capture_output=True
        )
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"cannot mount a tmpfs here ({e})")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", where], check=True)


def test_a_fifo_in_a_certs_directory_hangs_nothing_and_renew_commits_nothing(
    ec_pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 11: a FIFO hung `list`/`check` (*.crt) and a no-op `issue`; `renew` then failed with a
    traceback after index.txt was committed."""
    spec, out = copied(ec_pki, tmp_path)
    os.mkfifo(out / "certs" / "extra.crt")
    os.mkfifo(out / "nodes" / "a" / "client.bob.crt")
    before = snapshot(out)
    with no_hang():
        assert crdb("list", out / "nodes" / "a") == 0
        assert crdb("check", out) == 1  # the FIFO client.bob.crt cannot be read: said, not waited for
        assert "nodes/a/client.bob.crt: cannot be read (" in capsys.readouterr().out
        assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 1  # the audit: cert-unreadable
        capsys.readouterr()
        assert crdb("renew", "--config", spec, "--out", out, "--nodes", "a") == 2
    one_line(capsys, "not a regular file", "client.bob.crt")
    assert snapshot(out) == before


def test_a_file_read_in_short_pieces_is_read_whole(ec_pki: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review of issue 16: read_regular took the first read(2) as the whole file when it was shorter than
    the file's size; on FUSE or a network file system a read may return less than asked (here every read
    returns at most 100 bytes), and a certificate came back cut."""
    paths = [ec_pki / "out/certs/ca.crt", ec_pki / "out/nodes/a/node.crt", ec_pki / "out/nodes/a/node.key"]
    whole = {path: path.read_bytes() for path in paths}
    real_read = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: real_read(fd, min(n, 100)))  # the os.read files calls
    for path in paths:
        assert len(whole[path]) > 200, path
        assert files.read_regular(path) == whole[path], path
        assert files.read_regular(path, 150) == whole[path][:150], path  # and never more than asked


def test_nodes_or_requests_on_another_file_system_is_refused_before_anything_is_made(
    ec_pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 11: with nodes/ (or requests/) a link to another file system, rename(2) failed with EXDEV
    after certs/ was committed, and every re-run failed the same way. (/dev/shm: a tmpfs.)"""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no /dev/shm on another file system")
    spec = write_spec(tmp_path, EC_SPEC)
    for linked in ("nodes", "requests"):
        elsewhere = Path(tempfile.mkdtemp(prefix=f"crdb-certs-{linked}-", dir=shm))
        try:
            out = tmp_path / f"out-{linked}"
            out.mkdir()
            (out / linked).symlink_to(elsewhere)
            capsys.readouterr()
            assert crdb("issue", "--config", spec, "--out", out) == 2
            one_line(capsys, f"{out / linked}: on another file system")
            assert {p.name for p in out.iterdir()} == {".crdb-certs", linked}
            assert not any(elsewhere.iterdir())
        finally:
            shutil.rmtree(elsewhere)


def test_a_certs_symlink_is_refused_not_replaced_by_a_folder(
    ec_pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 11: a pre-made certs/ symlink was silently replaced by a folder (the link's target kept the
    old files). Refused before anything is written; a run that changes nothing there still passes."""
    spec, out = copied(ec_pki, tmp_path)
    (out / "certs").rename(tmp_path / "certs-elsewhere")
    (out / "certs").symlink_to(tmp_path / "certs-elsewhere")
    before = snapshot(tmp_path)
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    capsys.readouterr()
    assert crdb("renew", "--config", spec, "--out", out, "--clients", "root") == 2
    one_line(capsys, f"{out / 'certs'}: a symbolic link")
    assert (out / "certs").is_symlink()
    assert snapshot(tmp_path) == before


def test_a_read_only_output_folder_is_one_line(
    ec_pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 11: on a read-only mount even a no-op run ended in a traceback."""
    spec = write_spec(tmp_path, EC_SPEC)
    mount = tmp_path / "mnt"
    with tmpfs(mount, "size=1m"):
        shutil.copytree(ec_pki / "out", mount / "out", symlinks=True)
        subprocess.run(["mount", "-o", "remount,ro", mount], check=True)
        capsys.readouterr()
        for command in (["issue"], ["renew", "--nodes", "a"], ["rotate-ca"]):
            assert crdb(*command, "--config", spec, "--out", mount / "out") == 2
            one_line(capsys, "error: --out: ", "Read-only file system")
        assert crdb("render", "--config", spec, "--out", mount / "new") == 2
        one_line(capsys, "error: --out: ", "Read-only file system")


def test_a_full_disk_during_renews_backup_leaves_no_half_backup(
    ec_pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 11: ENOSPC while renew kept the old files left a partial backup folder (and a traceback).
    backup/ here is a tmpfs of one page: the first file fits, the second does not."""
    spec, out = copied(ec_pki, tmp_path)
    before = snapshot(out)
    with tmpfs(out / "backup", "size=4k"):
        capsys.readouterr()
        assert crdb("renew", "--config", spec, "--out", out, "--nodes", "a,b") == 3
        one_line(capsys, "No space left on device", "nothing changed")
        assert not any((out / "backup").iterdir())
    assert snapshot(out) == before
    assert {p.name for p in (out / ".crdb-certs").iterdir()} - {"stamp.json"} == {"lock"}
