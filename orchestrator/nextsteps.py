"""What to do with the files once they are made: the `cockroach` commands for this spec.

Operators paste these lines, so every value in them is quoted as in a script (script.quote), and the
advice holds for the folder it is printed for."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote as url_quote

from orchestrator import names
from orchestrator.profiles import PROFILES
from orchestrator.recipes import split_hosts
from orchestrator.script import quote
from orchestrator.spec import Spec


def next_steps(spec: Spec, out: Path) -> str:
    certs = out / names.CERTS_DIR
    lines = ["", "Next:"]
    principal_map = ""
    if PROFILES[spec.profile].node_cn is None and spec.nodes:
        # node.crt has no CN=node (the docs'); CockroachDB learns the nodes' identity from this flag.
        mapping, nameless = node_principal_map(spec)
        principal_map = f" --cert-principal-map={quote(mapping)}" if mapping else ""
        for name in nameless:
            lines.append(
                f"  {name}'s node.crt has no DNS name to map to node: the other nodes will refuse it"
                " (give it a DNS name in the spec's hosts)"
            )
    if len(spec.nodes) == 1:
        host = spec.nodes[0].hosts[0]
        lines.append(
            f"  cockroach start-single-node --certs-dir={quote(certs)}"
            f" --listen-addr={_hostport(host)}{principal_map}"
        )
    else:
        for node in spec.nodes:
            lines.append(
                f"  copy {quote(out / names.node_dir(node.name))}/ to {node.name}, then there:"
                f" cockroach start --certs-dir=<that folder> --advertise-addr={_hostport(node.hosts[0])}"
                f" --join=<the nodes' addresses>{principal_map}"
            )
    if spec.clients and spec.nodes:
        user, host = spec.clients[0].user, spec.nodes[0].hosts[0]
        url = (
            f"postgresql://{_pct(user)}@{_hostport(host)}/defaultdb?sslmode=verify-full"
            f"&sslrootcert={_pct(certs / names.CA_CERT)}&sslcert={_pct(certs / names.client_cert(user))}"
            f"&sslkey={_pct(certs / names.client_key(user))}"
        )
        lines.append(f"  cockroach sql --url={quote(url)}")
    if _holds_a_key(out / names.SAFE_DIR):
        lines.append(f"  Keep {quote(out / names.SAFE_DIR)} off the nodes: it holds the CA key.")
    return "\n".join(lines)


def node_principal_map(spec: Spec) -> tuple[str, list[str]]:
    """The `--cert-principal-map` that lets every node of a docs-profile spec accept every other (one
    DNS SAN of each node's certificate mapped to `node`), and the nodes that have no DNS SAN to map.

    It maps nothing else. The docs also map `<first user>:root`, but that makes every certificate whose
    CN is that user (say maxroach) log in as root, and nothing needs it: the docs' first-user
    certificate already carries `DNS:root`, so it is valid for root without a mapping. A name that is a
    user's (or root, or node) is never mapped to node either: a client certificate would become a node.
    """
    taken = {c.user for c in spec.clients} | {"root", names.NODE_USER}
    mapped: list[str] = []
    nameless: list[str] = []
    for node in spec.nodes:
        dns, _ = split_hosts(node.hosts)
        if names.NODE_USER in dns or "root" in dns:
            continue  # already a principal nodes accept
        usable = [h for h in dns if h not in taken]
        if not usable:
            nameless.append(node.name)
            continue
        domain = next((h for h in usable if "." in h and not h.startswith("*")), usable[0])
        mapped.append(f"{domain}:{names.NODE_USER}")
    return ",".join(dict.fromkeys(mapped)), nameless


def _pct(value: str | Path) -> str:
    """A URL's user or query value: percent-encoded, so `&`, `%`, `#`, `?` and spaces stay in it."""
    return url_quote(str(value), safe="/")


def _holds_a_key(folder: Path) -> bool:
    """Whether the folder holds a CA key (none with your own CA via [ca], or after csr + import)."""
    try:
        return any(p.is_file() for p in folder.glob("*.key"))
    except OSError:
        return False


def _hostport(host: str) -> str:
    return f"[{host}]:26257" if ":" in host else f"{host}:26257"
