"""The one place that runs openssl (through `sh`): argv lists only, stdin closed, a pinned environment,
and an error that shows the command and openssl's own message."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import RunError, SpecError, UserError

# openssl reads $OPENSSL_CONF for commands given no -config (genrsa, rand): pin it to nothing, so the
# machine's openssl.cnf cannot change what we make. -config files are our own rendered ones.
_ENV_KEEP = ("PATH", "LANG", "LC_ALL", "TZ", "SYSTEMROOT")


@dataclass(frozen=True)
class OpenSSL:
    path: str
    version: str  # "OpenSSL 3.0.19 27 Jan 2026"

    def run(self, argv: tuple[str, ...], cwd: Path) -> str:
        """Run `argv` (whose argv[0] is "openssl") in `cwd`; return stdout, raise RunError on failure."""
        assert argv[0] == "openssl", argv
        import sh  # here, not at the top: a run with nothing to make never pays for it (issue 6)

        try:
            with open(os.devnull, "rb") as stdin:
                out = sh.Command(self.path)(
                    *argv[1:],
                    _cwd=str(cwd),
                    _in=stdin,
                    _env=_environment(),
                    _preexec_fn=_private_umask,
                    _tty_out=False,
                    _err_to_out=False,
                )
        except sh.ErrorReturnCode as e:
            stderr = e.stderr.decode(errors="replace").strip()
            raise RunError(f"command failed (exit {e.exit_code}): {shlex.join(argv)}\n{stderr}") from None
        except (OSError, sh.ForkException) as e:  # the binary went away or cannot be run any more
            raise RunError(f"command failed: {shlex.join(argv)}: {_last_line(e)}") from None
        finally:
            _join_sh_timers()
        return str(out)

    def run_alone(self, argv: tuple[str, ...], cwd: Path, said: int) -> None:
        """`run`, from a process with no other thread that needs nothing of what openssl prints but its
        error (a worker, workers.py): `sh` in the foreground, a plain fork and exec, without the threads
        and pipes `run` captures the output with. ~3 ms less per command: the signatures of a big run are
        one after another (issue 16). openssl's stdin is /dev/null, its stdout and stderr the file `said`
        (emptied here), read back if it fails."""
        assert argv[0] == "openssl", argv
        assert threading.active_count() == 1, "forking beside a thread"
        import sh

        os.ftruncate(said, 0)
        os.lseek(said, 0, os.SEEK_SET)
        try:
            with _standard_fds(said):
                sh.Command(self.path)(*argv[1:], _cwd=str(cwd), _env=_environment(), _fg=True)
        except sh.ErrorReturnCode as e:
            os.lseek(said, 0, os.SEEK_SET)
            stderr = os.read(said, _MAX_SAID).decode(errors="replace").strip()
            if e.exit_code == _NOT_STARTED and not stderr:  # the fork's exec failed, and says nothing
                there = os.path.isfile(self.path) and os.access(self.path, os.X_OK)
                stderr = f"{self.path} could not be started" + ("" if there else ": no executable file there")
            raise RunError(f"command failed (exit {e.exit_code}): {shlex.join(argv)}\n{stderr}") from None
        except OSError as e:  # the folder went away
            raise RunError(f"command failed: {shlex.join(argv)}: {e.strerror or e}") from None


_MAX_SAID = 65536  # of openssl's output, shown when it fails: its errors are a few lines
_NOT_STARTED = 127  # os.spawnve's child when its exec fails


@contextmanager
def _standard_fds(said: int) -> Iterator[None]:
    """For the child `sh` forks in the foreground (it inherits them): stdin /dev/null, stdout and stderr
    `said`, umask 077 (issue 5: keys never readable, at any moment); this process's own, back after."""
    saved = [os.dup(fd) for fd in (0, 1, 2)]
    mask = os.umask(0o077)
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.dup2(said, 1)
        os.dup2(said, 2)
        yield
    finally:
        os.umask(mask)
        for fd, copy in enumerate(saved):
            os.dup2(copy, fd)
            os.close(copy)


def _join_sh_timers() -> None:
    """`sh` joins the threads it starts for a command before the command returns, except a Timer it
    cancels (sh 2.x, OProc._process_exit_cleanup) and leaves to end on its own: wait for it, so that the
    next fork (by sh, or the runner's) is made by a process with one thread (Python 3.12+ warns otherwise,
    and a child forked beside another thread may deadlock)."""
    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer) and thread.finished.is_set():
            thread.join()


def _last_line(error: Exception) -> str:
    """sh reports a failed exec with the child's whole traceback: its last line says what happened."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _ENV_KEEP}
    env["OPENSSL_CONF"] = os.devnull
    return env


def _private_umask() -> None:
    """In each openssl child, before exec: whatever the parent's umask is at that moment (threads share
    it), every file openssl creates is its owner's only (issue 5: keys never readable, at any moment)."""
    os.umask(0o077)


ENV = "CRDB_CERTS_OPENSSL"  # the openssl to run, as --openssl names it (a Homebrew or custom build)
_chosen: tuple[str, str] | None = None  # (the option or variable that named it, its absolute path)


def choose(path: str | None, named: str = "--openssl") -> None:
    """Run `path` instead of the openssl on PATH (None: the one on PATH). Checked here, so that a wrong
    path is refused before anything else happens, even by a run that would not need openssl."""
    global _chosen
    if path is None:
        _chosen = None
        return
    absolute = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(absolute) or not os.access(absolute, os.X_OK):
        raise SpecError(named, path, "is not an executable file (give the path of an openssl binary)")
    _chosen = (named, absolute)


def find() -> OpenSSL:
    """The chosen openssl (--openssl, $CRDB_CERTS_OPENSSL) or else the one on PATH, refused with one line
    if missing or unsupported."""
    if _chosen is not None:
        named, path = _chosen
    else:
        named, found = "openssl", shutil.which("openssl")
        if found is None:
            raise UserError(
                f"openssl: not found on PATH; install OpenSSL 1.1.1 or 3.x, or name it with --openssl PATH"
                f" (or {ENV})"
            )
        # Absolute: openssl runs inside the staging folder, where a relative PATH entry (`.`, `bin`)
        # would find nothing, or something planted there.
        path = os.path.abspath(found)
    import sh

    try:
        version = str(sh.Command(path)("version", _env=_environment(), _preexec_fn=_private_umask)).strip()
    except sh.ErrorReturnCode as e:
        said = " ".join(e.stderr.decode(errors="replace").split()) or f"exit status {e.exit_code}"
        raise UserError(f"{named}: `{path} version` failed: {said}") from None
    except (OSError, sh.ForkException) as e:  # a broken interpreter line, a binary for another machine
        raise UserError(f"{named}: {path} cannot be run: {_last_line(e)}") from None
    finally:
        _join_sh_timers()
    version = " ".join(version.split())
    supported, reason = check_version(version)
    if not supported:
        raise UserError(f"{named}: {path} is {version!r}: {reason}")
    return OpenSSL(path, version)


def check_version(version: str) -> tuple[bool, str]:
    if version.startswith("LibreSSL"):
        # LibreSSL's `openssl ca` and config parser differ (openssl-traps.md §4.8); refuse rather than guess.
        return False, "LibreSSL is not supported; install OpenSSL 1.1.1 or 3.x (e.g. Homebrew's openssl@3)"
    match = re.match(r"OpenSSL (\d+)\.(\d+)\.(\d+)", version)
    if not match:
        return False, "cannot tell which OpenSSL this is"
    major, minor, patch = map(int, match.groups())
    if (major, minor, patch) < (1, 1, 1):
        return False, "OpenSSL 1.1.1 or newer is needed (-rand_serial, -ext, SAN handling)"
    return True, ""
