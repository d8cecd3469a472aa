"""What already exists in an output folder, judged against the plan's expectations."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from orchestrator import names, record
from orchestrator.certcheck import load_cert, problems
from orchestrator.files import read_regular
from orchestrator.plan import State
from orchestrator.steps import Copy, Plan, Write, is_config, reads, writes


def inspect(out: Path, full: Plan) -> State:
    """`full` is the plan for an empty folder; the result says which of its tasks are already done.
    A copy that differs from its source (a node's ca.crt edited by hand, say) counts as missing."""
    now = datetime.now(UTC)
    found = {p for p in paths(full) if (out / p).is_file()}
    sources: dict[str, bytes | None] = {}  # certs/ca.crt, copied into every node's folder: read once
    for step in full.steps:
        if isinstance(step, Copy) and step.dst in found:
            if step.src not in sources:
                sources[step.src] = _read(out / step.src)
            if _read(out / step.dst) != sources[step.src]:
                found.discard(step.dst)
    present = frozenset(found)
    found_record = record.read(out)
    provenance = found_record.provenance if found_record else None
    rendered = {s.path: s.text for s in full.steps if is_config(s) and isinstance(s, Write)}
    if provenance is record.Provenance.SIGNED_ELSEWHERE:  # kept by every plan for such a folder
        rendered[names.RECORD] = record.of(full.spec, provenance)
    current = frozenset(p for p, text in rendered.items() if _read(out / p) == text.encode("utf-8"))
    fresh = frozenset(
        task.id for task in full.tasks if task.expect is not None and not problems(task.expect, out, now)
    )
    ca_ends = {}
    for task in full.tasks:
        if task.expect is not None and task.expect.is_ca and task.id in fresh:
            ca_ends[task.id] = load_cert(out / task.expect.cert).not_valid_after_utc
    return State(
        fresh=fresh, present=present, current=current, ca_ends=ca_ends, now=now, provenance=provenance
    )


def paths(plan: Plan) -> set[str]:
    """Every file a plan reads or writes (only those are looked at: --out may be a busy folder)."""
    return {p for step in plan.steps for p in (*reads(step), *writes(step))}


def _read(path: Path) -> bytes | None:
    """The bytes of `path` (as runner.py writes text: UTF-8), or None when it cannot be read."""
    try:
        return read_regular(path)
    except OSError:
        return None
