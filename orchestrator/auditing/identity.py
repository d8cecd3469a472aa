"""Audit rules on who a certificate says it is and what it may do: the principals CockroachDB reads
(node, client users), extended key usages, and the SANs a server certificate needs."""

from __future__ import annotations

from collections.abc import Mapping

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from orchestrator import names
from orchestrator.auditing.findings import Check
from orchestrator.certcheck import ekus_of, sans_of
from orchestrator.certsdir import CertFile, Usage

CODES: dict[str, str] = {
    "node-principal": "node.crt without the principal node",
    "client-principal": "a client certificate that does not name its file's user",
    "client-extra-principal": "a client certificate that also names other users",
    "eku": "extended key usage missing what the role needs",
    "san-missing": "a server certificate without DNS/IP subject alternative names",
    "san-wildcard-single-label": "a wildcard followed by one label (*.cockroachdb): OpenSSL-based clients"
    " refuse it",
}

_ANY_EKU = ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE.dotted_string


def principals(leaf: x509.Certificate, principal_map: Mapping[str, str]) -> list[str]:
    """The principals CockroachDB reads from a certificate: CN (the last one, as Go reads it) then every
    DNS SAN, each through --cert-principal-map."""
    cns = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    found = [str(cns[-1].value)] if cns else []
    found += sans_of(leaf)[0]
    return [principal_map.get(p, p) for p in found]


def eku(check: Check, cert: CertFile, leaf: x509.Certificate) -> None:
    ekus = ekus_of(leaf)
    if not ekus or _ANY_EKU in ekus:
        return  # no EKU extension: Go allows any use
    needed = {
        Usage.NODE: ["serverAuth"],
        Usage.UI: ["serverAuth"],
        Usage.CLIENT: ["clientAuth"],
        Usage.TENANT: ["clientAuth"],
    }.get(cert.usage, [])
    why = ""
    # Without client.node.crt, node.crt is also what the node presents as a client; with ca-client.crt
    # that fails anyway (layout-client-node says so and how to fix it).
    if (
        cert.usage is Usage.NODE
        and check.dir.get(names.client_cert(names.NODE_USER)) is None
        and check.dir.get(names.CLIENT_CA_CERT) is None
    ):
        needed = ["serverAuth", "clientAuth"]
        why = " (without client.node.crt it is also the node's client certificate)"
    missing = [e for e in needed if e not in ekus]
    if missing:
        check.add(
            "error",
            "eku",
            cert.name,
            f"extended key usage {','.join(ekus)} lacks {','.join(missing)}{why}",
            f"reissue {cert.name} with extendedKeyUsage = {','.join(needed)}",
        )


def sans(check: Check, cert: CertFile, leaf: x509.Certificate) -> None:
    dns, ips = sans_of(leaf)
    if not dns and not ips:
        check.add(
            "error",
            "san-missing",
            cert.name,
            "has no DNS or IP subject alternative names: clients check host names against SANs only",
            f"reissue {cert.name} with subjectAltName listing every host name and IP clients use",
        )
    # Measured: Go's TLS (CockroachDB) and libpq match x.cockroachdb against *.cockroachdb; OpenSSL's
    # X509_check_host (openssl verify -verify_hostname, Python ssl, curl) wants two labels after the *.
    narrow = [d for d in dns if d.startswith("*.") and d.count(".") == 1]
    if narrow:
        example = narrow[0].removeprefix("*.")
        wider = max((d for d in dns if d.startswith(f"*.{example}.")), key=len, default=None)
        fix = (
            f"have OpenSSL-based clients connect as <pod>.{wider[2:]}, which {wider} here covers"
            if wider
            else f"have OpenSSL-based clients connect by a fully qualified name, e.g."
            f" <pod>.{example}.<namespace>.svc.cluster.local, and list *.{example}.<namespace>.svc."
            "cluster.local as a SAN too ([kubernetes] does)"
        )
        check.add(
            "info",
            "san-wildcard-single-label",
            cert.name,
            f"{', '.join(narrow)}: Go's TLS (CockroachDB, cockroach sql) and libpq accept it for"
            f" <pod>.{example}, but OpenSSL's host check (Python ssl, curl, openssl verify) refuses a"
            " wildcard followed by a single label",
            fix,
        )


def node_identity(check: Check, cert: CertFile, leaf: x509.Certificate) -> None:
    found = principals(leaf, check.principal_map)
    if names.NODE_USER in found or "root" in found:
        return
    dns = sans_of(leaf)[0]
    source = next((d for d in dns if "." in d), dns[0] if dns else "<node-domain>")
    check.add(
        "info",
        "node-principal",
        cert.name,
        f"principals {found} do not include 'node': nodes need --cert-principal-map to accept each"
        " other (and v20.1-v24.1 refuse to start without it)",
        f"start every node with --cert-principal-map={source}:node, or reissue {cert.name} with CN=node",
    )


def client_identity(check: Check, cert: CertFile, leaf: x509.Certificate) -> None:
    user, found = cert.suffix, principals(leaf, check.principal_map)
    if user not in found:
        check.add(
            "error",
            "client-principal",
            cert.name,
            f"principals {found} do not include {user!r}: it cannot log in as {user}"
            f" (client certificate has principals {found}, expected {user!r})",
            f"reissue {cert.name} with CN={user}, or name the file after the user it is for",
        )
        return
    extra = sorted({p for p in found if p != user})
    if extra:
        check.add(
            "warning",
            "client-extra-principal",
            cert.name,
            f"also carries principals {extra}: it can log in as {' and '.join(extra)} too",
            f"reissue {cert.name} with CN={user} and no DNS SANs, unless that is intended",
        )
