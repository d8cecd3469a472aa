"""`crdb-certs probe` against real servers: PostgreSQL (its SQL port takes the same SSLRequest as
CockroachDB's) serving crdb-certs node certificates with `hostssl … cert` rules, Python `ssl` standing in
for the DB Console, and listeners that are not TLS at all. Every JSON answer is checked against the schema
shipped in the package."""

from __future__ import annotations

import ipaddress
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from orchestrator import lifecycle, probe, script
from orchestrator.certcheck import load_cert, load_key
from orchestrator.spec import load as load_spec
from tests.conftest import crdb, write_spec
from tests.peers import PostgresServer, TcpListener, TlsServer, _free_port

SCHEMA = probe.schema()

SPEC = """\
[[nodes]]
name = "n1"
hosts = ["localhost", "127.0.0.1"]

[[clients]]
user = "root"

[[clients]]
user = "ghost"
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("probe-pki")
    spec = write_spec(tmp_path_factory.mktemp("probe-spec"), SPEC)
    assert crdb("issue", "--config", spec, "--out", out, "--key-type", "ec", "--quiet") == 0
    return out


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same spec issued again: another CA."""
    out = tmp_path_factory.mktemp("probe-other")
    spec = write_spec(tmp_path_factory.mktemp("probe-other-spec"), SPEC)
    assert crdb("issue", "--config", spec, "--out", out, "--key-type", "ec", "--quiet") == 0
    return out


@pytest.fixture(scope="module")
def pg(pki: Path) -> Iterator[PostgresServer]:
    node = pki / "nodes" / "n1"
    server = PostgresServer(node / "node.crt", node / "node.key", pki / "certs" / "ca.crt", roles=["root"])
    server.sql("CREATE DATABASE defaultdb")  # what a probe's login asks for, as CockroachDB has it
    yield server
    server.stop()


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    status = crdb("probe", *args, "--format", "json")
    data = json.loads(capsys.readouterr().out)
    jsonschema.validate(data, SCHEMA)
    assert data["status"] == status
    return status, data


def codes(data: dict[str, Any], i: int = 0) -> list[str]:
    return [f["code"] for f in data["probes"][i]["findings"]]


def folder_issued(tmp_path: Path, pki: Path, cert: Path, key: Path) -> Path:
    """A copy of `pki` whose node n1 was issued `cert` (the folder then expects the server to serve it)."""
    out = tmp_path / "out"
    shutil.copytree(pki, out)
    for folder in (out / "nodes" / "n1", out / "certs"):
        for source, name in ((cert, "node.crt"), (key, "node.key")):
            (folder / name).unlink()
            shutil.copyfile(source, folder / name)
    return out


def signed_cert(
    pki: Path,
    where: Path,
    sans: list[x509.GeneralName],
    not_before: datetime,
    not_after: datetime,
) -> tuple[Path, Path]:
    """A node certificate signed by `pki`'s CA, made with `cryptography` (dates openssl would not take)."""
    ca_cert, ca_key = load_cert(pki / "certs" / "ca.crt"), load_key(pki / "my-safe-directory" / "ca.key")
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "node")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    where.mkdir(parents=True, exist_ok=True)
    (where / "node.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (where / "node.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (where / "node.key").chmod(0o600)
    return where / "node.crt", where / "node.key"


LOCAL = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]


# --------------------------------------------------------------------------------- the SQL port


def test_a_node_serving_its_certificate(
    pg: PostgresServer, pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node = pki / "nodes" / "n1"
    pg.serve(node / "node.crt", node / "node.key")
    hosts = [f"localhost:{pg.port}", f"127.0.0.1:{pg.port}"]
    status, data = run(capsys, *hosts, "--out", pki, "--user", "root")
    assert status == 0, data
    for found, host in zip(data["probes"], hosts, strict=True):
        assert found["target"] == host
        assert found["trusted"] is True and found["hostname_ok"] is True and found["issued"] is True
        assert found["node"] == "n1"
        assert found["principals"][0] == "node"
        assert found["chain"][0]["serial"] == found["issued_serial"]
        assert found["chain"][0]["key"] == "EC P-256"
        assert found["login"] == {"user": "root", "authenticated": True, "answer": "authenticated"}
    # The text says the same, one line per fact; no finding line.
    assert crdb("probe", hosts[0], "--out", pki, "--user", "root") == 0
    shown = capsys.readouterr().out
    assert "trusted: reaches CN=Cockroach CA" in shown
    assert "localhost: among its SANs" in shown
    assert "yes: n1's" in shown
    assert "user root: authenticated" in shown
    # A certs directory is a folder too: its ca.crt, and its node.crt found by the node's own SANs.
    status, data = run(capsys, hosts[0], "--certs-dir", pki / "nodes" / "n1")
    assert status == 0 and data["probes"][0]["issued"] is True


def test_a_certificate_from_another_ca_is_untrusted(
    pg: PostgresServer, pki: Path, other_pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    theirs = other_pki / "nodes" / "n1"
    pg.serve(theirs / "node.crt", theirs / "node.key")
    out = folder_issued(tmp_path, pki, theirs / "node.crt", theirs / "node.key")
    status, data = run(capsys, f"localhost:{pg.port}", "--out", out)
    assert (status, codes(data)) == (1, ["untrusted"])
    assert str(out / "certs" / "ca.crt") in data["probes"][0]["findings"][0]["message"]
    # And against the folder that did issue it (no copy): untrusted and stale.
    status, data = run(capsys, f"localhost:{pg.port}", "--out", pki)
    assert (status, codes(data)) == (1, ["untrusted", "stale"])


@pytest.mark.parametrize(
    ("days", "code"),
    [((-30, -1), "expired"), ((1, 30), "expired"), ((-1, 10), "expires-soon")],
    ids=["expired", "not-yet-valid", "expires-soon"],
)
def test_dates(
    pg: PostgresServer,
    pki: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    days: tuple[int, int],
    code: str,
) -> None:
    now = datetime.now(UTC)
    start, end = (now + timedelta(days=d) for d in days)
    cert, key = signed_cert(pki, tmp_path / "made", LOCAL, start, end)
    pg.serve(cert, key)
    out = folder_issued(tmp_path, pki, cert, key)
    status, data = run(capsys, f"localhost:{pg.port}", "--out", out)
    assert (status, codes(data)) == (1, [code])
    if code == "expires-soon":  # the window is settable
        status, data = run(capsys, f"localhost:{pg.port}", "--out", out, "--within", "5d")
        assert (status, codes(data)) == (0, [])


def test_a_certificate_without_the_probed_name(
    pg: PostgresServer, pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    sans: list[x509.GeneralName] = [x509.DNSName("elsewhere.example.com")]
    cert, key = signed_cert(pki, tmp_path / "made", sans, now - timedelta(days=1), now + timedelta(days=90))
    pg.serve(cert, key)
    out = folder_issued(tmp_path, pki, cert, key)
    status, data = run(capsys, f"localhost:{pg.port}", f"127.0.0.1:{pg.port}", "--out", out)
    assert status == 1
    assert [codes(data, 0), codes(data, 1)] == [["hostname"], ["hostname"]]
    assert data["probes"][0]["findings"][0]["message"] == (
        "localhost is not among its SANs (DNS:elsewhere.example.com)"
    )


def test_a_node_that_did_not_reload_after_renew_is_stale(
    pg: PostgresServer, pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    shutil.copytree(pki, out)
    node = out / "nodes" / "n1"
    pg.serve(node / "node.crt", node / "node.key")
    old = load_cert(node / "node.crt").serial_number
    assert crdb("renew", "--nodes", "n1", "--out", out, "--quiet") == 0
    new = load_cert(node / "node.crt").serial_number
    pg.replace_on_disk(node / "node.crt", node / "node.key")  # copied to the node, never reloaded
    status, data = run(capsys, f"localhost:{pg.port}", "--out", out)
    assert (status, codes(data)) == (1, ["stale"])
    assert data["probes"][0]["findings"][0]["message"].startswith(
        f"serves serial {probe._hex(old)}, the folder issued {probe._hex(new)}"
    )
    # The text report: one line for the problem, the same words.
    assert crdb("probe", f"localhost:{pg.port}", "--out", out) == 1
    assert f"localhost:{pg.port}: stale: serves serial {probe._hex(old)}" in capsys.readouterr().out
    pg.serve(node / "node.crt", node / "node.key")  # the SIGHUP
    status, data = run(capsys, f"localhost:{pg.port}", "--out", out)
    assert (status, codes(data)) == (0, [])


def test_client_refused(
    pg: PostgresServer, pki: Path, other_pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node = pki / "nodes" / "n1"
    pg.serve(node / "node.crt", node / "node.key")
    # A user the server has no role for: PostgreSQL's own error text.
    status, data = run(capsys, f"localhost:{pg.port}", "--out", pki, "--user", "ghost")
    assert (status, codes(data)) == (1, ["client-refused"])
    login = data["probes"][0]["login"]
    assert login["authenticated"] is False
    assert 'role "ghost" does not exist' in login["answer"]
    # A client certificate from another CA: refused in the TLS handshake (an alert, not an SQL error).
    out = tmp_path / "out"
    shutil.copytree(pki, out)
    for name in ("client.root.crt", "client.root.key"):
        (out / "certs" / name).unlink()
        shutil.copyfile(other_pki / "certs" / name, out / "certs" / name)
    status, data = run(capsys, f"localhost:{pg.port}", "--out", out, "--user", "root")
    assert (status, codes(data)) == (1, ["client-refused"])
    # Refused in TLS, not by SQL: usually an alert; under load the server may close (EOF, reset) before
    # the client reads it (TLS 1.3 ends the client's handshake first), which is the same refusal.
    answer = data["probes"][0]["login"]["answer"]
    assert answer.startswith("the server refused the TLS connection:"), answer
    assert any(word in answer for word in ("alert", "eof", "reset")), answer


# ------------------------------------------------------------------------------------- unreachable


def test_what_is_not_a_tls_server_is_unreachable_in_order(
    pg: PostgresServer, pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node = pki / "nodes" / "n1"
    pg.serve(node / "node.crt", node / "node.key")
    insecure, closing, silent = TcpListener(b"N"), TcpListener(b""), TcpListener(None)
    try:
        closed = _free_port()
        hosts = [
            f"127.0.0.1:{closed}",
            f"localhost:{pg.port}",
            f"127.0.0.1:{insecure.port}",
            f"127.0.0.1:{closing.port}",
            f"127.0.0.1:{silent.port}",
        ]
        status, data = run(capsys, *hosts, "--out", pki, "--timeout", "0.5")
        assert status == 2
        assert [p["target"] for p in data["probes"]] == hosts
        reasons = [p["unreachable"] for p in data["probes"]]
        assert reasons[0] == "connection refused"
        assert reasons[1] is None and data["probes"][1]["ok"] is True
        assert reasons[2].startswith("not TLS: the server answered 'N' to the SSLRequest")
        assert reasons[3] == "not TLS: the server closed the connection on the SSLRequest"
        assert reasons[4] == "timeout: no TLS handshake within 0.5s"
        assert crdb("probe", hosts[0], hosts[2], "--timeout", "0.5") == 2
        assert capsys.readouterr().out.splitlines() == [
            f"{hosts[0]}: unreachable: connection refused",
            f"{hosts[2]}: unreachable: {reasons[2]}",
        ]
    finally:
        for listener in (insecure, closing, silent):
            listener.stop()


# ----------------------------------------------------------------------------------- DB Console


def test_the_db_console_port(pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    node = pki / "nodes" / "n1"
    console = TlsServer(node / "node.crt", node / "node.key")
    plain = TcpListener(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    try:
        status, data = run(capsys, "--http", f"[::1]:{plain.port}", f"localhost:{console.port}", "--out", pki)
        assert data["probes"][1]["ok"] is True and data["probes"][1]["port_kind"] == "http"
        assert data["probes"][0]["unreachable"] is not None  # nothing on ::1 there
        status, data = run(capsys, "--http", f"127.0.0.1:{plain.port}", "--out", pki)
        assert status == 2 and data["probes"][0]["unreachable"].startswith("not TLS")
    finally:
        console.stop()
        plain.stop()


# ------------------------------------------------------------------------------ usage, and pure parts


USAGE = [
    (["localhost:99999"], 'HOST: "localhost:99999" has a port that is not a number from 1 to 65535'),
    (["::1:26257:x"], 'HOST: "::1:26257:x" is not HOST:PORT (write an IPv6 address as [::1]:26257)'),
    (["x", "--out", "a", "--certs-dir", "b"], "--certs-dir: not with --out (one folder to compare with)"),
    (
        ["x", "--http", "--user", "root"],
        "--user: not with --http (the DB Console does not speak the SQL protocol)",
    ),
    (["x", "--user", "root"], "--user: needs --out or --certs-dir (where client.<user>.crt is)"),
    (
        ["x", "--within", "soon"],
        '--within: "soon" is not a duration: a number and a unit, h, d or w (12h, 30d, 2w)',
    ),
]


@pytest.mark.parametrize(("args", "message"), USAGE)
def test_usage_errors(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert crdb("probe", *args) == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err.strip()) == ("", f"error: {message}")


def test_a_user_without_a_client_certificate(pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert crdb("probe", "localhost:1", "--out", pki, "--user", "maxroach") == 2
    assert capsys.readouterr().err.startswith('error: --user: "maxroach" has no usable ')


def test_targets() -> None:
    parse = probe.parse_target
    assert parse("node1", 26257) == probe.Target("node1", 26257)
    assert parse("node1:1", 26257) == probe.Target("node1", 1)
    assert parse("[::1]:26258", 26257) == probe.Target("::1", 26258)
    assert parse("[::1]", 8080) == probe.Target("::1", 8080)
    assert parse("::1", 26257) == probe.Target("::1", 26257)
    assert str(probe.Target("::1", 26257)) == "[::1]:26257"


def test_host_names_as_go_matches_them() -> None:
    assert probe.reaches("Node1.Example.com", ["node1.example.com"], [])
    assert probe.reaches("a.nodes.example.com", ["*.nodes.example.com"], [])
    assert not probe.reaches("a.b.nodes.example.com", ["*.nodes.example.com"], [])
    assert not probe.reaches("nodes.example.com", ["*.nodes.example.com"], [])
    assert probe.reaches("::1", [], ["0:0:0:0:0:0:0:1"])
    assert not probe.reaches("127.0.0.1", ["127.0.0.1"], [])  # an address is matched with IP SANs only


def test_the_schema_lists_every_finding_and_is_shipped_in_the_package() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$defs"]["finding"]["properties"]["code"]["enum"] == list(probe.CODES)
    assert (Path(probe.__file__).parent / "probe.schema.json").is_file()


def test_the_rollout_ends_with_a_probe_of_every_node(tmp_path: Path) -> None:
    spec = load_spec(
        write_spec(
            tmp_path,
            '[[nodes]]\nname = "a"\nhosts = ["*.x.example.com", "a.example.com"]\n'
            '[[nodes]]\nname = "b"\nhosts = ["::1", "b.example.com"]\n[[clients]]\nuser = "root"\n',
        )
    )
    out = tmp_path / "my out"
    for stage in ("renew", "rotate", "finish"):
        text = lifecycle.rollout(spec, out, None, stage, ["a", "b"], [])
        probe_line = f"crdb-certs probe a.example.com:26257 '[::1]:26257' --out {script.quote(out)}"
        assert text.splitlines()[-1].endswith(probe_line), text
