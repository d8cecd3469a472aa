"""Audit rules on CAs and chains: a CA file for each certificate to verify against, CA certificates that
may sign and end in a root, leaves that are not CAs, and each certificate signed by the CA CockroachDB
verifies it with (and not outliving it)."""

from __future__ import annotations

from datetime import timedelta

from cryptography import x509

from orchestrator import names
from orchestrator.auditing.findings import Check, when
from orchestrator.auditing.validity import weak_signature
from orchestrator.certcheck import is_ca, signed_by, subject_of, unrooted
from orchestrator.certsdir import CertFile, Usage

CODES: dict[str, str] = {
    "ca-missing": "no ca.crt",
    "chain": "a certificate not signed by the CA CockroachDB verifies it with",
    "ui-external": "ui.crt not signed by ca.crt (and no ca-ui.crt)",
    "layout-client-node": "ca-client.crt without client.node.crt",
    "ca-constraints": "a CA certificate that is not allowed to sign",
    "ca-no-root": "a CA file whose chain does not end in a self-signed root (OpenSSL/libpq refuse it)",
    "leaf-is-ca": "a node, UI or client certificate that is a CA",
    "outlives-ca": "a certificate that expires after its CA",
}

# The docs' recipe signs leaves a few seconds after making a CA with the same -days: not worth a warning.
OUTLIVE_TOLERANCE = timedelta(days=1)
_MAX_CHAIN = 8


def ca_missing(check: Check) -> None:
    if check.dir.get(names.CA_CERT) is None:
        check.add(
            "error",
            "ca-missing",
            names.CA_CERT,
            "no ca.crt: nodes cannot start and clients cannot verify a server"
            " (problem with CA certificate: not found)",
            "copy the cluster's CA certificate into the directory as ca.crt",
        )


def constraints(check: Check, name: str, cert: x509.Certificate, index: int) -> None:
    """`cert`, the `index`th certificate in the CA file `name`, may sign certificates."""
    which = f"certificate #{index} in {name}" if index else name
    if not is_ca(cert):
        check.add(
            "error",
            "ca-constraints",
            name,
            f"{which} is not a CA (basicConstraints CA:TRUE missing): nothing verifies against it",
            "reissue the CA certificate with basicConstraints = critical,CA:true",
        )
        return
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not usage.key_cert_sign:
        check.add(
            "error",
            "ca-constraints",
            name,
            f"{which} has keyUsage without keyCertSign: it may not sign certificates",
            "reissue the CA certificate with keyUsage including keyCertSign",
        )


def rooted(check: Check, cert: CertFile) -> None:
    """An intermediate CA alone in ca.crt: Go (CockroachDB) trusts it, but OpenSSL and libpq clients
    given it as sslrootcert look for its issuer there and fail."""
    missing = unrooted(cert.certs)
    if not missing:
        return
    cn = ",".join(f"{k}={v}" for k, v in subject_of(cert.certs[missing[0]]))
    check.add(
        "error",
        "ca-no-root",
        cert.name,
        f"holds an intermediate CA ({cn}) without its issuer, up to a self-signed root: clients using"
        f" OpenSSL or libpq (sslrootcert={cert.name}) refuse it (unable to get issuer certificate),"
        " though Go accepts it",
        f"append its issuer's certificate to {cert.name}, and so on up to the self-signed root"
        " (the intermediate first, the root last)",
    )


def leaf_is_ca(check: Check, cert: CertFile, leaf: x509.Certificate) -> None:
    if is_ca(leaf):
        check.add(
            "error",
            "leaf-is-ca",
            cert.name,
            "is a CA certificate (basicConstraints CA:TRUE): whoever has its key may be able to"
            " issue certificates",
            f"reissue {cert.name} with basicConstraints = critical,CA:FALSE",
        )


def anchor_for(usage: Usage) -> list[str]:
    """The CA files CockroachDB verifies a certificate of `usage` with, most specific first."""
    if usage is Usage.NODE:
        return [names.CA_CERT]
    if usage is Usage.UI:
        return [names.UI_CA_CERT, names.CA_CERT]
    if usage is Usage.CLIENT:
        return [names.CLIENT_CA_CERT, names.CA_CERT]
    if usage is Usage.TENANT:
        return [names.TENANT_CA_CERT, names.CLIENT_CA_CERT, names.CA_CERT]
    return []


def chain(check: Check, cert: CertFile) -> None:
    candidates = anchor_for(cert.usage)
    anchor = next((check.dir.get(n) for n in candidates if check.dir.get(n) is not None), None)
    if anchor is None or not anchor.certs:
        return  # no CA to check against: reported as ca-missing or cert-unreadable
    if weak_signature(cert.certs[0]):
        return  # Go refuses the signature itself: reported as weak-signature
    top = _chain_to(cert.certs, anchor.certs)
    if top is None:
        if cert.usage is Usage.UI and anchor.name == names.CA_CERT:
            check.add(
                "warning",
                "ui-external",
                cert.name,
                "is not signed by ca.crt: browsers and HTTP clients must trust its issuer themselves",
                "fine for a public or organizational CA; else reissue ui.crt with ca.crt's key",
            )
            return
        check.add(
            "error",
            "chain",
            cert.name,
            f"is not signed by {anchor.name}, the CA CockroachDB verifies it with"
            " (x509: certificate signed by unknown authority)",
            f"reissue {cert.name} with {anchor.name}'s key, or add its issuer to {anchor.name}",
        )
        return
    leaf = cert.certs[0]
    if leaf.not_valid_after_utc - top.not_valid_after_utc > OUTLIVE_TOLERANCE:
        check.add(
            "warning",
            "outlives-ca",
            cert.name,
            f"expires {when(leaf.not_valid_after_utc)}, after its CA in {anchor.name}"
            f" ({when(top.not_valid_after_utc)}): it stops working when the CA expires",
            f"renew {anchor.name} before {when(top.not_valid_after_utc)}, or reissue {cert.name}"
            " with fewer days",
        )


def layout(check: Check) -> None:
    client_ca = check.dir.get(names.CLIENT_CA_CERT)
    node = check.dir.get(names.NODE_CERT)
    client_node = names.client_cert(names.NODE_USER)
    if client_ca is not None and node is not None and check.dir.get(client_node) is None:
        check.add(
            "error",
            "layout-client-node",
            client_node,
            "missing while ca-client.crt is here: the node presents node.crt (signed by ca.crt) to"
            " other nodes, which verify client certificates with ca-client.crt only",
            "issue client.node.crt (CN=node, clientAuth) with ca-client.crt's key"
            " (cockroach cert create-client node)",
        )


def _chain_to(certs: list[x509.Certificate], anchors: list[x509.Certificate]) -> x509.Certificate | None:
    """The anchor that `certs[0]` chains to through the intermediates in `certs[1:]`, or None."""
    current = certs[0]
    for _ in range(_MAX_CHAIN):
        top = next((a for a in anchors if signed_by(current, a)), None)
        if top is not None:
            return top
        parent = next((c for c in certs[1:] if c is not current and signed_by(current, c)), None)
        if parent is None:
            return None
        current = parent
    return None
