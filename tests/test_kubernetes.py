"""Kubernetes (issue 13): wildcard host names as CockroachDB's Kubernetes docs write them, the [kubernetes]
spec section (one node certificate shared by every pod of the StatefulSet, with the SANs the Helm chart
and the operator give it), and `export k8s --for helm|operator|cert-manager`. Real openssl; the node
certificate is checked by Python `ssl` and by libpq (PostgreSQL, sslmode=verify-full)."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cryptography import x509

from orchestrator import audit, record, spec
from tests.conftest import crdb, write_spec
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
