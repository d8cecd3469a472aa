"""`crdb-certs export k8s`: the certs directories as Kubernetes Secret manifests.

The layout the CockroachDB Helm chart (tls.certs.provided with tls.certs.tlsSecret) and the operator read:
type kubernetes.io/tls, keys `ca.crt`, `tls.crt`, `tls.key`. One secret per node (named `<prefix>-node`
when the spec has one node, as the chart's default nodeSecret, else `<prefix>-node-<name>`), and one per
client user, `<prefix>-<user>` (so root's is the chart's default clientRootSecret, `cockroachdb-root`).
A node secret also carries the other files of the node's certs directory under their CockroachDB names
(client.node.crt/.key, ca-client.crt, ui.crt/.key, ca-ui.crt), for the split layouts and the DB Console.

The YAML is written by hand: every scalar is a JSON string (valid YAML, never read as a number or a
boolean). The private keys go into this one file, created 0600 and moved into place whole.
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from orchestrator import names, plan
from orchestrator.certcheck import load_cert, load_key, public_bytes
from orchestrator.errors import SpecError, UserError
from orchestrator.spec import Spec

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")  # RFC 1123 label: a namespace
_SUBDOMAIN = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*$")
_MAX_NAME = 253
FILE_MODE = 0o600
TLS_KEYS = ("ca.crt", "tls.crt", "tls.key")


@dataclass(frozen=True)
class Secret:
    name: str
    about: str  # node <name> | user <name>
    data: dict[str, bytes]  # key in the secret -> file content


def secrets(spec: Spec, source: Path, prefix: str = "cockroachdb") -> list[Secret]:
    """One secret per node and per client user, read from the output folder `source`."""
    if not _LABEL.match(prefix):
        raise SpecError("--name-prefix", prefix, "is not a Kubernetes name (lower-case letters, digits, '-')")
    bundles = plan.build(spec).bundles
    certs = source / names.CERTS_DIR
    found: list[Secret] = []
    for node in spec.nodes:
        folder = source / names.node_dir(node.name)
        name = f"{prefix}-node" if len(spec.nodes) == 1 else f"{prefix}-node-{_part(node.name, 'node')}"
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
    seen: dict[str, str] = {}
    for secret in found:
        if secret.name in seen:
            raise UserError(
                f"export k8s: {seen[secret.name]} and {secret.about} would both be the Secret"
                f" {secret.name!r}; rename one, or choose another --name-prefix"
            )
        if len(secret.name) > _MAX_NAME:
            raise UserError(f"export k8s: the Secret name for {secret.about} is longer than {_MAX_NAME}")
        seen[secret.name] = secret.about
    return found


def manifest(found: list[Secret], namespace: str | None, source: Path) -> str:
    """Apply-ready YAML: one document per secret."""
    if namespace is not None and not _LABEL.match(namespace):
        raise SpecError(
            "--namespace", namespace, "is not a Kubernetes namespace (lower-case letters, digits, '-')"
        )
    head = [
        f"# Kubernetes Secrets made by crdb-certs from {source}: kubectl apply -f <this file>",
        "# It holds private keys: keep it 0600, out of version control, and delete it once applied.",
    ]
    docs = []
    for secret in found:
        lines = [
            "apiVersion: v1",
            "kind: Secret",
            "metadata:",
            f"  name: {_scalar(secret.name)}",
            *([f"  namespace: {_scalar(namespace)}"] if namespace else []),
            "  labels:",
            f"    app.kubernetes.io/managed-by: {_scalar('crdb-certs')}",
            "  annotations:",
            f"    crdb-certs/for: {_scalar(secret.about)}",
            f"type: {_scalar('kubernetes.io/tls')}",
            "data:",
            *(
                f"  {key}: {_scalar(base64.b64encode(value).decode('ascii'))}"
                for key, value in secret.data.items()
            ),
        ]
        docs.append("\n".join(lines))
    return "\n".join(head) + "\n" + "\n---\n".join(docs) + "\n"


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


def _scalar(value: str) -> str:
    return json.dumps(value)
