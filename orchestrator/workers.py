"""Where a run's openssl commands run: a few small worker processes, each running one job (a list of
openssl commands) at a time through `sh` (openssl.OpenSSL.run_alone), while the run's own process plans,
verifies and commits.

Why workers (issue 16): `sh` forks the Python process that calls it, and what a fork costs grows with that
process. The run's process holds the plan of every certificate (~70 MB at 2,000 nodes, ~150 MB at 10,000),
and `sh` from there cost 16 ms of CPU per command against 6 ms from a process that has imported only
`sh`. A worker is such a process: a fresh interpreter (not a fork of this one), started once per run,
running every command it is given. A worker has one thread and runs `sh` in the foreground (no thread
either: a plain fork and exec, ~3 ms less per command than capturing output), and this process forks
nothing at all.

Each worker is its own process group: a Ctrl-C or SIGTERM reaches the run's process only, which stops the
workers (and the openssl each runs) itself, at once (`Pool.close`), wherever they are. A worker whose run
has gone (SIGKILL) stops before its next job.

A small run (under SMALL commands: `make certs`, a few nodes) forks itself for each job instead (Forks):
starting a worker's interpreter costs more than such a run's forks.

Protocol: one JSON line per job in ({"cwd": ..., "argvs": [[...], ...]}), one per answer out ({"error":
null or what openssl.OpenSSL.run raised}).
"""

from __future__ import annotations

import json
import os
import select
import shlex
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import orchestrator
from orchestrator.errors import Interrupted, RunError
from orchestrator.openssl import OpenSSL

# How a worker starts: with this process's import path (`-I` ignores PYTHONPATH, the user site and the
# current folder: the orchestrator package and `sh` are the ones this process runs), then serve().
SERVE = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); from orchestrator.workers import serve; serve()"
)


@dataclass
class _Worker:
    process: subprocess.Popen[bytes]
    ahead: bool  # runs work done ahead of need (keys), at a lower priority
    job: int | None = None  # the job it runs, None when idle
    said: bytearray = field(default_factory=bytearray)  # what it wrote of its answer so far


class Pool:
    """Workers, started as jobs need them: up to `ahead` for work done ahead of need (keys and their
    CSRs), and one for the commands run in the plan's order (signatures). `submit` gives a job to an idle
    one; `wait` returns the jobs that ended since, with their errors. Close it (a `with` block): idle
    workers are told to end, busy ones are killed with what they run.

    The workers ahead run at a lower priority (nice): the signatures, one after another, are what a run
    waits for, and with as many workers as cores they would otherwise get a core only part of the time
    (2,000 EC nodes on 2 cores: ~20% longer)."""

    def __init__(self, tool: OpenSSL | None, ahead: int, wakeup: int | None = None) -> None:
        self.tool, self.ahead, self.wakeup = tool, ahead, wakeup
        self.workers: list[_Worker] = []

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def submit(self, job: int, argvs: Sequence[tuple[str, ...]], cwd: Path, ahead: bool = False) -> None:
        idle = (w for w in self.workers if w.job is None and w.ahead == ahead)
        worker = next(idle, None) or self.start(ahead)
        line = json.dumps({"cwd": str(cwd.absolute()), "argvs": [list(a) for a in argvs]}) + "\n"
        assert worker.process.stdin is not None
        try:
            worker.process.stdin.write(line.encode())
            worker.process.stdin.flush()
        except BrokenPipeError:
            raise RunError(f"an openssl worker ended unasked ({_how(worker.process.wait())})") from None
        worker.job = job

    def wait(self) -> list[tuple[int, str | None]]:
        """Block until a job ends (or a signal comes: then maybe none did, and the caller looks at why)."""
        busy = {w.process.stdout.fileno(): w for w in self.workers if w.job is not None and w.process.stdout}
        assert busy, "waiting with nothing running"
        ended: list[tuple[int, str | None]] = []
        for fd in _ready(list(busy), self.wakeup):
            worker = busy[fd]
            chunk = os.read(fd, 65536)
            if not chunk:
                raise _unasked("an openssl worker", worker.process.wait())
            worker.said += chunk
            if worker.said.endswith(b"\n"):
                answer = json.loads(worker.said)
                worker.said.clear()
                assert worker.job is not None
                ended.append((worker.job, answer["error"]))
                worker.job = None
        return ended

    def close(self) -> None:
        for worker in self.workers:
            if worker.job is not None:  # a failure or a signal: what it runs is of no use any more
                _kill_group(worker.process.pid)
            if worker.process.stdin:
                with suppress(BrokenPipeError):
                    worker.process.stdin.close()  # an idle one reads end-of-file and ends
        for worker in self.workers:
            worker.process.wait()
            if worker.process.stdout:
                worker.process.stdout.close()
        self.workers.clear()

    def start(self, ahead: bool) -> _Worker:
        """A new worker (`submit` starts them as needed; this starts one before it is needed)."""
        assert self.tool is not None, "a job to run, and no openssl found"
        assert sum(w.ahead == ahead for w in self.workers) < (self.ahead if ahead else 1), "too many jobs"
        package_parent = str(Path(orchestrator.__file__).resolve().parent.parent)
        path = [package_parent, *filter(None, map(_absolute, sys.path))]
        process = subprocess.Popen(
            [
                sys.executable,
                "-I",
                *(f"-W{option}" for option in sys.warnoptions),  # a test's `-W always`, say
                "-c",
                SERVE,
                json.dumps(path),
                self.tool.path,
                self.tool.version,
                str(_NICE_AHEAD if ahead else 0),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd="/",
            process_group=0,
        )
        worker = _Worker(process, ahead)
        self.workers.append(worker)
        return worker


def _absolute(entry: str) -> str | None:
    """An entry of sys.path made absolute ("" is this process's folder), or None when the folder a
    relative one starts from is gone (a run started in a folder removed since)."""
    try:
        return os.path.abspath(entry)
    except FileNotFoundError:
        return None


_NICE_AHEAD = 10  # CFS gives a nice-10 process ~1/10 of a core that a nice-0 one wants
# Under this many openssl commands a run forks itself for each job (Forks) rather than start workers:
# a worker's interpreter costs ~0.13 s of CPU to import `sh`, a fork of a run this small ~4 ms more per
# command than a worker's (the test suite's thousand small runs: minutes of CI).
SMALL = 64


def pool(tool: OpenSSL | None, ahead: int, wakeup: int | None, commands: int) -> Pool | Forks:
    """Where a plan of `commands` openssl commands runs: workers, or forks of the run when it is small."""
    return Forks(tool, wakeup) if commands < SMALL else Pool(tool, ahead, wakeup)


class Forks:
    """The same as Pool for a small run: each job in a child forked from the run (single-threaded: it
    starts no thread), in its own process group like a worker, at a lower priority when it runs ahead.
    It answers on a pipe of its own, then ends."""

    def __init__(self, tool: OpenSSL | None, wakeup: int | None = None) -> None:
        self.tool, self.wakeup = tool, wakeup
        self.running: dict[int, tuple[int, int]] = {}  # answer pipe -> (job, pid)

    def __enter__(self) -> Forks:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def start(self, ahead: bool) -> None:
        """Nothing to start before a job."""

    def submit(self, job: int, argvs: Sequence[tuple[str, ...]], cwd: Path, ahead: bool = False) -> None:
        assert self.tool is not None, "a job to run, and no openssl found"
        cwd = cwd.absolute()  # the child works from "/" (_alone)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the caller's code
            try:
                os.close(read)
                os.setpgid(0, 0)
                signal.set_wakeup_fd(-1)  # the run's: a signal here is not the run's to wake for
                for sig in (signal.SIGINT, signal.SIGTERM):
                    signal.signal(sig, signal.SIG_DFL)
                if ahead:
                    os.nice(_NICE_AHEAD)
                _alone()
                os.write(write, json.dumps({"error": _run_job(self.tool, argvs, cwd, _Output())}).encode())
            finally:
                os._exit(0)
        os.close(write)
        with suppress(OSError):  # as the child does: in its own group before anyone may kill the group
            os.setpgid(pid, pid)
        self.running[read] = (job, pid)

    def wait(self) -> list[tuple[int, str | None]]:
        assert self.running, "waiting with nothing running"
        ended: list[tuple[int, str | None]] = []
        for fd in _ready(list(self.running), self.wakeup):
            job, pid = self.running.pop(fd)
            with os.fdopen(fd, "rb") as answer:
                said = answer.read()
            _, status = os.waitpid(pid, 0)
            if not said:
                raise _unasked("a process running openssl", os.waitstatus_to_exitcode(status))
            ended.append((job, json.loads(said)["error"]))
        return ended

    def close(self) -> None:
        for fd, (_, pid) in self.running.items():
            _kill_group(pid)  # a failure or a signal: what it runs is of no use any more
            os.close(fd)
        for _, pid in self.running.values():
            os.waitpid(pid, 0)
        self.running.clear()


class _Output:
    """Where the openssl a process runs prints to: an unnamed file in the job's folder (the run's staging
    folder, private; not a temporary folder, which a container may not have), made once for each folder
    (~0.14 ms a file here: 1.4 s of the 10,000 signatures of a big run, one after another)."""

    def __init__(self) -> None:
        self.folder: Path | None = None
        self.file: IO[bytes] | None = None

    def fd(self, folder: Path) -> int:
        if self.file is None or folder != self.folder:
            self.close()
            self.file, self.folder = tempfile.TemporaryFile(dir=folder), folder  # noqa: SIM115 (kept)
        return self.file.fileno()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = self.folder = None


def _run_job(tool: OpenSSL, argvs: Sequence[tuple[str, ...]], cwd: Path, output: _Output) -> str | None:
    """Run a job's commands in order in `cwd`: None, or what the first that failed said."""
    try:
        said = output.fd(cwd)
        for argv in argvs:
            tool.run_alone(tuple(argv), cwd, said)
    except RunError as e:
        return str(e)
    except OSError as e:  # the staging folder gone (the run killed) or full
        return f"command failed: {shlex.join(argvs[0])}: cannot write in {cwd}: {e.strerror or e}"
    return None


def _alone() -> None:
    """What a process that runs openssl (a worker, a run's fork) does first, so that openssl starts as
    from a shell: its working folder "/" (the one it was started from may be gone; jobs name theirs),
    SIGPIPE and SIGXFSZ as openssl expects them (Python ignores both), and no descriptor but 0-2 passed
    on (the run's own are not inheritable; one the run was given by its caller may be)."""
    os.chdir("/")
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    for name in os.listdir("/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"):
        if int(name) > 2:
            with suppress(OSError):  # the listing's own descriptor, closed by now
                os.set_inheritable(int(name), False)


def _kill_group(pid: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _ready(fds: list[int], wakeup: int | None) -> list[int]:
    """Those of `fds` readable, once one is or a signal came (the run's wakeup fd: read empty here)."""
    ready, _, _ = select.select([*fds, *([wakeup] if wakeup is not None else [])], [], [])
    if wakeup in ready:
        _drain(wakeup)
    return [fd for fd in ready if fd != wakeup]


def _unasked(what: str, code: int) -> Exception:
    """What a process that ended without answering (`code`: its exit status, or minus its signal) stops
    the run with: a SIGTERM or SIGINT sent to every process of the run (systemd) is an interruption."""
    if -code in (signal.SIGTERM, signal.SIGINT):
        return Interrupted(-code)
    return RunError(f"{what} ended unasked ({_how(code)})")


def _how(code: int) -> str:
    return f"signal {-code}" if code < 0 else f"exit status {code}"


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def serve() -> None:
    """A worker: run each job read from stdin, answer on stdout, until end-of-file or its run is gone."""
    path, version, nice = sys.argv[2], sys.argv[3], int(sys.argv[4])
    tool = OpenSSL(path, version)
    os.nice(nice)
    # A SIGINT sent to every process of the run ends this one as SIGTERM does, without a traceback: the
    # run tells the user what happened.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.umask(0o077)  # as each openssl child's (OpenSSL.run_alone): nothing here is ever readable by others
    _alone()
    run_pid = os.getppid()
    output = _Output()
    while line := sys.stdin.buffer.readline():
        if os.getppid() != run_pid:  # the run was killed: nothing more for its staging folder
            return
        job = json.loads(line)
        error = _run_job(tool, job["argvs"], Path(job["cwd"]), output)
        sys.stdout.write(json.dumps({"error": error}) + "\n")
        sys.stdout.flush()
