"""Run `crdb-certs` and SIGKILL it after its k-th event: a fault-injection launcher for tests/test_faults.py.

    python -m tests.fault_harness WHEN LOG crdb-certs-arguments...

An event is a finished plan step (`runner._finished`: "Write", "Run:genrsa", "Verify", ...) or a rename
made while committing ("replace index.txt", "rename certs", "link ca.key"). Each event is appended to LOG
before WHEN is looked at, so WHEN = "never" lists every point at which a kill can land. WHEN = "Verify"
kills after the first event that starts with that text, "Run:ca@2" after the second one (keys are made
in parallel processes, so a plain count would not always land on the same kind of step). With WHEN =
"SIGTERM:<when>" the signal sent there is SIGTERM (as `docker stop` sends it), not SIGKILL.

Nothing in the product knows about this: the launcher wraps the functions from outside, in its own
process, and kills that process with SIGKILL, which no handler or `finally` can intercept.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator import runner
from orchestrator.cli import main


def install(when: str, log: Path) -> None:
    # "SIGTERM:<when>" sends SIGTERM instead, which the run may catch (while committing it holds it).
    sent = signal.SIGTERM if when.startswith("SIGTERM:") else signal.SIGKILL
    prefix, _, nth = when.removeprefix("SIGTERM:").partition("@")
    run = os.getpid()
    killed = log.with_name(log.name + ".killed")

    def event(what: str) -> None:
        # openssl runs in worker processes (orchestrator/workers.py), but every step is counted here, in
        # the run's process, once it is done: the kill lands between two steps of the run.
        with log.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            if killed.exists():
                return
            handle.write(what + "\n")
            handle.flush()
            seen = sum(line.startswith(prefix) for line in log.read_text().splitlines())
            if what.startswith(prefix) and seen == int(nth or 1):
                killed.touch()
                os.kill(run, sent)

    real_finished = runner._finished

    def finished(step: Any, progress: Any) -> None:
        real_finished(step, progress)
        kind = type(step).__name__
        if kind == "Run":
            kind += ":" + step.argv[1]
        event(kind)

    runner._finished = finished  # type: ignore[assignment]

    def counted(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
            result = real(src, dst, *args, **kwargs)
            event(f"{name} {Path(dst).name}")
            return result

        return wrapper

    os.replace = counted("replace", os.replace)  # type: ignore[assignment]
    os.rename = counted("rename", os.rename)  # type: ignore[assignment]
    os.link = counted("link", os.link)  # type: ignore[assignment]


if __name__ == "__main__":
    install(sys.argv[1], Path(sys.argv[2]))
    sys.exit(main(sys.argv[3:]))
