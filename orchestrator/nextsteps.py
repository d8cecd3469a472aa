"""What to do with the files once they are made: the `cockroach` commands for this spec."""

from __future__ import annotations

import shlex
from pathlib import Path

from orchestrator import names
from orchestrator.plan import split_hosts
from orchestrator.spec import Spec


def next_steps(spec: Spec, out: Path) -> str:
    certs = out / names.CERTS_DIR
    lines = ["", "Next:"]
    principal_map = ""
    if spec.profile == "docs" and spec.nodes:
        # The docs' node.crt has no CN=node; CockroachDB learns the node's identity from this flag.
        first = spec.clients[0].user if spec.clients else None
        dns, _ = split_hosts(spec.nodes[0].hosts)
        domain = next((h for h in dns if "." in h), dns[0] if dns else "<node-domain>")
        mapping = f"{domain}:node" + (f",{first}:root" if first else "")
        principal_map = f" --cert-principal-map={mapping}"
    if len(spec.nodes) == 1:
        host = spec.nodes[0].hosts[0]
        lines.append(
            f"  cockroach start-single-node --certs-dir={shlex.quote(str(certs))}"
            f" --listen-addr={_hostport(host)}{principal_map}"
        )
    else:
        for node in spec.nodes:
            lines.append(
                f"  copy {out / names.node_dir(node.name)}/ to {node.name}, then there: cockroach start"
                f" --certs-dir=<that folder> --advertise-addr={_hostport(node.hosts[0])}"
                f" --join=<the nodes' addresses>{principal_map}"
            )
    if spec.clients and spec.nodes:
        user, host = spec.clients[0].user, spec.nodes[0].hosts[0]
        url = (
            f"postgresql://{user}@{_hostport(host)}/defaultdb?sslmode=verify-full"
            f"&sslrootcert={certs}/ca.crt&sslcert={certs}/{names.client_cert(user)}"
            f"&sslkey={certs}/{names.client_key(user)}"
        )
        lines.append(f"  cockroach sql --url={shlex.quote(url)}")
    lines.append(f"  Keep {out / names.SAFE_DIR} off the nodes: it holds the CA key.")
    return "\n".join(lines)


def _hostport(host: str) -> str:
    return f"[{host}]:26257" if ":" in host else f"{host}:26257"
