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


def _show(value: object) -> str:
    # repr-like quoting that makes control characters and look-alikes visible on one line.
    if isinstance(value, str):
        return '"' + value.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'
    return repr(value)


class Interrupted(Exception):
    """SIGTERM or SIGINT arrived while a run committed: it was held until the commit was complete, then
    honoured (`interrupted`, and the shell's status for that signal: 143, 130)."""

    def __init__(self, signum: int) -> None:
        super().__init__("interrupted")
        self.status = 128 + signum
