"""`crdb-certs deploy`: the exported playbook, run node by node, each node checked with `probe` before the
next one is touched.

Ansible delivers and reloads (ansible.py, ansible_module.py); this decides the order, reads what Ansible
said about each node, and asks the node itself, through its SQL port, whether it now serves the
certificate this folder issued to it. The first node that fails ends the roll: exit 1, naming the node and
the reason; the nodes after it are not touched.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

from orchestrator import ansible, names, probe
from orchestrator.errors import ExitStatus, RunError, SpecError, UserError
from orchestrator.spec import Spec

PLAYBOOK_DIR = "ansible"  # OUT/ansible/: the inventory and playbook deploy runs (export ansible's output)
RELOAD_WAIT = 20.0  # seconds a node has, after its reload, to serve the new certificate
_POLL = 0.2

Say = Callable[[str], None]


class RollStopped(UserError):
    """A node failed: the roll stops there."""

    status = ExitStatus.FINDINGS


@dataclass(frozen=True)
class Outcome:
    node: str
    changed: bool


def select(spec: Spec, wanted: tuple[str, ...]) -> list[ansible.Reach]:
    """The nodes to deploy to, in the spec's order (--nodes: those named)."""
    every = ansible.reach(spec)
    known = {r.node.name for r in every}
    for name in wanted:
        if name not in known:
            raise SpecError("--nodes", name, "is not a node of the spec that deploys (one with ssh)")
    return [r for r in every if not wanted or r.node.name in wanted]


def ansible_available() -> None:
    if importlib.util.find_spec("ansible") is None:
        error = UserError("deploy: needs ansible-core: pip install 'crdb-certs[deploy]'")
        error.status = ExitStatus.FAILED
        raise error


def run(
    spec: Spec,
    out: Path,
    wanted: tuple[str, ...],
    parallel: int,
    check: bool,
    say: Say,
) -> list[Outcome]:
    """Deliver, reload and probe every node chosen, `parallel` at a time. Raises RollStopped at the first
    node that fails."""
    chosen = select(spec, wanted)
    ansible_available()
    inventory, book = ansible.write(spec, out, out / PLAYBOOK_DIR)
    folder = probe.from_output(spec, out, http=False)
    done: list[Outcome] = []
    for start in range(0, len(chosen), parallel):
        batch = chosen[start : start + parallel]
        after = [r.node.name for r in chosen[start + parallel :]]
        results = _play(inventory, book, [r.node.name for r in batch], parallel, check, say)
        for r in batch:
            changed, failure = results.get(r.node.name, (False, "Ansible reported nothing for it"))
            if failure is not None:
                raise RollStopped(_stopped(r.node.name, failure, after))
            if check:
                say(f"{r.node.name}: {'would be replaced and reloaded' if changed else 'already in place'}")
                done.append(Outcome(r.node.name, changed))
                continue
            problem = _confirm(r, folder)
            if problem is not None:
                raise RollStopped(_stopped(r.node.name, problem, after))
            what = "delivered, reloaded" if changed else "already in place"
            say(f"{r.node.name}: {what}; serves {names.node_dir(r.node.name)}/{names.NODE_CERT} (probe)")
            done.append(Outcome(r.node.name, changed))
    return done


def _stopped(node: str, reason: str, after: list[str]) -> str:
    untouched = f"; not touched: {', '.join(after)}" if after else ""
    return f"deploy: {node}: {reason}{untouched}"


def _play(
    inventory: Path, book: Path, batch: list[str], parallel: int, check: bool, say: Say
) -> dict[str, tuple[bool, str | None]]:
    """Run the playbook on `batch`; per node: (changed, the reason it failed or None)."""
    argv = [sys.executable, "-m", "ansible.cli.playbook", "-i", str(inventory), str(book)]
    argv += ["--limit", ",".join(batch), "-e", json.dumps({"crdb_serial": parallel})]
    if check:
        argv += ["--check", "--diff"]
    env = dict(os.environ)
    env.setdefault("ANSIBLE_PIPELINING", "True")  # one SSH round trip per node rather than several
    # What this reads: the default callback's lines, results as JSON, no colours.
    env |= {"ANSIBLE_STDOUT_CALLBACK": "default", "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}
    env |= {"ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_RETRY_FILES_ENABLED": "0"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if check:
        say(done.stdout.rstrip())
    results = _results(done.stdout)
    if done.returncode != 0 and not any(failure for _, failure in results.values()):
        tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-5:]
        raise RunError(f"deploy: ansible-playbook exited {done.returncode}: {' / '.join(tail)}")
    return results


def _results(output: str) -> dict[str, tuple[bool, str | None]]:
    """Each host's outcome, from the default callback's lines: `changed: [n]`, `ok: [n]`,
    `fatal: [n]: FAILED! => {json}`, `fatal: [n]: UNREACHABLE! => {json}`."""
    found: dict[str, tuple[bool, str | None]] = {}
    for line in output.splitlines():
        for state in ("changed", "ok", "fatal"):
            prefix = f"{state}: ["
            if not line.startswith(prefix) or "]" not in line:
                continue
            host, _, rest = line[len(prefix) :].partition("]")
            if state == "fatal":
                found[host] = (False, _reason(rest))
            elif found.get(host, (False, None))[1] is None:
                found[host] = (state == "changed", None)
    return found


def _reason(rest: str) -> str:
    kind = "unreachable over SSH" if "UNREACHABLE!" in rest else "failed"
    _, _, payload = rest.partition("=> ")
    try:
        result = json.loads(payload)
        message = str(result.get("msg") or result.get("module_stderr") or result).strip()
    except (json.JSONDecodeError, AttributeError):
        message = payload.strip() or rest.strip()
    message = " ".join(message.split())[:400]
    return message if kind == "failed" else f"{kind}: {message}"


def _confirm(target: ansible.Reach, folder: probe.Folder) -> str | None:
    """None once the node serves the certificate the folder issued to it; else why not (after waiting
    RELOAD_WAIT seconds: a reload takes a moment)."""
    mine = replace(folder, issued=tuple(i for i in folder.issued if i.node == target.node.name))
    if not mine.issued:
        return f"{names.node_dir(target.node.name)}/{names.NODE_CERT} cannot be read"
    where = probe.Target(target.sql_host, target.sql_port)
    options = probe.Options(timeout=5.0, within=timedelta(0))
    deadline = time.monotonic() + RELOAD_WAIT
    while True:
        found = probe.probe(where, mine, options)
        if found.unreachable is None and found.issued and not found.findings:
            return None
        if time.monotonic() > deadline:
            break
        time.sleep(_POLL)
    if found.unreachable is not None:
        return f"probe {where}: unreachable: {found.unreachable}"
    if not found.issued:
        served = f"{found.chain[0].serial_number:x}" if found.chain else "?"
        return (
            f"probe {where}: serves serial {served}, not the certificate the folder issued"
            f" ({mine.issued[0].cert}, serial {mine.issued[0].serial:x}): the reload did not take"
        )
    return f"probe {where}: " + "; ".join(f"{f.code}: {f.message}" for f in found.findings)
