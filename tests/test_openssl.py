"""The openssl binary itself: found and version-checked before anything is written, refused with one line
when missing or unsupported; and when it fails in the middle of a run (exit status, a signal, or exit 0
with nothing written, openssl-traps.md §4.4) the run stops with openssl's own message, removes its
staging folder and puts nothing in place. The failing `openssl` programs here are small shell scripts put
first on PATH; the ones that run do so around the real binary."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator import openssl
from orchestrator.openssl import check_version
from tests.conftest import REPO, is_stamp, write_spec

REAL = shutil.which("openssl") or "/usr/bin/openssl"
SPEC = '[[nodes]]\nname = "a"\nhosts = ["a.example.com"]\n\n[[clients]]\nuser = "root"\n'


@pytest.mark.parametrize(
    ("version", "ok", "reason"),
    [
        ("OpenSSL 1.1.1w  11 Sep 2023", True, ""),
        ("OpenSSL 1.1.1  11 Sep 2018", True, ""),
        ("OpenSSL 3.0.19 27 Jan 2026 (Library: OpenSSL 3.0.19 27 Jan 2026)", True, ""),
        ("OpenSSL 3.5.0 8 Apr 2025", True, ""),
        ("LibreSSL 3.3.6", False, "LibreSSL is not supported"),
        ("LibreSSL 2.8.3", False, "LibreSSL is not supported"),
        ("OpenSSL 1.0.2u  20 Dec 2019", False, "1.1.1 or newer"),
        ("OpenSSL 1.1.0l  10 Sep 2019", False, "1.1.1 or newer"),
        ("OpenSSL 0.9.8zh 3 Dec 2015", False, "1.1.1 or newer"),
        ("BoringSSL", False, "cannot tell"),
        ("", False, "cannot tell"),
    ],
)
def test_check_version(version: str, ok: bool, reason: str) -> None:
    supported, why = check_version(version)
    assert supported is ok
    assert reason in why
    assert "\n" not in why


def fake_openssl(folder: Path, body: str) -> Path:
    """A folder holding only an `openssl` shell script with `body`; REAL is the real binary."""
    bin_dir = folder / "bin"
    bin_dir.mkdir(parents=True)
    script = bin_dir / "openssl"
    script.write_text(f"#!/bin/sh\nREAL='{REAL}'\n{body}\n")
    script.chmod(0o755)
    return bin_dir


def issue(
    tmp_path: Path, path: str, *extra: str, umask: int | None = None
) -> subprocess.CompletedProcess[str]:
    spec = write_spec(tmp_path, SPEC)
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", "issue", "--config", spec, "--out", tmp_path / "out", *extra],
        cwd=REPO,
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
    )


def one_line_error(run: subprocess.CompletedProcess[str], starts: str) -> str:
    assert "Traceback" not in run.stderr, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith(starts), lines[0]
    return lines[0]


def test_missing_openssl_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    run = issue(tmp_path, str(empty))
    assert run.returncode != 0
    one_line_error(run, "error: openssl: not found on PATH")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("says", "reason"),
    [
        ("LibreSSL 3.3.6", "LibreSSL is not supported"),
        ("OpenSSL 1.0.2u  20 Dec 2019", "1.1.1 or newer"),
    ],
)
def test_unsupported_openssl_is_refused_before_anything_is_written(
    tmp_path: Path, says: str, reason: str
) -> None:
    bin_dir = fake_openssl(
        tmp_path, f'[ "$1" = version ] && echo "{says}" && exit 0\ntouch "$PWD/ran-$1"\nexit 1'
    )
    run = issue(tmp_path, str(bin_dir))
    assert run.returncode == 2
    assert reason in one_line_error(run, "error: openssl: ")
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.rglob("ran-*")), "openssl was used for more than `version`"


def test_openssl_whose_version_fails(tmp_path: Path) -> None:
    bin_dir = fake_openssl(tmp_path, 'echo "libcrypto.so.3: cannot open shared object file" >&2\nexit 127')
    run = issue(tmp_path, str(bin_dir))
    assert run.returncode == 2
    assert "cannot open shared object file" in one_line_error(run, "error: openssl: ")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("#!/nonexistent/sh\necho hi\n", "No such file"),
        ("\x7fELF not a binary for this machine", "Exec format"),
    ],
)
def test_an_openssl_that_cannot_be_run_is_one_line(tmp_path: Path, content: str, says: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "openssl").write_text(content)
    (bin_dir / "openssl").chmod(0o755)
    run = issue(tmp_path, str(bin_dir))
    assert run.returncode == 2
    assert says in one_line_error(run, f"error: openssl: {bin_dir}/openssl cannot be run: ")
    assert not (tmp_path / "out").exists()


def test_a_relative_path_entry_is_resolved_once(tmp_path: Path) -> None:
    """PATH=bin:... finds ./bin/openssl; it is then run by its absolute path from the staging folder,
    not looked up again there (where `bin/openssl` would be missing, or planted)."""
    bin_dir = fake_openssl(tmp_path, 'echo "$1" >> "$(dirname "$0")/calls"\nexec "$REAL" "$@"')
    spec = write_spec(tmp_path, SPEC)
    run = subprocess.run(
        [sys.executable, "-m", "orchestrator", "issue", "--config", spec, "--out", "out", "--quiet"],
        cwd=tmp_path,
        env={**os.environ, "PATH": f"bin:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "ca" in (bin_dir / "calls").read_text().split(), "the relative wrapper was the openssl used"


def crdb_with(tmp_path: Path, *args: str | Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`crdb-certs ARGS issue` with a PATH that holds no openssl (a Homebrew openssl is not on PATH)."""
    spec = write_spec(tmp_path, SPEC)
    empty = tmp_path / "empty"
    empty.mkdir(exist_ok=True)
    command = [sys.executable, "-m", "orchestrator", *map(str, args), "issue", "--config", spec]
    return subprocess.run(
        [*command, "--out", tmp_path / "out", "--quiet"],
        cwd=REPO,
        env={**os.environ, "PATH": str(empty)} | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("how", ["option", "environment", "both"])
def test_openssl_named_by_option_or_environment_is_the_one_run(tmp_path: Path, how: str) -> None:
    log = 'echo "$1" >> "${0%/*}/calls"\nexec "$REAL" "$@"'  # no dirname: PATH holds no tools here
    chosen, other = fake_openssl(tmp_path / "brew", log), fake_openssl(tmp_path / "other", log)
    args = ("--openssl", chosen / "openssl") if how != "environment" else ()
    env = (
        {openssl.ENV: str((chosen if how == "environment" else other) / "openssl")} if how != "option" else {}
    )
    run = crdb_with(tmp_path, *args, env=env)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "out/nodes/a/node.crt").is_file()
    assert {"version", "req", "ca"} <= set((chosen / "calls").read_text().split())
    assert not (other / "calls").exists()  # the option wins over the environment


@pytest.mark.parametrize(
    ("args", "env", "starts"),
    [
        (
            ("--openssl", "/nonexistent/openssl"),
            {},
            'error: --openssl: "/nonexistent/openssl" is not an executable',
        ),
        (("--openssl", "not-executable"), {}, 'error: --openssl: "not-executable" is not an executable file'),
        (
            (),
            {openssl.ENV: "/nonexistent/openssl"},
            'error: CRDB_CERTS_OPENSSL: "/nonexistent/openssl" is not',
        ),
    ],
)
def test_a_bad_openssl_path_is_one_line_naming_the_option(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], starts: str
) -> None:
    (tmp_path / "not-executable").write_text("#!/bin/sh\n")  # mode 0644
    run = crdb_with(tmp_path, *(str(tmp_path / a) if a == "not-executable" else a for a in args), env=env)
    assert run.returncode == 2
    one_line_error(run, starts.replace("not-executable", str(tmp_path / "not-executable")))
    assert not (tmp_path / "out").exists()


def test_an_unsupported_openssl_named_by_the_option_is_refused_naming_it(tmp_path: Path) -> None:
    bin_dir = fake_openssl(tmp_path, '[ "$1" = version ] && echo "LibreSSL 3.3.6" && exit 0\nexit 1')
    run = crdb_with(tmp_path, "--openssl", bin_dir / "openssl", env={})
    assert run.returncode == 2
    assert "LibreSSL is not supported" in one_line_error(run, f"error: --openssl: {bin_dir}/openssl is ")
    assert not (tmp_path / "out").exists()


def _nothing_committed(out: Path) -> None:
    assert {p.relative_to(out).as_posix() for p in out.rglob("*")} == {".crdb-certs", ".crdb-certs/lock"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        # fails with its own message
        (
            '[ "$1" = ca ] && { echo "simulated: unable to load CA private key" >&2; exit 1; }',
            "unable to load CA",
        ),
        # exits 0 without signing (what `openssl ca` without -batch does with stdin closed)
        ('[ "$1" = ca ] && { echo "CERTIFICATE WILL NOT BE CERTIFIED" >&2; exit 0; }', "exited 0 but"),
        # killed by a signal while making a request
        ('[ "$1" = req ] && [ -n "$(ls requests 2>/dev/null)" ] && kill -9 $$', "command failed"),
    ],
    ids=["fails", "exit-0-no-output", "killed"],
)
def test_a_failing_openssl_stops_the_run_and_leaves_nothing(tmp_path: Path, body: str, message: str) -> None:
    bin_dir = fake_openssl(tmp_path, body + '\nexec "$REAL" "$@"')
    run = issue(tmp_path, f"{bin_dir}:{os.environ['PATH']}")
    assert run.returncode == 3, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stderr.startswith("error: ") and message in run.stderr, run.stderr
    assert "PRIVATE KEY" not in run.stderr + run.stdout
    _nothing_committed(tmp_path / "out")


def test_an_up_to_date_folder_is_checked_without_openssl(tmp_path: Path) -> None:
    """openssl is found only when there is something to run: a no-op run (a health check, audit included)
    works where openssl is not installed; a run with work to do is then refused in one line, unchanged."""
    assert issue(tmp_path, os.environ["PATH"]).returncode == 0
    before = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file() and not is_stamp(p)}
    empty = tmp_path / "empty"
    empty.mkdir()

    noop = issue(tmp_path, str(empty))
    assert noop.returncode == 0, noop.stderr
    assert "up to date, nothing changed" in noop.stdout

    spec = write_spec(tmp_path, SPEC + '\n[[clients]]\nuser = "maxroach"\n', name="more.toml")
    more = subprocess.run(
        [sys.executable, "-m", "orchestrator", "issue", "--config", spec, "--out", tmp_path / "out"],
        cwd=REPO,
        env={**os.environ, "PATH": str(empty)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert more.returncode != 0
    one_line_error(more, "error: openssl: not found on PATH")
    after = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file() and not is_stamp(p)}
    assert after == before


def test_the_openssl_under_test_is_the_one_asked_for() -> None:
    """`make test-openssl-1.1.1` (or -3.5) runs this suite again with that OpenSSL first on PATH and says so
    in CRDB_CERTS_TEST_OPENSSL: that run must not quietly test the machine's own OpenSSL a second time."""
    found = openssl.find().version
    wanted = os.environ.get("CRDB_CERTS_TEST_OPENSSL")
    if wanted:
        assert found.startswith(wanted), f"asked for {wanted!r}, testing {found!r}"
    else:
        assert check_version(found) == (True, ""), found


ALONE = """
import os, sys, tempfile
from pathlib import Path
from orchestrator.errors import RunError
from orchestrator.openssl import OpenSSL
os.umask(0)
before = [os.fstat(fd) for fd in (0, 1, 2)]
with tempfile.TemporaryFile() as said:
    try:
        tool = OpenSSL(sys.argv[1], "OpenSSL 3.0.0")
        tool.run_alone(("openssl", "ca", "-batch"), Path(sys.argv[2]), said.fileno())
        print("ran")
    except RunError as e:
        print("error:", e)
assert [(s.st_dev, s.st_ino) for s in before] == [(s.st_dev, s.st_ino) for s in map(os.fstat, (0, 1, 2))]
assert os.umask(0) == 0
"""


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ('echo "unable to load CA key" >&2; exit 1', "(exit 1): openssl ca -batch\nunable to load CA"),
        ("readlink /proc/self/fd/0 >&2; exit 2", "(exit 2): openssl ca -batch\n/dev/null"),
        ("echo made > made; echo out; exit 0", "ran"),
    ],
    ids=["its-error-shown", "stdin-is-dev-null", "output-private"],
)
def test_run_alone_shows_the_error_reads_nothing_and_makes_private_files(
    tmp_path: Path, body: str, says: str
) -> None:
    """The workers' way of running openssl (sh in the foreground, issue 16): what a failing openssl says on
    stderr is in the error, it reads nothing from the worker's stdin (its job pipe), every file it makes is
    private whatever the caller's umask, and the caller's fds 0-2 and umask are its own again afterwards."""
    fake = fake_openssl(tmp_path, body) / "openssl"
    work = tmp_path / "work"
    work.mkdir()
    run = subprocess.run(
        [sys.executable, "-c", ALONE, str(fake), str(work)],
        stdin=subprocess.PIPE,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert says in run.stdout, run.stdout
    if says == "ran":
        assert (work / "made").stat().st_mode & 0o777 == 0o600
        assert run.stdout == "ran\n"  # openssl's own stdout went to the private file, not to the worker's


def test_openssl_that_cannot_be_started_says_so(tmp_path: Path) -> None:
    """Review of issue 16: a fork whose exec fails exits 127 and says nothing; the error says why."""
    fake = tmp_path / "openssl"
    fake.write_text("#!/nowhere/sh\n")
    fake.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    run = subprocess.run(
        [sys.executable, "-c", ALONE, str(fake), str(work)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert f"(exit 127): openssl ca -batch\n{fake} could not be started" in run.stdout, run.stdout


# A job run as a small run runs it (a fork of the run) and as a big one (a worker: workers.SMALL = 0).
POOLS = ["forks", "workers"]


def _issue_with(
    tmp_path: Path, pool: str, shell: str = "", first: str = "", **extra: str
) -> subprocess.CompletedProcess[str]:
    """`issue` run from a shell (`shell` before it), in a Python that runs `first` before it."""
    spec = write_spec(tmp_path, SPEC)
    launch = (
        f"{first or 'pass'}; import sys; from orchestrator import workers, cli; "
        "workers.SMALL = 0 if sys.argv[1] == 'workers' else workers.SMALL; sys.exit(cli.main(sys.argv[2:]))"
    )
    argv = [
        sys.executable,
        "-c",
        launch,
        pool,
        "issue",
        "--config",
        str(spec),
        "--out",
        str(tmp_path / "out"),
    ]
    return subprocess.run(
        f"{shell} exec {shlex.join(argv)}",
        shell=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **extra},
        cwd=tmp_path,
        timeout=120,
        close_fds=False,
    )


@pytest.mark.parametrize("pool", POOLS)
def test_a_run_started_from_a_removed_folder_runs(tmp_path: Path, pool: str) -> None:
    """Review of issue 16: sh in the foreground looks up the process's folder before each command; a
    run started from a folder removed since (an absolute --out) failed at its first key."""
    gone = tmp_path / "gone"
    gone.mkdir()
    run = _issue_with(tmp_path, pool, f"cd {gone} && rmdir {gone} &&")
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("pool", POOLS)
def test_openssl_gets_no_descriptor_but_its_own_three(tmp_path: Path, pool: str) -> None:
    """Review of issue 16: a descriptor the run was given by its caller (here 7, and 42 inheritable)
    reached every openssl, which sh's own way of starting it closed."""
    seen = tmp_path / "fds"
    bin_dir = fake_openssl(tmp_path, f'[ "$1" = version ] || ls /proc/$$/fd >> {seen}\nexec "$REAL" "$@"')
    stray = os.open(tmp_path / "stray", os.O_WRONLY | os.O_CREAT, 0o600)
    os.dup2(stray, 42)  # inheritable, as a descriptor the caller passes on
    try:
        run = _issue_with(
            tmp_path, pool, f"exec 7<{tmp_path / 'stray'};", CRDB_CERTS_OPENSSL=str(bin_dir / "openssl")
        )
    finally:
        os.close(42)
        os.close(stray)
    assert run.returncode == 0, run.stderr
    assert {"7", "42"}.isdisjoint(seen.read_text().split()), seen.read_text()


def test_a_run_needs_no_temporary_folder(tmp_path: Path) -> None:
    """Review of issue 16: openssl's output went to a file in the temporary folder, which a container
    with a read-only root may not have: every run failed. It goes into the run's own staging folder.
    (A small run's forks share the run's idea of the temporary folder, so one can be taken away here; a
    worker runs the same code.)"""
    run = _issue_with(tmp_path, "forks", first=f"import tempfile; tempfile.tempdir = '{tmp_path / 'none'}'")
    assert run.returncode == 0, run.stderr
