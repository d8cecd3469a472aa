"""The one place that runs openssl (through `sh`): argv lists only, stdin closed, a pinned environment,
and an error that shows the command and openssl's own message."""

from __future__ import annotations

import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import sh

from orchestrator.errors import RunError, UserError

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
        env = {k: v for k, v in os.environ.items() if k in _ENV_KEEP}
        env["OPENSSL_CONF"] = os.devnull
        try:
            with open(os.devnull, "rb") as stdin:
                out = sh.Command(self.path)(
                    *argv[1:], _cwd=str(cwd), _in=stdin, _env=env, _tty_out=False, _err_to_out=False
                )
        except sh.ErrorReturnCode as e:
            stderr = e.stderr.decode(errors="replace").strip()
            raise RunError(f"command failed (exit {e.exit_code}): {shlex.join(argv)}\n{stderr}") from None
        return str(out)


def find() -> OpenSSL:
    """The openssl on PATH, refused with one line if missing or unsupported."""
    path = shutil.which("openssl")
    if path is None:
        raise UserError("openssl: not found on PATH; install OpenSSL 1.1.1 or 3.x")
    try:
        version = str(sh.Command(path)("version", _env={**os.environ, "OPENSSL_CONF": os.devnull})).strip()
    except sh.ErrorReturnCode as e:
        raise UserError(
            f"openssl: `{path} version` failed: {e.stderr.decode(errors='replace').strip()}"
        ) from None
    supported, reason = check_version(version)
    if not supported:
        raise UserError(f"openssl: {path} is {version!r}: {reason}")
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
