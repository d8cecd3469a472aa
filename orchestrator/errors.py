"""Errors a user can act on, and the exit status each one ends with."""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    FINDINGS = 1  # audit found errors / check found changes or expiring certificates
    USAGE = 2  # the user's input was wrong; nothing was touched
    FAILED = 3  # openssl or the environment failed while running


class UserError(Exception):
    """A mistake or condition the user can fix: printed as one line, never as a traceback."""

    status = ExitStatus.USAGE


class SpecError(UserError):
    """A value in the spec (or on the command line) that is not acceptable."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field, self.value, self.reason = field, value, reason
        super().__init__(f"{field}: {_show(value)} {reason}")


class Findings(UserError):
    """Problems in files the user gave, all of them (`import` of what an outside CA returned): printed one
    line each."""

    status = ExitStatus.FINDINGS

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        super().__init__("\nerror: ".join(lines))


class RunError(UserError):
    """A step of the plan failed; says which command and what openssl said."""

    status = ExitStatus.FAILED


# A value longer than the longest DNS name (253) is cut to its first _SHOWN characters in an error.
_LONG, _SHOWN = 256, 64


def _show(value: object) -> str:
    # repr-like quoting that makes control characters and look-alikes visible on one line; a long value
    # (a 10 MB host name) is cut, with its length, so that the error stays one readable line.
    if isinstance(value, str):
        if len(value) > _LONG:
            return _show(value[:_SHOWN])[:-1] + f'..." ({len(value)} characters)'
        return '"' + value.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'
    text = repr(value)
    return text if len(text) <= _LONG else f"{text[:_SHOWN]}... ({len(text)} characters)"


class Interrupted(Exception):
    """SIGTERM or SIGINT arrived while a run committed: it was held until the commit was complete, then
    honoured (`interrupted`, and the shell's status for that signal: 143, 130)."""

    def __init__(self, signum: int) -> None:
        super().__init__("interrupted")
        self.status = 128 + signum


def printable(text: str) -> str:
    """A file name as it can always be printed: bytes that are not UTF-8 (kept by Python as surrogates,
    which a strict UTF-8 stdout refuses to write) are shown as \\xff escapes."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
