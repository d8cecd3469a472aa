"""Durations on the command line: `30d`, `12h`, `2w` (a number, then h, d or w)."""

from __future__ import annotations

import re
from datetime import timedelta

from orchestrator.errors import SpecError

_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
_FORM = re.compile(r"^([0-9]{1,6})([hdw])$")


def parse(field: str, text: str) -> timedelta:
    """`30d` -> 30 days; anything else is a one-line error naming `field`."""
    match = _FORM.match(text.strip())
    if not match:
        raise SpecError(field, text, "is not a duration: a number and a unit, h, d or w (12h, 30d, 2w)")
    return int(match.group(1)) * _UNITS[match.group(2)]


def show(span: timedelta) -> str:
    """The way a user writes it: 30 days, 12 hours, 2 weeks."""
    hours = int(span.total_seconds()) // 3600
    if hours % (24 * 7) == 0 and hours:
        n, unit = hours // (24 * 7), "week"
    elif hours % 24 == 0:
        n, unit = hours // 24, "day"
    else:
        n, unit = hours, "hour"
    return f"{n} {unit}{'' if n == 1 else 's'}"


def whole_days(span: timedelta) -> int:
    """The whole days in a span, counted toward zero, so that `list` (-35) and `check` ("35 days ago")
    agree about a certificate that expired 35.5 days ago (timedelta.days would floor it to -36)."""
    return span.days if span >= timedelta(0) else -(-span).days
