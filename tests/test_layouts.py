"""Every PKI scenario of the docs' custom-CA page, played by independent peers: split-node, split-CA,
DB Console certificates (node CA, own UI CA, imported), your own CA, PKCS#8 keys."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tests import pkicheck
from tests.conftest import crdb, write_spec
from tests.orgca import OrgCA, openssl_chain
from tests.peers import Party, PostgresServer, handshake, postgres_logins
from tests.pkicheck import CLIENT, SERVER

LAYOUTS = ["standard", "split-node", "split-ca"]
UIS = [None, "node-ca", "ui-ca"]


def spec_text(layout: str, ui: str | None) -> str:
    # EC keys: the layouts and the peers' roles are under test here, not the kind of key (test_peers.py
    # plays these roles with RSA keys), and an RSA key takes ~100 times longer to make.
    text = (
        f'layout = "{layout}"\nkey_type = "ec"\n'
        '[[nodes]]\nname = "n1"\nhosts = ["n1.example.com", "localhost", "127.0.0.1"]\n'
        '[[nodes]]\nname = "n2"\nhosts = ["n2.example.com", "10.0.0.2"]\n'
        '[[clients]]\nuser = "root"\n[[clients]]\nuser = "maxroach"\n'
    )
    if ui:
        text += f'[ui]\nhosts = ["console.example.com", "127.0.0.1"]\nissuer = "{ui}"\n'
    return text


@pytest.fixture(scope="module")
def make_pki(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str | None], Path]:
    made: dict[tuple[str, str | None], Path] = {}

    def make(layout: str, ui: str | None) -> Path:
        if (layout, ui) not in made:
            out = tmp_path_factory.mktemp(f"{layout}-{ui}")
            spec = write_spec(out / "spec", spec_text(layout, ui))
            assert crdb("issue", "--config", spec, "--out", out / "pki", "--quiet") == 0
            made[layout, ui] = out / "pki"
        return made[layout, ui]

    return make


def listener(bundle: Path) -> Party:
    """A node accepting connections: verifies client certificates against ca-client.crt if it exists."""
    client_ca = bundle / "ca-client.crt"
    return Party(
        bundle / "node.crt", bundle / "node.key", client_ca if client_ca.exists() else bundle / "ca.crt"
    )


def dialer(bundle: Path) -> Party:
    """A node dialing another: presents client.node.crt if it exists, else node.crt; trusts ca.crt."""
    split = bundle / "client.node.crt"
    cert = split if split.exists() else bundle / "node.crt"
    return Party(cert, pkicheck.Path(str(cert).removesuffix(".crt") + ".key"), bundle / "ca.crt")


def sql_client(certs: Path, user: str) -> Party:
    return Party(certs / f"client.{user}.crt", certs / f"client.{user}.key", certs / "ca.crt")


@pytest.mark.parametrize("ui", UIS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_cockroach_roles_handshake(
    make_pki: Callable[[str, str | None], Path], layout: str, ui: str | None
) -> None:
    pki = make_pki(layout, ui)
    n1, n2, certs = pki / "nodes" / "n1", pki / "nodes" / "n2", pki / "certs"
    expected = {"ca.crt", "node.crt", "node.key"}
    if layout != "standard":
        expected |= {"client.node.crt", "client.node.key"}
    if layout == "split-ca":
        expected |= {"ca-client.crt"}
    if ui:
        expected |= {"ui.crt", "ui.key"} | ({"ca-ui.crt"} if ui == "ui-ca" else set())
    assert {p.name for p in n1.iterdir()} == {p.name for p in n2.iterdir()} == expected
    # ui.key is a server's key: not in the clients' certs/, which is no node's folder with two nodes.
    assert not {"ui.crt", "ui.key"} & {p.name for p in certs.iterdir()}
    # Node to node, both ways, and SQL clients to a node.
    assert handshake(listener(n1), dialer(n2), "n1.example.com") == "node"
    assert handshake(listener(n2), dialer(n1), "10.0.0.2") == "node"
    for user in ("root", "maxroach"):
        assert handshake(listener(n1), sql_client(certs, user), "localhost") == user
    if ui:
        ui_ca = n1 / ("ca-ui.crt" if ui == "ui-ca" else "ca.crt")
        browser = Party(None, None, ui_ca)
        assert (
            handshake(
                Party(n1 / "ui.crt", n1 / "ui.key", ui_ca), browser, "console.example.com", client_auth=False
            )
            == ""
        )
        pkicheck.assert_node(
            n1 / "ui.crt",
            ["console.example.com", "127.0.0.1"],
            ui_ca,
            ["console.example.com"],
            {SERVER},
            secure=True,
        )


@pytest.mark.parametrize("layout", ["split-node", "split-ca"])
def test_split_node_certificates(make_pki: Callable[[str, str | None], Path], layout: str) -> None:
    pki = make_pki(layout, None)
    bundle = pki / "nodes" / "n1"
    signer = bundle / ("ca-client.crt" if layout == "split-ca" else "ca.crt")
    pkicheck.assert_node(
        bundle / "node.crt",
        ["n1.example.com", "localhost", "127.0.0.1"],
        bundle / "ca.crt",
        ["node"],
        {SERVER},
        secure=True,
    )
    pkicheck.assert_client(bundle / "client.node.crt", "node", signer, secure=True)
    # node.crt is a server certificate only: another node would refuse it as a client certificate.
    with pytest.raises((ConnectionError, ssl.SSLError)):
        handshake(
            listener(pki / "nodes" / "n2"),
            Party(bundle / "node.crt", bundle / "node.key", bundle / "ca.crt"),
            "n2.example.com",
        )


def test_split_ca_refuses_client_certificates_from_the_node_ca(
    make_pki: Callable[[str, str | None], Path], tmp_path: Path
) -> None:
    pki = make_pki("split-ca", None)
    certs = pki / "certs"
    for user in ("root", "maxroach"):
        pkicheck.assert_client(certs / f"client.{user}.crt", user, certs / "ca-client.crt", secure=True)
    # A client certificate signed by ca.crt's key (made here with plain openssl) must be refused.
    key, csr, crt = tmp_path / "k.key", tmp_path / "r.csr", tmp_path / "r.crt"
    ext = tmp_path / "ext.cnf"
    ext.write_text("[ x ]\nextendedKeyUsage = clientAuth\nbasicConstraints = critical,CA:FALSE\n")
    subprocess.run(
        [
            "openssl",
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key,
            "-subj",
            "/O=Cockroach/CN=root",
            "-out",
            csr,
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            "openssl",
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            certs / "ca.crt",
            "-CAkey",
            pki / "my-safe-directory" / "ca.key",
            "-CAcreateserial",
            "-out",
            crt,
            "-days",
            "1",
            "-extfile",
            ext,
            "-extensions",
            "x",
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    with pytest.raises((ConnectionError, ssl.SSLError)):
        handshake(listener(pki / "nodes" / "n1"), Party(crt, key, certs / "ca.crt"), "localhost")
    # And a certificate from an unrelated CA (another crdb-certs PKI) too.
    other = make_pki("standard", None)
    with pytest.raises((ConnectionError, ssl.SSLError)):
        handshake(listener(pki / "nodes" / "n1"), sql_client(other / "certs", "root"), "localhost")


@pytest.fixture(scope="module")
def split_ca_postgres(make_pki: Callable[[str, str | None], Path]) -> Iterator[tuple[PostgresServer, Path]]:
    pki = make_pki("split-ca", None)
    n1 = pki / "nodes" / "n1"
    server = PostgresServer(
        n1 / "node.crt", n1 / "node.key", n1 / "ca-client.crt", roles=["root", "maxroach"]
    )
    yield server, pki
    server.stop()


@pytest.mark.parametrize("user", ["root", "maxroach"])
def test_postgres_with_split_ca(split_ca_postgres: tuple[PostgresServer, Path], user: str) -> None:
    server, pki = split_ca_postgres
    certs = pki / "certs"
    got = server.current_user(
        user, certs / f"client.{user}.crt", certs / f"client.{user}.key", certs / "ca.crt"
    )
    assert got == user


# ------------------------------------------------------------------------------------------ imports

UI_HOSTS = ["console.example.com", "127.0.0.1"]


def import_spec(folder: Path, cert: Path, key: Path) -> Path:
    return write_spec(
        folder,
        '[[nodes]]\nname = "n1"\nhosts = ["localhost"]\n'
        f'[ui]\nhosts = {UI_HOSTS!r}\nissuer = "import"\ncert = "{cert}"\nkey = "{key}"\n'.replace("'", '"'),
    )


def test_a_good_ui_import_is_installed(tmp_path: Path) -> None:
    org = OrgCA(tmp_path / "org")
    cert, key = org.issue(tmp_path / "org", "ui", ["console.example.com", "*.example.org", "127.0.0.1"])
    key.chmod(0o644)  # as a careless download would leave it: crdb-certs must not copy that mode
    out = tmp_path / "out"
    assert crdb("issue", "--config", import_spec(tmp_path, cert, key), "--out", out, "--quiet") == 0
    for folder in (out / "certs", out / "nodes" / "n1"):
        assert (folder / "ui.crt").read_bytes() == cert.read_bytes()
        assert (folder / "ui.key").read_bytes() == key.read_bytes()
        assert pkicheck.mode(folder / "ui.key") == 0o400
    browser = Party(None, None, org.cert_path)
    node = out / "nodes" / "n1"
    assert (
        handshake(
            Party(node / "ui.crt", node / "ui.key", node / "ca.crt"),
            browser,
            "console.example.com",
            client_auth=False,
        )
        == ""
    )


def _expired(org: OrgCA, folder: Path) -> tuple[Path, Path]:
    return org.issue(folder, "ui", UI_HOSTS, not_after=datetime.now(UTC) - timedelta(days=1))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda org, d: (org.issue(d, "ui", UI_HOSTS)[0], org.issue(d, "other", UI_HOSTS)[1]),
            "does not match",
        ),
        (_expired, "expired"),
        (lambda org, d: org.issue(d, "ui", ["console.example.com"]), "has no SAN for 127.0.0.1"),
        (lambda org, d: org.issue(d, "ui", UI_HOSTS, server_auth=False), "no serverAuth"),
    ],
    ids=["key-mismatch", "expired", "missing-san", "no-server-auth"],
)
def test_a_bad_ui_import_is_refused_and_nothing_changes(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make: Callable[[OrgCA, Path], tuple[Path, Path]],
    message: str,
) -> None:
    org = OrgCA(tmp_path / "org")
    cert, key = make(org, tmp_path / "org")
    out = tmp_path / "out"
    assert crdb("issue", "--config", import_spec(tmp_path, cert, key), "--out", out) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("error: ui.") and "\n" not in err
    assert not out.exists()


def test_your_own_ca_signs_and_its_key_stays_where_it_is(tmp_path: Path) -> None:
    org = OrgCA(tmp_path / "org", cn="Example Issuing CA")
    spec = write_spec(
        tmp_path,
        '[[nodes]]\nname = "n1"\nhosts = ["localhost", "127.0.0.1"]\n[[clients]]\nuser = "root"\n'
        f'[ca]\ncert = "{org.cert_path}"\nkey = "{org.key_path}"\n',
    )
    out = tmp_path / "out"
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    certs = out / "certs"
    assert (certs / "ca.crt").read_bytes() == org.cert_path.read_bytes()
    assert not (out / "my-safe-directory" / "ca.key").exists()
    secret = org.key_path.read_bytes()
    assert not [p for p in out.rglob("*") if p.is_file() and secret in p.read_bytes()]
    pkicheck.assert_node(
        certs / "node.crt", ["localhost", "127.0.0.1"], org.cert_path, ["node"], {SERVER, CLIENT}, secure=True
    )
    pkicheck.assert_client(certs / "client.root.crt", "root", org.cert_path, secure=True)
    assert handshake(listener(out / "nodes" / "n1"), sql_client(certs, "root")) == "root"
    assert crdb("issue", "--config", spec, "--out", out, "--check") == 0, "a second run has nothing to do"


def test_with_your_own_ca_no_advice_about_a_ca_key_that_is_not_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    org = OrgCA(tmp_path / "org")
    spec = write_spec(
        tmp_path,
        '[[nodes]]\nname = "n1"\nhosts = ["localhost"]\n[[clients]]\nuser = "root"\n'
        f'[ca]\ncert = "{org.cert_path}"\nkey = "{org.key_path}"\n',
    )
    assert crdb("issue", "--config", spec, "--out", tmp_path / "out") == 0
    printed = capsys.readouterr().out
    assert "cockroach start-single-node" in printed
    assert "my-safe-directory" not in printed and "CA key" not in printed
    assert crdb("plan", "--config", spec) == 0
    assert "the CA key" not in capsys.readouterr().out, "the plan makes no CA key either"


def test_a_ca_that_may_not_sign_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    org = OrgCA(tmp_path / "org", key_cert_sign=False)
    spec = write_spec(
        tmp_path,
        '[[nodes]]\nname = "n1"\nhosts = ["localhost"]\n'
        f'[ca]\ncert = "{org.cert_path}"\nkey = "{org.key_path}"\n',
    )
    assert crdb("issue", "--config", spec, "--out", tmp_path / "out") == 2
    assert "keyCertSign" in capsys.readouterr().err


def test_plan_and_render_read_no_imported_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Loading a spec reads no other file: an expired imported UI certificate stops `issue`, which would
    install it, not `plan` or `render`, which only print and render the configs."""
    org = OrgCA(tmp_path / "org")
    spec = import_spec(tmp_path, *_expired(org, tmp_path / "org"))
    assert crdb("plan", "--config", spec) == 0
    assert crdb("render", "--config", spec, "--out", tmp_path / "configs") == 0
    assert (tmp_path / "configs" / "ca.cnf").is_file()
    capsys.readouterr()
    assert crdb("issue", "--config", spec, "--out", tmp_path / "out") == 2
    assert "expired" in capsys.readouterr().err


def own_ca_spec(folder: Path, cert: Path, key: Path, layout: str = "standard") -> Path:
    return write_spec(
        folder,
        f'layout = "{layout}"\n[[nodes]]\nname = "n1"\nhosts = ["localhost", "127.0.0.1"]\n'
        f'[[clients]]\nuser = "root"\n[ca]\ncert = "{cert}"\nkey = "{key}"\n',
    )


def openssl_verify(ca_file: Path, cert: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", "verify", "-CAfile", ca_file, cert], capture_output=True, text=True, check=False
    )


def test_your_own_intermediate_ca_installs_its_chain_up_to_the_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ca.crt must hold the issuing CA and its root (intermediate first): libpq and OpenSSL clients given
    the intermediate alone (sslrootcert=ca.crt) fail "unable to get issuer certificate"; Go does not."""
    chain = openssl_chain(tmp_path / "org")
    out = tmp_path / "out"
    spec = own_ca_spec(tmp_path, chain.bundle, chain.issuing_key)
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    certs, n1 = out / "certs", out / "nodes" / "n1"
    for folder in (certs, n1):
        assert (folder / "ca.crt").read_bytes() == chain.bundle.read_bytes()
        assert openssl_verify(folder / "ca.crt", folder / "node.crt").returncode == 0
    assert openssl_verify(certs / "ca.crt", certs / "client.root.crt").returncode == 0
    assert handshake(listener(n1), sql_client(certs, "root")) == "root"
    assert postgres_logins(certs, ["root"]) == ["root"]  # libpq, sslrootcert=certs/ca.crt
    assert crdb("audit", n1) == 0
    # The intermediate alone, as before: the peers refuse it, and the audit says so.
    shutil.copy(chain.issuing, n1 / "ca.crt")
    refused = openssl_verify(n1 / "ca.crt", n1 / "node.crt")
    assert refused.returncode != 0 and "unable to get issuer certificate" in refused.stdout + refused.stderr
    with pytest.raises(ssl.SSLError):
        handshake(listener(n1), Party(certs / "client.root.crt", certs / "client.root.key", n1 / "ca.crt"))
    capsys.readouterr()
    assert crdb("audit", n1) == 1
    said = capsys.readouterr().out
    assert "holds an intermediate CA (O=Example Org,CN=Example Org Issuing CA) without its issuer" in said
    assert "unable to get issuer certificate" in said, said


@pytest.mark.parametrize(
    ("bundle", "message"), [("alone", "is not a self-signed root"), ("unlinked", "is not one chain")]
)
def test_your_own_intermediate_ca_without_its_root_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bundle: str, message: str
) -> None:
    chain = openssl_chain(tmp_path / "org")
    cert = chain.issuing
    if bundle == "unlinked":  # the intermediate, then a root that did not sign it
        cert = tmp_path / "unlinked.crt"
        cert.write_bytes(chain.issuing.read_bytes() + OrgCA(tmp_path / "other").cert_path.read_bytes())
    out = tmp_path / "out"
    capsys.readouterr()
    assert crdb("issue", "--config", own_ca_spec(tmp_path, cert, chain.issuing_key), "--out", out) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f'error: ca.cert: "{cert}" ') and message in err and "\n" not in err, err
    assert not out.exists()


def test_your_own_ca_key_that_others_can_read_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    org = OrgCA(tmp_path / "org")
    org.key_path.chmod(0o644)
    out = tmp_path / "out"
    capsys.readouterr()
    assert crdb("issue", "--config", own_ca_spec(tmp_path, org.cert_path, org.key_path), "--out", out) == 2
    err = capsys.readouterr().err.strip()
    assert err == f'error: ca.key: "{org.key_path}" is readable by others (mode 0644); chmod 400 it'
    assert not out.exists()


def test_your_own_ca_with_split_ca_is_refused_naming_the_layout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    org = OrgCA(tmp_path / "org")
    spec = own_ca_spec(tmp_path, org.cert_path, org.key_path, layout="split-ca")
    capsys.readouterr()
    assert crdb("issue", "--config", spec, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: layout: "split-ca" cannot be combined with [ca]') and "\n" not in err
    assert 'layout "split-node"' in err and "crdb-certs csr" in err, "the message says what to do"
    assert not (tmp_path / "out").exists()


def test_pkcs8_key_for_java_clients(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path, '[[clients]]\nuser = "maxroach"\npkcs8 = true\n[[clients]]\nuser = "root"\n')
    out = tmp_path / "out"
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    certs = out / "certs"
    pk8 = certs / "client.maxroach.key.pk8"
    der_key = serialization.load_der_private_key(pk8.read_bytes(), password=None)
    pem_key = serialization.load_pem_private_key((certs / "client.maxroach.key").read_bytes(), password=None)
    assert der_key.private_numbers() == pem_key.private_numbers()  # type: ignore[union-attr]
    assert pkicheck.mode(pk8) == 0o400
    assert not (certs / "client.root.key.pk8").exists()
    # A file `cockroach cert create-client --also-generate-pkcs8-key` writes too: the audit has no note on it.
    capsys.readouterr()
    assert crdb("audit", certs, "--format", "json") == 0
    assert [f for f in json.loads(capsys.readouterr().out)["findings"] if f["file"] == pk8.name] == []


def _holds(pk8: Path, key: Path) -> bool:
    """Whether the DER PKCS#8 file holds the same private key as the PEM one."""
    der = serialization.load_der_private_key(pk8.read_bytes(), password=None)
    pem = serialization.load_pem_private_key(key.read_bytes(), password=None)
    return der.private_numbers() == pem.private_numbers()  # type: ignore[union-attr]


def test_a_pk8_follows_its_key(tmp_path: Path) -> None:
    """Review 8: the .pk8 was made once and then forgotten: moving pkcs8 = true to root made no
    client.root.key.pk8, `renew --clients maxroach` left the old key's .pk8 beside the new key (not in
    backup/), and a deleted one was never made again. Now it is made, and made again, from its key."""
    users = '[[clients]]\nuser = "root"\n{root}[[clients]]\nuser = "maxroach"\n{maxroach}'
    before = write_spec(tmp_path, 'key_type = "ec"\n' + users.format(root="", maxroach="pkcs8 = true\n"))
    after = write_spec(
        tmp_path, 'key_type = "ec"\n' + users.format(root="pkcs8 = true\n", maxroach=""), "b.toml"
    )
    out = tmp_path / "out"
    certs = out / "certs"
    assert crdb("issue", "--config", before, "--out", out, "--quiet") == 0
    root_crt = (certs / "client.root.crt").read_bytes()
    assert crdb("issue", "--config", after, "--out", out, "--quiet") == 0
    assert _holds(certs / "client.root.key.pk8", certs / "client.root.key")
    assert (certs / "client.root.crt").read_bytes() == root_crt, "made from the key there: nothing re-issued"
    assert _holds(certs / "client.maxroach.key.pk8", certs / "client.maxroach.key"), "left as it was"

    assert crdb("renew", "--clients", "maxroach", "--out", out, "--quiet") == 0
    assert not (certs / "client.maxroach.key.pk8").exists(), "a copy of the old key beside the new one"
    [kept] = (out / "backup").glob("*/certs")
    assert _holds(kept / "client.maxroach.key.pk8", kept / "client.maxroach.key")

    (certs / "client.root.key.pk8").unlink()
    assert crdb("issue", "--out", out, "--quiet") == 0
    assert _holds(certs / "client.root.key.pk8", certs / "client.root.key")
    assert (certs / "client.root.crt").read_bytes() == root_crt

    assert crdb("renew", "--clients", "root", "--out", out, "--quiet") == 0
    assert _holds(certs / "client.root.key.pk8", certs / "client.root.key")
    assert pkicheck.mode(certs / "client.root.key.pk8") == 0o400
    assert any(
        _holds(b / "client.root.key.pk8", b / "client.root.key")
        for b in (out / "backup").glob("*/certs")
        if (b / "client.root.key.pk8").exists()
    )


def test_a_pk8_others_can_read_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Review 7: a 0644 client.<user>.key.pk8 passed audit, `issue --check` and `issue`, while a 0644 .key
    fails all three: it is the same private key."""
    spec = write_spec(tmp_path, 'key_type = "ec"\n[[clients]]\nuser = "maxroach"\npkcs8 = true\n')
    out = tmp_path / "out"
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    pk8 = out / "certs/client.maxroach.key.pk8"
    pk8.chmod(0o644)
    capsys.readouterr()
    assert crdb("audit", out / "certs", "--format", "json") == 1
    found = [
        (f["code"], f["severity"])
        for f in json.loads(capsys.readouterr().out)["findings"]
        if f["file"] == pk8.name
    ]
    assert found == [("key-permissions", "error")], found
    assert crdb("issue", "--check", "--out", out) == 1
    assert pk8.name in capsys.readouterr().err
    assert crdb("issue", "--out", out) == 1
    assert pk8.name in capsys.readouterr().err
