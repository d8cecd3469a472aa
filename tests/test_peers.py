"""The certificates work with real peers: Python `ssl` playing CockroachDB's TLS roles, and PostgreSQL
doing certificate authentication for libpq clients with sslmode=verify-full, as CockroachDB clients do."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import pkicheck
from tests.conftest import crdb
from tests.peers import Party, PostgresServer, handshake, postgres_logins


def node(folder: Path) -> Party:
    return Party(folder / "node.crt", folder / "node.key", folder / "ca.crt")


def client(certs: Path, user: str) -> Party:
    return Party(certs / f"client.{user}.crt", certs / f"client.{user}.key", certs / "ca.crt")


def test_sql_client_to_node(default_pki: Path) -> None:
    certs = default_pki / "certs"
    assert handshake(node(certs), client(certs, "root"), "localhost") == "root"
    assert handshake(node(certs), client(certs, "root"), "127.0.0.1") == "root"


def test_node_to_node_with_the_node_certificate_as_client(cluster_pki: Path) -> None:
    nodes = cluster_pki / "nodes"
    assert handshake(node(nodes / "node1"), node(nodes / "node2"), "node1.example.com") == "node"
    assert handshake(node(nodes / "node3"), node(nodes / "node1"), "x.nodes.example.com") == "node"
    assert handshake(node(nodes / "node2"), node(nodes / "node3"), "10.0.0.2") == "node"


def test_a_name_the_node_was_not_issued_for_is_refused(cluster_pki: Path) -> None:
    nodes = cluster_pki / "nodes"
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        handshake(node(nodes / "node2"), client(cluster_pki / "certs", "root"), "node1.example.com")


def test_a_certificate_from_another_pki_is_refused(default_pki: Path, cluster_pki: Path) -> None:
    with pytest.raises((ConnectionError, ssl.SSLError)):
        handshake(node(default_pki / "certs"), client(cluster_pki / "certs", "root"))
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(node(cluster_pki / "nodes" / "node1"), client(default_pki / "certs", "root"))


def test_a_client_certificate_cannot_serve(default_pki: Path) -> None:
    certs = default_pki / "certs"
    as_server = Party(certs / "client.root.crt", certs / "client.root.key", certs / "ca.crt")
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(as_server, client(certs, "root"))


@pytest.fixture(scope="module")
def cluster_postgres(cluster_pki: Path) -> Iterator[PostgresServer]:
    server = PostgresServer(
        cluster_pki / "nodes" / "node1" / "node.crt",
        cluster_pki / "nodes" / "node1" / "node.key",
        cluster_pki / "certs" / "ca.crt",
        roles=["root", "maxroach"],
    )
    yield server
    server.stop()


@pytest.mark.parametrize("user", ["root", "maxroach"])
def test_postgres_certificate_authentication(
    cluster_postgres: PostgresServer, cluster_pki: Path, user: str
) -> None:
    certs = cluster_pki / "certs"
    assert (
        cluster_postgres.current_user(
            user, certs / f"client.{user}.crt", certs / f"client.{user}.key", certs / "ca.crt"
        )
        == user
    )


def test_postgres_refuses_a_certificate_for_another_user(
    cluster_postgres: PostgresServer, cluster_pki: Path
) -> None:
    certs = cluster_pki / "certs"
    with pytest.raises(ConnectionError, match="certificate authentication failed"):
        cluster_postgres.current_user(
            "root", certs / "client.maxroach.crt", certs / "client.maxroach.key", certs / "ca.crt"
        )


def test_postgres_verify_full_checks_the_server_name(
    cluster_postgres: PostgresServer, cluster_pki: Path
) -> None:
    certs = cluster_pki / "certs"
    with pytest.raises(ConnectionError, match="does not match host name"):
        cluster_postgres.current_user(
            "root",
            certs / "client.root.crt",
            certs / "client.root.key",
            certs / "ca.crt",
            host="node2.example.com",
        )


def test_postgres_with_the_default_pki(default_pki: Path) -> None:
    assert postgres_logins(default_pki / "certs", ["root"]) == ["root"]


def test_postgres_with_the_docs_profile(tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(
        '[[nodes]]\nname = "n"\nhosts = ["localhost", "127.0.0.1"]\n'
        '[[clients]]\nuser = "maxroach"\n[[clients]]\nuser = "roach"\n'
    )
    out = tmp_path / "out"
    assert crdb("issue", "--config", spec, "--out", out, "--profile", "docs", "--quiet") == 0
    assert postgres_logins(out / "certs", ["maxroach", "roach"]) == ["maxroach", "roach"]


def test_ec_p256_keys_work_with_tls_and_postgres(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert crdb("issue", "--key-type", "ec", "--out", out, "--quiet") == 0
    certs = out / "certs"
    for key in certs.glob("*.key"):
        assert "PRIVATE KEY" in key.read_text()
    assert pkicheck.read(certs / "node.crt").cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    assert handshake(node(certs), client(certs, "root")) == "root"
    assert postgres_logins(certs, ["root"]) == ["root"]


def test_key_bits_with_ec_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text('key_type = "ec"\nkey_bits = 4096\n[[clients]]\nuser = "root"\n')
    assert crdb("issue", "--config", spec, "--out", tmp_path / "out") == 2
    assert (
        capsys.readouterr().err.strip()
        == 'error: key_bits: 4096 applies to RSA keys only (key_type = "ec" is P-256)'
    )
    assert not (tmp_path / "out").exists()
