"""`crdb-certs export ansible`: an inventory and a playbook that deliver each node's certs directory.

The playbook runs one task per node (one node at a time unless told otherwise): library/crdb_certs_dir.py
(ansible_module.py here), which compares the node's certs_dir with nodes/<name>/, and when anything
differs puts the new folder in its place in one rename and runs the reload command (see that module).
A node that already holds the folder is not touched: a second run reports no change.

Written with a YAML library; every value from the spec is marked `!unsafe`, so Ansible never evaluates
it as a template, and the reload command is an argv (shlex-split here), run without a shell.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from orchestrator import names, validate
from orchestrator.errors import SpecError, UserError
from orchestrator.probe import SQL_PORT
from orchestrator.spec import Node, Spec

INVENTORY = "inventory.yml"
PLAYBOOK = "deploy.yml"
GROUP = "cockroach"
LIBRARY = "library"  # beside the playbook: where ansible-playbook finds the module
MODULE = "crdb_certs_dir"


class _Unsafe(str):
    """A string Ansible must take as it is: written with the `!unsafe` tag, never templated."""


def _unsafe(dumper: yaml.SafeDumper, value: _Unsafe) -> yaml.Node:
    return dumper.represent_scalar("!unsafe", str(value))


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # each task written out in full: no &id001 anchors for a reader to chase


_Dumper.add_representer(_Unsafe, _unsafe)


@dataclass(frozen=True)
class Reach:
    """Where a node is: how Ansible logs in, where its certs directory goes, where probe reaches it."""

    node: Node
    user: str | None
    host: str
    port: int | None
    sql_host: str
    sql_port: int


def reach(spec: Spec, field_of: dict[str, str] | None = None) -> list[Reach]:
    """Every node that deploys ([[nodes]] with `ssh`; not a Kubernetes StatefulSet's)."""
    found = []
    k8s_node = spec.kubernetes.node if spec.kubernetes else None
    for i, node in enumerate(spec.nodes):
        if node.name == k8s_node:
            continue
        if node.ssh is None:
            raise SpecError(
                f"nodes[{i}].ssh",
                None,
                f"is needed to deploy: where to reach {node.name} (user@host[:port], as ssh takes it)",
            )
        user, host, port = validate.ssh(f"nodes[{i}].ssh", node.ssh)
        if node.sql_addr is not None:
            sql_host, sql_port = validate.sql_addr(f"nodes[{i}].sql_addr", node.sql_addr)
        else:
            sql_host, sql_port = node.hosts[0], SQL_PORT
        found.append(Reach(node, user, host, port, sql_host, sql_port))
    if not found:
        raise UserError("nodes: the spec has no [[nodes]] to deploy to")
    return found


def files_of(folder: Path) -> list[dict[str, str]]:
    """What a node's certs directory holds, each with the mode it is delivered with."""
    if not folder.is_dir():
        raise UserError(f"{folder}: missing: `crdb-certs issue` makes it")
    found = sorted(p.name for p in folder.iterdir() if p.is_file())
    if not found:
        raise UserError(f"{folder}: empty: `crdb-certs issue` makes it")
    return [
        {"name": n, "mode": f"0{names.KEY_MODE if n.endswith(names.KEY_SUFFIX) else names.CERT_MODE:o}"}
        for n in found
    ]


def inventory(spec: Spec, pki: Path) -> dict[str, Any]:
    hosts: dict[str, Any] = {}
    for r in reach(spec):
        folder = pki.resolve() / names.node_dir(r.node.name)
        host: dict[str, Any] = {"ansible_host": _Unsafe(r.host)}
        if r.user is not None:
            host["ansible_user"] = _Unsafe(r.user)
        if r.port is not None:
            host["ansible_port"] = r.port
        host["crdb_certs_dir"] = _Unsafe(r.node.certs_dir)
        host["crdb_files"] = [
            {"name": _Unsafe(f["name"]), "mode": _Unsafe(f["mode"]), "src": _Unsafe(folder / f["name"])}
            for f in files_of(folder)
        ]
        hosts[r.node.name] = host
    reload_argv = [_Unsafe(word) for word in shlex.split(spec.reload)]
    return {"all": {"children": {GROUP: {"hosts": hosts, "vars": {"crdb_reload": reload_argv}}}}}


def _read(which: str) -> str:
    """The contents of the certificates (rejectattr) or of the keys (selectattr), in crdb_files' order."""
    chosen = f"crdb_files | {which}('name', 'search', '\\.key$') | map(attribute='src')"
    return "{{ query('ansible.builtin.file', *(" + chosen + "), rstrip=false) }}"


def playbook() -> list[dict[str, Any]]:
    deliver = {
        "name": "Put the certs directory in place (one rename), then reload",
        MODULE: {
            "dest": "{{ crdb_certs_dir }}",
            "files": "{{ crdb_files }}",
            # read on this machine, as text (PEM), newlines kept; the keys never shown (the module's no_log)
            "contents": _read("rejectattr"),
            "secrets": _read("selectattr"),
            "reload": "{{ crdb_reload }}",
        },
    }
    return [
        {
            "name": "Deliver CockroachDB certificates (crdb-certs)",
            "hosts": GROUP,
            "serial": "{{ crdb_serial | default(1) }}",
            "any_errors_fatal": True,  # the first node that fails stops the roll: the next are untouched
            "gather_facts": False,
            "tasks": [deliver],
        }
    ]


HEADER = "# Written by `crdb-certs export ansible`; run: ansible-playbook -i {inv} {book}\n"


def write(spec: Spec, pki: Path, out: Path) -> tuple[Path, Path]:
    """Write OUT/inventory.yml, OUT/deploy.yml and OUT/library/crdb_certs_dir.py (made in memory first:
    a refusal writes nothing)."""
    inv = _Dumper
    inventory_text = yaml.dump(inventory(spec, pki), Dumper=inv, sort_keys=False, width=1000)
    playbook_text = yaml.dump(playbook(), Dumper=inv, sort_keys=False, width=1000)
    out.mkdir(parents=True, exist_ok=True)
    header = HEADER.format(inv=INVENTORY, book=PLAYBOOK)
    (out / INVENTORY).write_text(header + inventory_text, encoding="utf-8")
    (out / PLAYBOOK).write_text(header + "---\n" + playbook_text, encoding="utf-8")
    (out / LIBRARY).mkdir(exist_ok=True)
    module = Path(__file__).with_name("ansible_module.py").read_text(encoding="utf-8")
    (out / LIBRARY / f"{MODULE}.py").write_text(module, encoding="utf-8")
    return out / INVENTORY, out / PLAYBOOK
