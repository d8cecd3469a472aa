"""Where a run's openssl commands run: a few small worker processes, each running one job (a list of
openssl commands) at a time through `sh` (openssl.OpenSSL.run), while the run's own process plans,
verifies and commits.

Why workers (issue 16): `sh` forks the Python process that calls it, and what a fork costs grows with that
process. The run's process holds the plan of every certificate (~70 MB at 2,000 nodes, ~150 MB at 10,000),
and `sh` from there cost 16 ms of CPU per command against 6 ms from a process that has imported only
`sh`. A worker is such a process: a fresh interpreter (not a fork of this one), started once per run,
running every command it is given. They are single-threaded when `sh` forks (OpenSSL.run joins what `sh`
starts), and this process forks nothing at all.

Each worker is its own process group: a Ctrl-C or SIGTERM reaches the run's process only, which stops the
workers (and the openssl each runs) itself, at once (`Pool.close`), wherever they are. A worker whose run
has gone (SIGKILL) reads end-of-file and stops before its next command.

Protocol: one JSON line per job in ({"cwd": ..., "argvs": [[...], ...]}), one per answer out ({"error":
null or what openssl.OpenSSL.run raised}).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import orchestrator
from orchestrator.errors import Interrupted, RunError
from orchestrator.openssl import OpenSSL

# How a worker starts: the orchestrator package this process runs (`-I` ignores PYTHONPATH, the user site
# and the current folder, so nothing else can be imported in its place), then serve().
SERVE = "import sys; sys.path.insert(0, sys.argv[1]); from orchestrator.workers import serve; serve()"


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
            raise RunError(f"an openssl worker ended unasked ({self._ended(worker)})") from None
        worker.job = job

    def wait(self) -> list[tuple[int, str | None]]:
        """Block until a job ends (or a signal comes: then maybe none did, and the caller looks at why)."""
        busy = {w.process.stdout.fileno(): w for w in self.workers if w.job is not None and w.process.stdout}
        assert busy, "waiting with nothing running"
        watched = [*busy, *([self.wakeup] if self.wakeup is not None else [])]
        ready, _, _ = select.select(watched, [], [])
        ended: list[tuple[int, str | None]] = []
        for fd in ready:
            if fd == self.wakeup:
                _drain(fd)
                continue
            worker = busy[fd]
            chunk = os.read(fd, 65536)
            if not chunk:
                code = worker.process.wait()
                if -code in (signal.SIGTERM, signal.SIGINT):  # sent to every process of the run (systemd)
                    raise Interrupted(-code)
                raise RunError(f"an openssl worker ended unasked ({self._ended(worker)})")
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
        process = subprocess.Popen(
            [
                sys.executable,
                "-I",
                *(f"-W{option}" for option in sys.warnoptions),  # a test's `-W always`, say
                "-c",
                SERVE,
                package_parent,
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

    @staticmethod
    def _ended(worker: _Worker) -> str:
        code = worker.process.wait()
        return f"signal {-code}" if code < 0 else f"exit status {code}"


_NICE_AHEAD = 10  # CFS gives a nice-10 process ~1/10 of a core that a nice-0 one wants


def _kill_group(pid: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


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
    os.umask(0o077)  # OpenSSL.run sets it in each openssl child too; nothing here is ever readable by others
    run_pid = os.getppid()
    while line := sys.stdin.buffer.readline():
        job = json.loads(line)
        error = None
        try:
            for argv in job["argvs"]:
                if os.getppid() != run_pid:  # the run was killed: nothing more for its staging folder
                    return
                tool.run(tuple(argv), Path(job["cwd"]))
        except RunError as e:
            error = str(e)
        sys.stdout.write(json.dumps({"error": error}) + "\n")
        sys.stdout.flush()
