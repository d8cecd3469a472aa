"""What each phase of a run cost, for the benchmark (bench/bench.py --huge, issue 16): with CRDB_CERTS_PHASES
set to a file, a run writes there {phase: seconds} as JSON when it ends. Otherwise nothing is written, and
timing a phase costs two clock reads."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ENV = "CRDB_CERTS_PHASES"
_spent: dict[str, float] = {}


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Add the time spent in the block to `name` (a phase entered many times adds up)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        add(name, time.perf_counter() - start)


def add(name: str, seconds: float) -> None:
    _spent[name] = _spent.get(name, 0.0) + seconds


def write() -> None:
    """Write the phases to the file CRDB_CERTS_PHASES names, if it names one; then start afresh."""
    where = os.environ.get(ENV)
    if where:
        Path(where).write_text(json.dumps(_spent, indent=1) + "\n")
    _spent.clear()
