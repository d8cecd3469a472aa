"""Kubernetes (issue 13): wildcard host names as CockroachDB's Kubernetes docs write them, the [kubernetes]
spec section (one node certificate shared by every pod of the StatefulSet, with the SANs the Helm chart
and the operator give it), and `export k8s --for helm|operator|cert-manager`. Real openssl; the node
certificate is checked by Python `ssl` and by libpq (PostgreSQL, sslmode=verify-full)."""

from __future__ import annotations

import base64
import json
import re
import shlex
import shutil
import ssl
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from orchestrator import audit, record, spec
from tests.conftest import REPO, crdb, write_spec
from tests.peers import Party, PostgresServer, handshake

K8S_SPEC = """\
key_type = "ec"

[kubernetes]
release = "cockroachdb"
namespace = "db"
hosts = ["crdb.example.com"]

[[clients]]
user = "root"

[[clients]]
user = "maxroach"
"""
STATEFULSET_SANS = [
    "localhost",
    "cockroachdb-public",
    "cockroachdb-public.db",
    "cockroachdb-public.db.svc.cluster.local",
    "*.cockroachdb",
    "*.cockroachdb.db",
    "*.cockroachdb.db.svc.cluster.local",
]
PUBLIC = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
POD = "cockroachdb-0.cockroachdb"  # a pod of the StatefulSet, as another pod in the namespace dials it
POD_FQDN = f"{POD}.db.svc.cluster.local"


def sans(cert: Path) -> tuple[list[str], list[str]]:
    value = x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    return value.value.get_values_for_type(x509.DNSName), [
        str(ip) for ip in value.value.get_values_for_type(x509.IPAddress)
    ]


@pytest.fixture(scope="module")
def k8s_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("k8s")
    path = write_spec(folder, K8S_SPEC)
    assert crdb("issue", "--config", path, "--out", folder / "pki", "--quiet") == 0
    return folder / "pki"


def run_audit(folder: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[dict[str, Any]]]:
    capsys.readouterr()
    status = crdb("audit", folder, "--format", "json")
    data = json.loads(capsys.readouterr().out)
    jsonschema.validate(data, audit.schema())
    return status, data["findings"]


# ----------------------------------------------------------------------------------- [kubernetes]


def test_the_shared_node_certificate_has_exactly_the_statefulset_sans(k8s_pki: Path) -> None:
    assert sorted(p.name for p in (k8s_pki / "nodes").iterdir()) == ["node"]
    for folder in (k8s_pki / "nodes" / "node", k8s_pki / "certs"):  # one node: certs/ is its folder too
        assert sans(folder / "node.crt") == ([*STATEFULSET_SANS, "crdb.example.com"], ["127.0.0.1"])


def test_the_record_writes_the_section_back(k8s_pki: Path, tmp_path: Path) -> None:
    held = record.read(k8s_pki)
    assert held is not None
    assert held.data["spec"]["kubernetes"] == {
        "release": "cockroachdb",
        "namespace": "db",
        "cluster_domain": "cluster.local",
        "hosts": ["crdb.example.com"],
    }
    assert held.data["spec"]["nodes"] == []  # the StatefulSet's node comes back from the section
    assert held.spec() == spec.load(write_spec(tmp_path, K8S_SPEC))


def test_issue_says_how_to_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert crdb("issue", "--config", write_spec(tmp_path, K8S_SPEC), "--out", tmp_path / "my pki") == 0
    assert f"crdb-certs export k8s --from '{tmp_path}/my pki' --out secrets.yaml" in capsys.readouterr().out


def test_a_second_run_and_check_find_nothing_to_do(k8s_pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert crdb("issue", "--out", k8s_pki, "--check") == 0
    assert crdb("check", k8s_pki) == 0
    assert crdb("issue", "--out", k8s_pki) == 0
    assert "up to date" in capsys.readouterr().out


def test_audit_notes_the_single_label_wildcard_and_nothing_else(
    k8s_pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for folder in (k8s_pki / "nodes" / "node", k8s_pki / "certs"):
        status, found = run_audit(folder, capsys)
        assert status == 0
        assert [(f["severity"], f["code"], f["file"]) for f in found] == [
            ("info", "san-wildcard-single-label", "node.crt")
        ]
        assert "*.cockroachdb:" in found[0]["message"] and "OpenSSL" in found[0]["message"]
        assert "<pod>.cockroachdb.db.svc.cluster.local" in found[0]["fix"]


def test_a_fully_qualified_wildcard_gets_no_note(
    cluster_pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, found = run_audit(cluster_pki / "nodes" / "node3", capsys)  # *.nodes.example.com
    assert (status, found) == (0, [])


@pytest.mark.parametrize("layout", ["standard", "split-node", "split-ca"])
@pytest.mark.parametrize("profile", ["secure", "docs", "docs-v19"])
def test_every_profile_and_layout(tmp_path: Path, profile: str, layout: str) -> None:
    text = f'profile = "{profile}"\nlayout = "{layout}"\n' + K8S_SPEC
    out = tmp_path / "out"
    assert crdb("issue", "--config", write_spec(tmp_path, text), "--out", out, "--quiet") == 0
    assert sans(out / "nodes" / "node" / "node.crt")[0] == [*STATEFULSET_SANS, "crdb.example.com"]
    if layout != "standard":
        assert (out / "nodes" / "node" / "client.node.crt").is_file()


def test_beside_nodes_of_its_own_the_statefulset_node_is_named_after_the_release(tmp_path: Path) -> None:
    text = (
        'key_type = "ec"\n[kubernetes]\nrelease = "crdb"\ncluster_domain = "k8s.example.net"\n'
        '[[nodes]]\nname = "vm1"\nhosts = ["vm1.example.com"]\n'
    )
    loaded = spec.load(write_spec(tmp_path, text))
    assert [n.name for n in loaded.nodes] == ["vm1", "crdb"]
    assert loaded.nodes[1].hosts[-1] == "*.crdb.default.svc.k8s.example.net"
    out = tmp_path / "out"
    assert crdb("issue", "--config", tmp_path / "spec.toml", "--out", out, "--quiet") == 0
    assert (out / "nodes" / "crdb" / "node.crt").is_file() and (out / "nodes" / "vm1" / "node.crt").is_file()
    held = record.read(out)
    assert held is not None and held.spec() == loaded


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("", "error: kubernetes.release: None is required"),
        ('release = "CockroachDB"', 'error: kubernetes.release: "CockroachDB" is not a DNS-1123 label'),
        (f'release = "{"r" * 57}"', "is longer than 56 characters"),
        ('release = "c"\nnamespace = "my.ns"', 'error: kubernetes.namespace: "my.ns" is not a DNS-1123'),
        ('release = "c"\nnamespace = ""', 'error: kubernetes.namespace: "" is not a DNS-1123 label'),
        ('release = "c"\ncluster_domain = "*.local"', 'error: kubernetes.cluster_domain: "*.local" is not'),
        ('release = "c"\ncluster_domain = "10.0.0.1"', "is an IP address, not a DNS domain"),
        ('release = "c"\ncluster_domain = "a..b"', "has an empty label"),
        ('release = "c"\nhosts = ["localhost"]', 'error: kubernetes.hosts[0]: "localhost" is already one'),
        ('release = "c"\nhosts = ["a b"]', 'error: kubernetes.hosts[0]: "a b" contains white space'),
        ('release = "c"\nhost = ["x.example.com"]', "error: kubernetes.host: "),
    ],
)
def test_bad_values_are_refused_on_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], section: str, message: str
) -> None:
    path = write_spec(tmp_path, f'[kubernetes]\n{section}\n[[clients]]\nuser = "root"\n')
    capsys.readouterr()
    assert crdb("issue", "--config", path, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_a_node_of_the_release_s_name_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = '[kubernetes]\nrelease = "crdb"\n[[nodes]]\nname = "crdb"\nhosts = ["localhost"]\n'
    capsys.readouterr()
    assert crdb("issue", "--config", write_spec(tmp_path, text), "--out", tmp_path / "out") == 2
    assert capsys.readouterr().err.startswith('error: kubernetes.release: "crdb" is also the name of')


# ------------------------------------------------------------------------------------ real peers


def node_party(k8s_pki: Path) -> Party:
    folder = k8s_pki / "nodes" / "node"
    return Party(folder / "node.crt", folder / "node.key", folder / "ca.crt")


def root_party(k8s_pki: Path) -> Party:
    certs = k8s_pki / "certs"
    return Party(certs / "client.root.crt", certs / "client.root.key", certs / "ca.crt")


@pytest.mark.parametrize("name", [POD_FQDN, "cockroachdb-public.db", "cockroachdb-public", "localhost"])
def test_python_ssl_accepts_the_node_under_its_kubernetes_names(k8s_pki: Path, name: str) -> None:
    assert handshake(node_party(k8s_pki), root_party(k8s_pki), name) == "root"


def test_python_ssl_refuses_a_wildcard_followed_by_a_single_label(k8s_pki: Path) -> None:
    """The measured fact the README and the audit note state: OpenSSL's host check refuses *.cockroachdb."""
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        handshake(node_party(k8s_pki), root_party(k8s_pki), POD)


@pytest.fixture(scope="module")
def k8s_postgres(k8s_pki: Path) -> Iterator[PostgresServer]:
    folder = k8s_pki / "nodes" / "node"
    server = PostgresServer(folder / "node.crt", folder / "node.key", folder / "ca.crt", roles=["root"])
    yield server
    server.stop()


@pytest.mark.postgres
@pytest.mark.parametrize("name", [POD_FQDN, "cockroachdb-public.db", POD])
def test_libpq_verify_full_accepts_the_node_under_its_kubernetes_names(
    k8s_postgres: PostgresServer, k8s_pki: Path, name: str
) -> None:
    certs = k8s_pki / "certs"
    user = k8s_postgres.current_user(
        "root", certs / "client.root.crt", certs / "client.root.key", certs / "ca.crt", host=name
    )
    assert user == "root"


@pytest.mark.postgres
def test_libpq_verify_full_refuses_another_release(k8s_postgres: PostgresServer, k8s_pki: Path) -> None:
    certs = k8s_pki / "certs"
    with pytest.raises(ConnectionError, match="does not match host name"):
        k8s_postgres.current_user(
            "root",
            certs / "client.root.crt",
            certs / "client.root.key",
            certs / "ca.crt",
            host="other-0.other.db.svc.cluster.local",
        )


# ------------------------------------------------------------------------------------ export k8s

CRDB_SPEC = """\
key_type = "ec"
cert_days = 90

[kubernetes]
release = "crdb"
namespace = "prod"

[[nodes]]
name = "vm1"
hosts = ["vm1.example.com", "10.0.0.1"]

[[clients]]
user = "root"

# user names YAML would read as something else, were the manifest pasted together
[[clients]]
user = "null"

[[clients]]
user = "0123"
"""
DNS_1123 = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string", "pattern": DNS_1123.pattern, "maxLength": 253}},
}
# What the API server requires of each resource (core/v1 Secret; cert-manager.io/v1 Issuer, Certificate).
SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("v1", "Secret"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "type", "data"],
        "properties": {
            "metadata": METADATA,
            "type": {"enum": ["kubernetes.io/tls", "Opaque"]},
            "data": {
                "type": "object",
                "additionalProperties": {"type": "string", "contentEncoding": "base64"},
            },
        },
    },
    ("cert-manager.io/v1", "Issuer"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "metadata": METADATA,
            "spec": {
                "type": "object",
                "required": ["ca"],
                "properties": {
                    "ca": {
                        "type": "object",
                        "required": ["secretName"],
                        "properties": {"secretName": {"type": "string"}},
                    }
                },
            },
        },
    },
    ("cert-manager.io/v1", "Certificate"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "metadata": METADATA,
            "spec": {
                "type": "object",
                "required": ["secretName", "issuerRef"],
                "properties": {
                    "secretName": {"type": "string", "pattern": DNS_1123.pattern},
                    "issuerRef": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string"},
                            "kind": {"enum": ["Issuer", "ClusterIssuer"]},
                            "group": {"const": "cert-manager.io"},
                        },
                    },
                    "commonName": {"type": "string", "maxLength": 64},
                    "dnsNames": {"type": "array", "items": {"type": "string"}},
                    "ipAddresses": {"type": "array", "items": {"type": "string"}},
                    "duration": {"type": "string", "pattern": r"^[0-9]+h$"},
                    "renewBefore": {"type": "string", "pattern": r"^[0-9]+h$"},
                    "usages": {
                        "type": "array",
                        "items": {
                            "enum": ["digital signature", "key encipherment", "server auth", "client auth"]
                        },
                    },
                    "privateKey": {
                        "type": "object",
                        "properties": {
                            "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]},
                            "size": {"type": "integer"},
                            "rotationPolicy": {"enum": ["Never", "Always"]},
                        },
                    },
                },
            },
        },
    },
}


CERT_MANAGER = ("--for", "cert-manager", "--include-ca-key")


def read_manifest(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Every document, checked against its resource's schema, by (kind, name)."""
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    found = {}
    for doc in yaml.safe_load_all(path.read_text()):
        jsonschema.validate(doc, SCHEMAS[(doc["apiVersion"], doc["kind"])])
        found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def decoded(doc: dict[str, Any]) -> dict[str, bytes]:
    return {key: base64.b64decode(value, validate=True) for key, value in doc["data"].items()}


@pytest.fixture(scope="module")
def crdb_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("crdb")
    path = write_spec(folder, CRDB_SPEC)
    assert crdb("issue", "--config", path, "--out", folder / "pki", "--quiet") == 0
    return folder / "pki"


def export(pki: Path, out: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    status = crdb("export", "k8s", "--from", pki, "--out", out, *args)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_helm_exports_the_statefulset_node_under_the_chart_s_names(
    k8s_pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = export(k8s_pki, tmp_path / "helm.yaml", capsys)
    assert status == 0
    found = read_manifest(tmp_path / "helm.yaml")
    assert set(found) == {("Secret", f"cockroachdb-{n}") for n in ("node", "root", "maxroach")}
    assert all(d["metadata"]["namespace"] == "db" for d in found.values())  # [kubernetes] namespace
    node = decoded(found[("Secret", "cockroachdb-node")])
    assert node["tls.crt"] == (k8s_pki / "nodes/node/node.crt").read_bytes()
    assert "tls.certs.nodeSecret=cockroachdb-node,tls.certs.clientRootSecret=cockroachdb-root" in out
    # --for helm is the default, and says the same
    assert export(k8s_pki, tmp_path / "same.yaml", capsys, "--for", "helm")[0] == 0
    assert (tmp_path / "same.yaml").read_text() == (tmp_path / "helm.yaml").read_text()


def test_operator_names_and_the_ca_secret(
    crdb_pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = export(crdb_pki, tmp_path / "op.yaml", capsys, "--for", "operator")
    assert status == 0
    found = read_manifest(tmp_path / "op.yaml")
    # Only the StatefulSet's node: vm1 runs outside Kubernetes.
    assert set(found) == {("Secret", f"crdb-{n}") for n in ("node", "root", "null", "0123", "ca")}
    assert all(d["metadata"]["namespace"] == "prod" for d in found.values())
    ca = found[("Secret", "crdb-ca")]
    assert ca["type"] == "Opaque"
    assert decoded(ca) == {"ca.crt": (crdb_pki / "certs/ca.crt").read_bytes()}
    node = decoded(found[("Secret", "crdb-node")])
    assert set(node) == {"ca.crt", "tls.crt", "tls.key"}
    assert node["tls.crt"] == (crdb_pki / "nodes/crdb/node.crt").read_bytes()
    assert "spec.nodeTLSSecret: crdb-node and spec.clientTLSSecret: crdb-root" in out


def test_operator_needs_one_node(
    cluster_pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = export(cluster_pki, tmp_path / "op.yaml", capsys, "--for", "operator")
    assert status == 2 and err.count("\n") == 1
    assert err.startswith("error: --for: the operator gives every pod one node certificate")
    assert not (tmp_path / "op.yaml").exists()


def test_cert_manager_without_include_ca_key_is_refused(
    crdb_pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = export(crdb_pki, tmp_path / "cm.yaml", capsys, "--for", "cert-manager")
    assert status == 2 and err.count("\n") == 1 and err.startswith("error: --include-ca-key: "), err
    assert not (tmp_path / "cm.yaml").exists()
    status, _, err = export(crdb_pki, tmp_path / "cm.yaml", capsys, "--include-ca-key")
    assert status == 2 and err.startswith("error: --include-ca-key: is only for --for cert-manager"), err
    assert not (tmp_path / "cm.yaml").exists()


def test_cert_manager_issuer_and_the_chart_s_certificates(
    crdb_pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = export(
        crdb_pki, tmp_path / "cm.yaml", capsys, "--for", "cert-manager", "--include-ca-key"
    )
    assert status == 0
    assert "WARNING" in err and "CA's private key" in err and "leaves this machine" in err
    found = read_manifest(tmp_path / "cm.yaml")
    assert set(found) == {
        ("Secret", "crdb-ca-key-pair"),
        ("Issuer", "crdb-ca-issuer"),
        ("Certificate", "crdb-node"),  # the chart's <fullname>-node and <fullname>-root-client
        ("Certificate", "crdb-root-client"),
        ("Certificate", "crdb-null-client"),
        ("Certificate", "crdb-0123-client"),
    }
    # The Issuer's Secret holds our CA, as cert-manager's CA issuer wants it (tls.crt + tls.key).
    issuer = found[("Issuer", "crdb-ca-issuer")]
    backing = decoded(found[("Secret", issuer["spec"]["ca"]["secretName"])])
    assert backing["tls.key"] == (crdb_pki / "my-safe-directory/ca.key").read_bytes()
    assert backing["tls.crt"] == (crdb_pki / "certs/ca.crt").read_bytes()
    ca_cert = x509.load_pem_x509_certificate(backing["tls.crt"])
    key = serialization.load_pem_private_key(backing["tls.key"], password=None)
    assert ca_cert.public_key().public_bytes(*PUBLIC) == key.public_key().public_bytes(*PUBLIC)

    certificates = {name: doc["spec"] for (kind, name), doc in found.items() if kind == "Certificate"}
    for spec_ in certificates.values():
        assert spec_["issuerRef"] == {"name": "crdb-ca-issuer", "kind": "Issuer", "group": "cert-manager.io"}
        assert (spec_["duration"], spec_["renewBefore"]) == ("2160h", "720h")  # cert_days = 90
        assert spec_["privateKey"]["algorithm"] == "ECDSA"
        assert spec_["subject"] == {"organizations": ["Cockroach"]}
    node = certificates["crdb-node"]
    assert node["secretName"] == "cockroachdb-node" and node["commonName"] == "node"
    assert node["dnsNames"] == [
        "localhost",
        "crdb-public",
        "crdb-public.prod",
        "crdb-public.prod.svc.cluster.local",
        "*.crdb",
        "*.crdb.prod",
        "*.crdb.prod.svc.cluster.local",
    ]
    assert node["ipAddresses"] == ["127.0.0.1"]
    assert {"server auth", "client auth"} <= set(node["usages"])
    # The certificate cert-manager will make has the names of the one crdb-certs made.
    made = sans(crdb_pki / "nodes/crdb/node.crt")
    assert (made[0], made[1]) == (node["dnsNames"], node["ipAddresses"])
    root = certificates["crdb-root-client"]
    assert (root["secretName"], root["commonName"]) == ("cockroachdb-root", "root")
    assert "server auth" not in root["usages"] and "client auth" in root["usages"]
    assert certificates["crdb-null-client"]["commonName"] == "null"  # a string, not YAML's null
    assert certificates["crdb-0123-client"]["commonName"] == "0123"  # not the number 123
    assert "tls.certs.nodeSecret=cockroachdb-node,tls.certs.clientRootSecret=cockroachdb-root" in out
    assert "tls.certs.certManagerIssuer.name=crdb-ca-issuer" in out
    assert "kubectl rollout restart statefulset/crdb" in out


def test_cert_manager_refuses_the_split_layouts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = 'layout = "split-node"\n' + K8S_SPEC
    out = tmp_path / "out"
    assert crdb("issue", "--config", write_spec(tmp_path, text), "--out", out, "--quiet") == 0
    status, _, err = export(out, tmp_path / "cm.yaml", capsys, *CERT_MANAGER)
    assert status == 2 and err.count("\n") == 1
    assert err.startswith(
        'error: layout: "split-node" is not what the Helm chart\'s cert-manager mode mounts'
    )
    assert not (tmp_path / "cm.yaml").exists()


# ------------------------------------------------------------------------------------------- README


def test_the_readme_s_kubernetes_commands_work_as_pasted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's Kubernetes section: its spec saved as k8s.toml and every crdb-certs line run as it is
    written (kubectl needs a cluster: those lines are only checked to name the files export wrote)."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Kubernetes\n") :]
    section = section[: section.index("\n## ", 1)]
    blocks = re.findall(r"```(\w+)\n(.*?)```", section, re.S)
    (tmp_path / "k8s.toml").write_text(next(body for lang, body in blocks if lang == "toml"))
    monkeypatch.chdir(tmp_path)
    lines = [line for lang, body in blocks if lang == "sh" for line in body.splitlines()]
    commands = [shlex.split(line, comments=True) for line in lines]
    assert sum(c[0] == "crdb-certs" for c in commands) == 4
    for argv in commands:
        if argv[0] == "crdb-certs":
            assert crdb(*argv[1:]) == 0, capsys.readouterr()
        else:
            assert argv[:3] == ["kubectl", "apply", "-f"] and (tmp_path / argv[3]).is_file()
    assert list(yaml.safe_load_all((tmp_path / "cert-manager.yaml").read_text()))


def test_cert_manager_signs_with_the_new_ca_during_a_rotation(
    crdb_pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After rotate-ca, ca.crt holds the new CA and then the old one: the Issuer gets the new CA alone
    (cert-manager would otherwise hand out the old CA as the root of every renewed certificate)."""
    pki = tmp_path / "pki"
    shutil.copytree(crdb_pki, pki, symlinks=True)
    assert crdb("rotate-ca", "--out", pki) == 0
    assert len(x509.load_pem_x509_certificates((pki / "certs/ca.crt").read_bytes())) == 2
    assert export(pki, tmp_path / "cm.yaml", capsys, *CERT_MANAGER)[0] == 0
    backing = decoded(read_manifest(tmp_path / "cm.yaml")[("Secret", "crdb-ca-key-pair")])
    chain = x509.load_pem_x509_certificates(backing["tls.crt"])
    assert chain == x509.load_pem_x509_certificates((pki / "certs/ca.crt").read_bytes())[:1]
    assert backing["tls.key"] == (pki / "my-safe-directory/ca.key").read_bytes()
