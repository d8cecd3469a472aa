"""What already exists in an output folder, judged against the plan's expectations."""

from __future__ import annotations

import errno
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import load_der_private_key

from orchestrator import names, record, stamp
from orchestrator.certcheck import load_cert, load_key, problems, public_bytes
from orchestrator.files import read_regular
from orchestrator.plan import State
from orchestrator.steps import Copy, Plan, Write, is_config, reads, writes


def inspect(out: Path, full: Plan, vouch: stamp.Vouch | None = None) -> State:
    """`full` is the plan for an empty folder; the result says which of its tasks are already done.
    A copy that differs from its source (a node's ca.crt edited by hand, say) counts as missing.
    `vouch`: the last stamp's word (read here when not given)."""
    now = datetime.now(UTC)
    vouch = vouch or stamp.Vouch(out, now.timestamp())
    # Paths joined as strings: pathlib's `/` costs more than the stat or read it is for, and a folder of
    # 10,000 nodes is looked at through ~100,000 of them (issue 16).
    root = os.fspath(out)
    found = {p for p in paths(full) if _is_file(os.path.join(root, p))}
    sources: dict[str, bytes | None] = {}  # certs/ca.crt, copied into every node's folder: read once
    for step in full.steps:
        if not isinstance(step, Copy) or step.dst not in found:
            continue
        if vouch.unchanged(step.src) and vouch.unchanged(step.dst):
            continue  # as a clean run left them, and a clean run leaves every copy equal to its source
        if step.src not in sources:
            sources[step.src] = _read(os.path.join(root, step.src))
        source = sources[step.src]
        # An imported file (an absolute path) moved away since: the copy in the folder stands.
        gone = source is None and os.path.isabs(step.src)
        if not gone and _read(os.path.join(root, step.dst)) != source:
            found.discard(step.dst)
    for task in full.leaves():  # a .pk8 counts only while it is the key it is another form of
        assert task.expect is not None
        pk8 = names.pk8_for(task.expect.key)
        if _same_key(os.path.join(root, pk8), os.path.join(root, task.expect.key)):
            found.add(pk8)
        else:
            found.discard(pk8)
    present = frozenset(found)
    recorded = _recorded(vouch)
    found_record = record.read(out) if recorded is None else None
    provenance = recorded.provenance if recorded else found_record.provenance if found_record else None
    rendered = {s.path: s.text for s in full.steps if is_config(s) and isinstance(s, Write)}
    if provenance is record.Provenance.SIGNED_ELSEWHERE:  # kept by every plan for such a folder
        rendered[names.RECORD] = record.of(full.spec, provenance)
    current = frozenset(p for p, text in rendered.items() if _holds(os.path.join(root, p), text))
    # A certificate the last clean run's stamp vouches for (the same expectation, its files untouched
    # since) is not read again: 10,000 nodes plus one is one check, not 10,001 (issue 16).
    expects = {task.id: stamp.expect_digest(task.expect) for task in full.tasks if task.expect is not None}
    fresh = frozenset(
        task.id
        for task in full.tasks
        if task.expect is not None
        and (vouch.vouches(task.id, expects[task.id], task.expect) or not problems(task.expect, out, now))
    )
    ca_ends = {}
    for task in full.tasks:
        if task.expect is not None and task.expect.is_ca and task.id in fresh:
            ca_ends[task.id] = load_cert(out / task.expect.cert).not_valid_after_utc
    return State(
        fresh=fresh,
        present=present,
        current=current,
        ca_ends=ca_ends,
        now=now,
        provenance=provenance,
        recorded=recorded,
        expects=expects,
    )


def _recorded(vouch: stamp.Vouch) -> record.Settings | None:
    """The record's settings as the stamp holds them, while the record is the file it saw (a record of
    10,000 nodes is 1 MB of TOML, ~0.1 s to parse: issue 16); None: read it (changes.guard)."""
    return record.Settings.from_held(vouch.record) if vouch.unchanged(names.RECORD) else None


def paths(plan: Plan) -> set[str]:
    """Every file a plan reads or writes (only those are looked at: --out may be a busy folder)."""
    return {p for step in plan.steps for p in (*reads(step), *writes(step))}


def _is_file(path: str) -> bool:
    """Path.is_file for a string: a regular file (a link to one counts); missing, or a component that is
    not a folder or loops, is False; any other error (a folder it may not look into) is raised."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EBADF):
            return False
        raise
    except ValueError:  # a NUL in the name
        return False


def _same_key(pk8: str, key: str) -> bool:
    """Whether `pk8` (DER PKCS#8) holds the key in `key` (PEM)."""
    data = _read(pk8)
    if data is None:
        return False
    try:
        return public_bytes(load_der_private_key(data, password=None)) == public_bytes(load_key(key))
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm):
        return False


def _holds(path: str, text: str) -> bool:
    """Whether `path` holds `text` (as runner.py writes it: UTF-8), however long: the record of 10,000
    nodes is 1 MB, more than a certificate's read limit (files.MAX_READ)."""
    data = text.encode("utf-8")
    try:
        return read_regular(path, len(data) + 1) == data
    except OSError:
        return False


def _read(path: str) -> bytes | None:
    """The bytes of `path` (as runner.py writes text: UTF-8), or None when it cannot be read."""
    try:
        return read_regular(path)
    except OSError:
        return None
