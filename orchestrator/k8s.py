"""`crdb-certs export k8s`: the certificates as Kubernetes manifests, for the reader they are for (--for).

- `helm` (default): Secrets the CockroachDB Helm chart reads (tls.certs.provided with tls.certs.tlsSecret):
  type kubernetes.io/tls, keys `ca.crt`, `tls.crt`, `tls.key`. One per node (`<prefix>-node` for one
  node, the chart's default nodeSecret, else `<prefix>-node-<name>`) and one per user, `<prefix>-<user>`
  (root's is the chart's default clientRootSecret, `cockroachdb-root`). A node secret also carries the
  other files of the node's certs directory under their CockroachDB names (client.node.crt/.key,
  ca-client.crt, ui.crt/.key, ca-ui.crt), for the split layouts and the DB Console.
- `operator`: the same Secrets under the names the CockroachDB operator reads: `<cluster>-node`,
  `<cluster>-root` (other users `<cluster>-<user>`), and `<cluster>-ca` holding `ca.crt` only.
- `cert-manager`: an Issuer of kind CA over a Secret holding this folder's CA (certificate and key), and
  the Certificates the Helm chart's cert-manager mode makes (`<release>-node`, `<release>-root-client`;
  other users `<release>-<user>-client`), writing the Secrets the chart mounts; cert-manager then renews
  them in the cluster from the same CA.

With [kubernetes] in the spec, its node (the one every pod of the StatefulSet shares) is the only node
exported, the release names the resources and the namespace is the default one. The YAML is emitted by
PyYAML from plain data; everything goes into one file, created 0600 and moved into place whole.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives.serialization import Encoding

from orchestrator import names, plan
from orchestrator.cas import signers
from orchestrator.certcheck import load_cert, load_certs, load_key, public_bytes, signed_by
from orchestrator.errors import SpecError, UserError
from orchestrator.profiles import PROFILES
from orchestrator.recipes import split_hosts
from orchestrator.spec import Node, Spec

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")  # RFC 1123 label: a namespace
_SUBDOMAIN = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*$")
_MAX_NAME = 253
FILE_MODE = 0o600
TLS_KEYS = ("ca.crt", "tls.crt", "tls.key")
TARGETS = ("helm", "operator", "cert-manager")
DEFAULT_PREFIX = "cockroachdb"  # the Helm chart's default Secret names: cockroachdb-node, cockroachdb-root
CERT_MANAGER = "cert-manager.io/v1"
# What our configs give every leaf (keyUsage digitalSignature,keyEncipherment), in cert-manager's words.
_KEY_USAGES = ["digital signature", "key encipherment"]
_RENEW_AT_MOST = 30 * 24  # hours: renew a month ahead at most (cert-manager's default is a third)


@dataclass(frozen=True)
class Secret:
    name: str
    about: str  # node <name> | user <name> | the CA
    data: dict[str, bytes]  # key in the secret -> file content
    type: str = "kubernetes.io/tls"


@dataclass
class Export:
    """What `export k8s` writes: the documents, one line per resource, and how to hand over."""

    documents: list[dict[str, Any]] = field(default_factory=list)
    made: list[str] = field(default_factory=list)  # "Secret cockroachdb-node (node node)"
    handover: list[str] = field(default_factory=list)
    holds_ca_key: bool = False

    def add(self, kind: str, name: str, about: str, document: dict[str, Any]) -> None:
        if any(line.startswith(f"{kind} {name} ") for line in self.made):
            raise UserError(
                f"export k8s: {about} would be the {kind} {name!r} that is already written; rename one,"
                " or choose another --name-prefix"
            )
        if len(name) > _MAX_NAME or not _SUBDOMAIN.match(name):
            raise UserError(f"export k8s: the {kind} name for {about}, {name!r}, is not a Kubernetes name")
        self.documents.append(document)
        self.made.append(f"{kind} {name} ({about})")


def export(
    spec: Spec,
    source: Path,
    target: str = "helm",
    prefix: str | None = None,
    namespace: str | None = None,
    include_ca_key: bool = False,
) -> Export:
    """The manifests of `target` for the output folder `source`."""
    if prefix is not None and not _LABEL.match(prefix):
        raise SpecError("--name-prefix", prefix, "is not a Kubernetes name (lower-case letters, digits, '-')")
    if namespace is not None and not _LABEL.match(namespace):
        raise SpecError(
            "--namespace", namespace, "is not a Kubernetes namespace (lower-case letters, digits, '-')"
        )
    if include_ca_key and target != "cert-manager":
        raise UserError("--include-ca-key: is only for --for cert-manager (the Secret of its Issuer)")
    if target == "cert-manager" and not include_ca_key:
        raise UserError(
            "--include-ca-key: --for cert-manager puts this folder's CA key into the Issuer's Secret, so the"
            " key leaves this machine; add --include-ca-key to say that is what you want"
        )
    release = spec.kubernetes.release if spec.kubernetes else DEFAULT_PREFIX
    namespace = namespace or (spec.kubernetes.namespace if spec.kubernetes else None)
    done = Export()
    if target == "cert-manager":
        _cert_manager(done, spec, source, release, prefix or DEFAULT_PREFIX, namespace)
        return done
    prefix = prefix or (release if target == "operator" else DEFAULT_PREFIX)
    found = secrets(spec, source, prefix, operator=target == "operator")
    for secret in found:
        done.add("Secret", secret.name, secret.about, _secret_document(secret, namespace))
    node_secrets = [s.name for s in found if s.about.startswith("node ")]
    root_secret = next((s.name for s in found if s.about == "user root"), None)
    if target == "operator":
        done.handover.append(
            f"Operator: in the CrdbCluster {prefix}, set spec.nodeTLSSecret: {node_secrets[0]}"
            + (f" and spec.clientTLSSecret: {root_secret}" if root_secret else "")
        )
    elif len(node_secrets) == 1 and root_secret:  # the chart gives every pod the same node secret
        done.handover.append(
            "Helm chart: --set tls.enabled=true,tls.certs.provided=true,tls.certs.tlsSecret=true,"
            f"tls.certs.nodeSecret={node_secrets[0]},tls.certs.clientRootSecret={root_secret}"
        )
    return done


def exported_nodes(spec: Spec) -> list[Node]:
    """The nodes that run in Kubernetes: the StatefulSet's with [kubernetes] (other [[nodes]] run outside
    it), else every node."""
    if spec.kubernetes is not None:
        return [n for n in spec.nodes if n.name == spec.kubernetes.node]
    return list(spec.nodes)


def secrets(spec: Spec, source: Path, prefix: str = DEFAULT_PREFIX, operator: bool = False) -> list[Secret]:
    """One secret per node and per client user, read from the output folder `source` (and, for the
    operator, `<prefix>-ca`)."""
    bundles = plan.build(spec).bundles
    certs = source / names.CERTS_DIR
    nodes = exported_nodes(spec)
    if operator and len(nodes) != 1:
        raise UserError(
            f"--for: the operator gives every pod one node certificate, and this spec has {len(nodes)}"
            " nodes; add a [kubernetes] section (its node is the one exported)"
        )
    found: list[Secret] = []
    for node in nodes:
        folder = source / names.node_dir(node.name)
        name = f"{prefix}-node" if len(nodes) == 1 else f"{prefix}-node-{_part(node.name, 'node')}"
        data = {
            "ca.crt": _read(folder / names.CA_CERT),
            "tls.crt": _read(folder / names.NODE_CERT),
            "tls.key": _read(folder / names.NODE_KEY),
        }
        _pair(folder / names.NODE_CERT, folder / names.NODE_KEY)
        for file in bundles[names.node_dir(node.name)]:
            if file not in (names.CA_CERT, names.NODE_CERT, names.NODE_KEY):
                data[file] = _read(folder / file)
        found.append(Secret(name, f"node {node.name}", data))
    for client in spec.clients:
        cert, key = certs / names.client_cert(client.user), certs / names.client_key(client.user)
        _pair(cert, key)
        data = {"ca.crt": _read(certs / names.CA_CERT), "tls.crt": _read(cert), "tls.key": _read(key)}
        found.append(Secret(f"{prefix}-{_part(client.user, 'user')}", f"user {client.user}", data))
    if operator:
        found.append(Secret(f"{prefix}-ca", "the CA", {"ca.crt": _read(certs / names.CA_CERT)}, "Opaque"))
    return found


def manifest(done: Export, source: Path) -> str:
    """Apply-ready YAML: one document per resource."""
    head = [
        f"# Kubernetes manifests made by crdb-certs from {source}: kubectl apply -f <this file>",
        "# It holds private keys: keep it 0600, out of version control, and delete it once applied.",
    ]
    if done.holds_ca_key:
        head.append(
            "# It holds the CA's private key: whoever reads it can issue any node or user certificate."
        )
    body = yaml.safe_dump_all(done.documents, sort_keys=False, explicit_start=False, width=1 << 20)
    return "\n".join(head) + "\n" + body


def _metadata(name: str, namespace: str | None, about: str) -> dict[str, Any]:
    return {
        "name": name,
        **({"namespace": namespace} if namespace else {}),
        "labels": {"app.kubernetes.io/managed-by": "crdb-certs"},
        "annotations": {"crdb-certs/for": about},
    }


def _secret_document(secret: Secret, namespace: str | None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(secret.name, namespace, secret.about),
        "type": secret.type,
        "data": {key: base64.b64encode(value).decode("ascii") for key, value in secret.data.items()},
    }


def _cert_manager(
    done: Export, spec: Spec, source: Path, release: str, prefix: str, namespace: str | None
) -> None:
    """The Issuer over our CA and the Certificates the Helm chart's cert-manager mode makes."""
    if spec.layout != "standard":
        raise SpecError(
            "layout",
            spec.layout,
            "is not what the Helm chart's cert-manager mode mounts (one CA; node.crt also dials):"
            " use --for helm or --for operator",
        )
    ca = signers(spec).node
    key_path = Path(ca.key) if spec.ca else source / ca.key
    chain = _issuer_chain(source / ca.cert, key_path)
    ca_secret, issuer = f"{release}-ca-key-pair", f"{release}-ca-issuer"
    done.holds_ca_key = True
    done.add(
        "Secret",
        ca_secret,
        "the CA, for cert-manager",
        _secret_document(
            Secret(ca_secret, "the CA, for cert-manager", {"tls.crt": chain, "tls.key": _read(key_path)}),
            namespace,
        ),
    )
    done.add(
        "Issuer",
        issuer,
        "signs with the CA",
        {
            "apiVersion": CERT_MANAGER,
            "kind": "Issuer",
            "metadata": _metadata(issuer, namespace, "signs with the CA"),
            "spec": {"ca": {"secretName": ca_secret}},
        },
    )
    days = spec.cert_days or PROFILES[spec.profile].cert_days
    hours = days * 24
    common = {
        "issuerRef": {"name": issuer, "kind": "Issuer", "group": "cert-manager.io"},
        "duration": f"{hours}h",
        "renewBefore": f"{max(1, min(hours // 3, _RENEW_AT_MOST))}h",
        "privateKey": (
            {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"}
            if spec.key_type == "ec"
            else {"algorithm": "RSA", "size": spec.key_bits, "rotationPolicy": "Always"}
        ),
    }
    tasks = {t.id: t for t in plan.build(spec).tasks}
    nodes = exported_nodes(spec)
    for node in nodes:
        one = len(nodes) == 1
        part = _part(node.name, "node")
        name = f"{release}-node" if one else f"{release}-node-{part}"
        dns, ips = split_hosts(node.hosts)
        body: dict[str, Any] = {
            "secretName": f"{prefix}-node" if one else f"{prefix}-node-{part}",
            "commonName": names.NODE_USER,
            **_organizations(tasks, f"node:{node.name}"),
            "dnsNames": list(dns),
            **({"ipAddresses": list(ips)} if ips else {}),
            "usages": [*_KEY_USAGES, "server auth", "client auth"],
            **common,
        }
        done.add(
            "Certificate", name, f"node {node.name}", _certificate(name, namespace, f"node {node.name}", body)
        )
    for client in spec.clients:
        part = _part(client.user, "user")
        name = f"{release}-{part}-client"
        body = {
            "secretName": f"{prefix}-{part}",
            "commonName": client.user,
            **_organizations(tasks, f"client:{client.user}"),
            "usages": [*_KEY_USAGES, "client auth"],
            **common,
        }
        about = f"user {client.user}"
        done.add("Certificate", name, about, _certificate(name, namespace, about, body))
    node_secret = f"{prefix}-node" if len(nodes) == 1 else None
    root = any(c.user == "root" for c in spec.clients)
    done.handover += [
        "cert-manager now renews these certificates in the cluster, from the same CA.",
        *(
            [
                "Helm chart: --set tls.enabled=true,tls.certs.provided=true,tls.certs.tlsSecret=true,"
                f"tls.certs.nodeSecret={node_secret},tls.certs.clientRootSecret={prefix}-root"
                " (the Secrets cert-manager writes)",
                "  or let the chart make the Certificates itself (apply only the Issuer and its Secret):"
                " --set tls.enabled=true,tls.certs.certManager=true,tls.certs.certManagerIssuer.kind=Issuer,"
                f"tls.certs.certManagerIssuer.name={issuer}",
            ]
            if node_secret and root
            else []
        ),
        "CockroachDB reads renewed certificates when it restarts: after a renewal,"
        f" kubectl rollout restart statefulset/{release}",
    ]


def _certificate(name: str, namespace: str | None, about: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": CERT_MANAGER,
        "kind": "Certificate",
        "metadata": _metadata(name, namespace, about),
        "spec": body,
    }


def _organizations(tasks: dict[str, Any], task_id: str) -> dict[str, Any]:
    """The O= of the certificate crdb-certs makes, so cert-manager's renewals carry the same subject."""
    expect = tasks[task_id].expect
    found = [value for key, value in (expect.subject or ()) if key == "O"]
    return {"subject": {"organizations": found}} if found else {}


def _issuer_chain(cert_path: Path, key_path: Path) -> bytes:
    """The CA certificate the key signs with, then each issuer up (your own CA's chain): PEM for the
    Issuer's tls.crt. An old CA kept after it during a rotation is not part of it."""
    try:
        certs = load_certs(cert_path)
        key = load_key(key_path)
    except FileNotFoundError as e:
        raise UserError(
            f"{e.filename}: missing; --for cert-manager needs the CA's certificate and key"
            " (a folder signed elsewhere through csr + import has no CA key here)"
        ) from None
    except (OSError, ValueError, TypeError) as e:
        raise UserError(f"{cert_path}, {key_path}: cannot be read ({e.__class__.__name__})") from None
    if public_bytes(key) != public_bytes(certs[0]):
        raise UserError(f"{key_path} is not the key of the first certificate in {cert_path}")
    chain = [certs[0]]
    for nxt in certs[1:]:
        if chain[-1].issuer == chain[-1].subject or not signed_by(chain[-1], nxt):
            break
        chain.append(nxt)
    return b"".join(c.public_bytes(Encoding.PEM) for c in chain)


def write_private(path: Path, text: str) -> None:
    """Create `path` 0600 with `text`, whole or not at all: a temporary file beside it, then a rename."""
    if path.is_dir():
        raise UserError(f"--out: {path} is a directory; give the file to write")
    if not path.parent.is_dir():
        raise UserError(f"--out: {path.parent} does not exist")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _part(value: str, what: str) -> str:
    """A node or user name as part of a Secret name: `_` becomes `-`; anything else not allowed there is
    refused rather than guessed."""
    part = value.replace("_", "-")
    if not _SUBDOMAIN.match(part):
        raise SpecError(
            f"export k8s: {what}",
            value,
            "cannot be part of a Kubernetes Secret name (lower-case ASCII letters, digits, '-', '.')",
        )
    return part


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UserError(
            f"{path}: missing; `crdb-certs issue` makes it (use --from for another folder)"
        ) from None
    except OSError as e:
        raise UserError(f"{path}: cannot be read ({e.strerror})") from None


def _pair(cert: Path, key: Path) -> None:
    try:
        same = public_bytes(load_key(key)) == public_bytes(load_cert(cert))
    except FileNotFoundError as e:
        raise UserError(
            f"{e.filename}: missing; `crdb-certs issue` makes it (use --from for another folder)"
        ) from None
    except (OSError, ValueError, TypeError) as e:
        raise UserError(f"{cert}, {key}: cannot be read ({e.__class__.__name__})") from None
    if not same:
        raise UserError(f"{key} is not the key of {cert}")
