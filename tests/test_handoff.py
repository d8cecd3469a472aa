"""CSR hand-off: `crdb-certs csr` for a CA that crdb-certs may not touch (played here by plain openssl),
then `crdb-certs import` of what that CA returned."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from tests import pkicheck
from tests.conftest import crdb, write_spec
from tests.orgca import openssl_chain
from tests.peers import Party, handshake
from tests.pkicheck import SERVER

SPEC = """\
layout = "split-node"
[[nodes]]
name = "n1"
hosts = ["n1.example.com", "localhost", "127.0.0.1"]
[[nodes]]
name = "n2"
hosts = ["n2.example.com"]
[[clients]]
user = "root"
"""

# The same with EC keys, for the tests of what import refuses or accepts: the keys' kind is not what they
# check (test_csr_then_import_round_trip keeps RSA ones), and an RSA key takes ~100 times longer to make.
EC_SPEC = 'key_type = "ec"\n' + SPEC

# The organization's CA, as its own team would run it: plain openssl, its own config.
ORG_CNF = """\
[ req ]
prompt = no
distinguished_name = dn
x509_extensions = ca_ext
[ dn ]
O = Example Org
CN = Example Org Issuing CA
[ ca_ext ]
basicConstraints = critical,CA:true
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[ server ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
[ client ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
[ client-ca ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,digitalSignature,keyCertSign,cRLSign
extendedKeyUsage = clientAuth
[ client-no-signature ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,keyEncipherment
extendedKeyUsage = clientAuth
"""


def org_sign(org: Path, csr: Path, out: Path, section: str) -> None:
    """The org CA signs a CSR, copying its SANs (its policy, not ours), with its own usages. The SANs are
    read from the CSR into the extensions file: `x509 -req -copy_extensions` is OpenSSL 3 only."""
    request = x509.load_pem_x509_csr(csr.read_bytes())
    try:
        san = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        names = []
    else:
        names = [f"DNS:{n}" for n in san.get_values_for_type(x509.DNSName)]
        names += [f"IP:{ip}" for ip in san.get_values_for_type(x509.IPAddress)]
    own = ORG_CNF.split(f"[ {section} ]\n", 1)[1].split("[", 1)[0]
    extensions = org / f"{out.stem}.ext"
    extensions.write_text(f"[ signing ]\n{own}" + (f"subjectAltName = {', '.join(names)}\n" if names else ""))
    subprocess.run(
        [
            "openssl",
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            org / "ca.crt",
            "-CAkey",
            org / "ca.key",
            "-set_serial",
            str(abs(hash(csr.name)) % 10**12),
            "-days",
            "30",
            "-out",
            out,
            "-extfile",
            extensions,
            "-extensions",
            "signing",
        ],
        check=True,
        capture_output=True,
    )


def make_org_ca(folder: Path) -> Path:
    """The organization's CA, made with plain openssl and its own config."""
    folder.mkdir()
    (folder / "org.cnf").write_text(ORG_CNF)
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            folder / "ca.key",
            "-out",
            folder / "ca.crt",
            "-days",
            "365",
            "-config",
            folder / "org.cnf",
        ],
        check=True,
        capture_output=True,
    )
    return folder


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One organization's CA for the module: each test checks the hand-off, not the CA's own key."""
    return make_org_ca(tmp_path_factory.mktemp("org") / "org")


def sign_all(org: Path, out: Path, returned: Path) -> None:
    returned.mkdir()
    shutil.copy(org / "ca.crt", returned / "ca.crt")
    for csr in (out / "requests").glob("*.csr"):
        section = "server" if csr.name.startswith("node.") else "client"
        org_sign(org, csr, returned / (csr.stem + ".crt"), section)


def test_csr_then_import_round_trip(tmp_path: Path, org: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path, SPEC)
    out = tmp_path / "out"
    assert crdb("csr", "--config", spec, "--out", out) == 0
    said = capsys.readouterr().out
    assert "node.n1.crt" in said and "client-node.n2.crt" in said and "ca.crt" in said
    assert sorted(p.name for p in (out / "requests").glob("*.csr")) == [
        "client-node.n1.csr",
        "client-node.n2.csr",
        "client.root.csr",
        "node.n1.csr",
        "node.n2.csr",
    ]
    assert not (out / "my-safe-directory" / "ca.key").exists(), "no CA of ours in a hand-off"
    keys_before = {p: p.read_bytes() for p in out.rglob("*.key")}
    assert all(pkicheck.mode(k) == 0o400 for k in keys_before)
    assert crdb("csr", "--config", spec, "--out", out) == 0
    assert {p: p.read_bytes() for p in out.rglob("*.key")} == keys_before, "a second csr run replaced keys"

    returned = tmp_path / "returned"
    sign_all(org, out, returned)
    assert crdb("import", returned, "--config", spec, "--out", out) == 0
    assert "the CA key" not in capsys.readouterr().out, "no advice about a CA key that is not here"
    n1, n2 = out / "nodes" / "n1", out / "nodes" / "n2"
    assert {p.name for p in n1.iterdir()} == {
        "ca.crt",
        "node.crt",
        "node.key",
        "client.node.crt",
        "client.node.key",
    }
    assert (n1 / "ca.crt").read_bytes() == (org / "ca.crt").read_bytes()
    pkicheck.assert_key_pair(n1 / "node.crt", n1 / "node.key")
    pkicheck.assert_chains(n1 / "client.node.crt", org / "ca.crt")
    # The imported PKI works: node to node with client.node.crt, and a SQL client.
    assert (
        handshake(
            Party(n1 / "node.crt", n1 / "node.key", n1 / "ca.crt"),
            Party(n2 / "client.node.crt", n2 / "client.node.key", n2 / "ca.crt"),
            "n1.example.com",
        )
        == "node"
    )
    certs = out / "certs"
    assert (
        handshake(
            Party(n1 / "node.crt", n1 / "node.key", n1 / "ca.crt"),
            Party(certs / "client.root.crt", certs / "client.root.key", certs / "ca.crt"),
        )
        == "root"
    )
    pkicheck.assert_node(
        n2 / "node.crt", ["n2.example.com"], org / "ca.crt", ["node"], {SERVER}, secure=False
    )
    pkicheck.assert_client(certs / "client.root.crt", "root", org / "ca.crt", secure=False)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("missing", "has no client.root.crt"),
        ("other-key", "does not answer client.root.csr"),
        ("wrong-usage", "lacks extended key usage clientAuth"),
        ("unrelated-ca", "is not signed by ca.crt"),
        ("no-digital-signature", "lacks keyUsage digitalSignature"),
    ],
)
def test_import_refuses_what_does_not_fit(
    tmp_path: Path, org: Path, capsys: pytest.CaptureFixture[str], damage: str, message: str
) -> None:
    spec = write_spec(tmp_path, EC_SPEC)
    out = tmp_path / "out"
    assert (
        crdb(
            "csr",
            "--config",
            spec,
            "--out",
            out,
        )
        == 0
    )
    returned = tmp_path / "returned"
    sign_all(org, out, returned)
    target = returned / "client.root.crt"
    if damage == "missing":
        target.unlink()
    elif damage == "other-key":
        shutil.copy(returned / "node.n1.crt", target)
    elif damage == "wrong-usage":
        org_sign(org, out / "requests" / "client.root.csr", target, "server")
    elif damage == "no-digital-signature":
        org_sign(org, out / "requests" / "client.root.csr", target, "client-no-signature")
    else:
        other = make_org_ca(tmp_path / "other")
        org_sign(other, out / "requests" / "client.root.csr", target, "client")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    capsys.readouterr()
    assert crdb("import", returned, "--config", spec, "--out", out) == 1, "bad content: exit 1 (2 is usage)"
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before, "a refused import changed files"


def test_import_lists_every_problem_at_once_and_refuses_a_leaf_that_is_a_ca(
    tmp_path: Path, org: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, EC_SPEC)
    out = tmp_path / "out"
    assert crdb("csr", "--config", spec, "--out", out) == 0
    returned = tmp_path / "returned"
    sign_all(org, out, returned)
    # A leaf that may sign certificates: every node holding its key would hold a CA.
    org_sign(org, out / "requests" / "client.root.csr", returned / "client.root.crt", "client-ca")
    (returned / "node.n2.crt").unlink()
    org_sign(org, out / "requests" / "client-node.n1.csr", returned / "client-node.n1.crt", "server")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert crdb("import", returned, "--config", spec, "--out", out) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert all(line.startswith("error: import") for line in lines), lines
    assert len(lines) == 4, lines
    assert any("client.root.crt" in line and "CA:TRUE" in line for line in lines), lines
    assert any("client.root.crt" in line and "keyCertSign" in line for line in lines), lines
    assert any("has no node.n2.crt" in line for line in lines), lines
    assert any("client-node.n1.crt" in ln and "lacks extended key usage clientAuth" in ln for ln in lines)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before, "a refused import changed files"


@pytest.mark.parametrize(("profile", "layout"), [("docs", "split-node"), ("docs-v19", "split-ca")])
def test_docs_profiles_split_layouts_import_a_node_crt_that_only_serves(
    tmp_path: Path, org: Path, capsys: pytest.CaptureFixture[str], profile: str, layout: str
) -> None:
    """In the split layouts node.crt only serves (client.node.crt dials): import asks what issue's plan
    asks of the role, whatever the profile's own ca.cnf would also write."""
    spec = write_spec(tmp_path, f'profile = "{profile}"\n' + EC_SPEC.replace("split-node", layout))
    out = tmp_path / "out"
    assert crdb("csr", "--config", spec, "--out", out) == 0
    returned = tmp_path / "returned"
    sign_all(org, out, returned)  # node.*: serverAuth only
    if layout == "split-ca":  # the same organization's CA signs the client certificates too
        shutil.copy(org / "ca.crt", returned / "ca-client.crt")
    capsys.readouterr()
    assert crdb("import", returned, "--config", spec, "--out", out) == 0, capsys.readouterr().err
    n1 = out / "nodes" / "n1"
    assert (
        handshake(
            Party(n1 / "node.crt", n1 / "node.key", n1 / "ca.crt"),
            Party(n1 / "client.node.crt", n1 / "client.node.key", n1 / "ca.crt"),
            "n1.example.com",
        )
        == "node"
    )


def test_csr_says_what_each_request_needs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path, EC_SPEC)
    out = tmp_path / "out"
    capsys.readouterr()
    assert crdb("csr", "--config", spec, "--out", out) == 0
    sheet = out / "requests" / "REQUESTS.txt"
    assert str(sheet) in capsys.readouterr().out
    blocks = {b.split("\n", 1)[0]: b for b in sheet.read_text().split("\n\n")[1:]}
    node = blocks["node.n1.csr  ->  return as node.n1.crt"]
    assert "DNS:n1.example.com, DNS:localhost, IP:127.0.0.1" in node
    assert "CN=node" in node and "CA:FALSE" in node and "never keyCertSign" in node
    assert node.splitlines()[-1].split(":", 1)[1].strip() == "serverAuth", "split-node: node.crt only serves"
    client_node = blocks["client-node.n2.csr  ->  return as client-node.n2.crt"]
    assert "CN=node" in client_node and client_node.splitlines()[-1].endswith("clientAuth")
    assert "subjectAltName:     (none)" in blocks["client.root.csr  ->  return as client.root.crt"]
    assert any(b.startswith("the CA certificate to trust  ->  return as ca.crt") for b in blocks)
    assert len(blocks) == 6, list(blocks)


def test_import_wants_the_returned_ca_up_to_its_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An issuing (intermediate) CA signs; ca.crt must reach its self-signed root, or libpq and OpenSSL
    clients of the imported folder fail "unable to get issuer certificate"."""
    chain = openssl_chain(tmp_path / "chain")
    issuing = tmp_path / "issuing"  # the issuing CA where org_sign looks for one
    issuing.mkdir()
    shutil.copy(chain.issuing, issuing / "ca.crt")
    shutil.copy(chain.issuing_key, issuing / "ca.key")
    spec = write_spec(tmp_path, EC_SPEC)
    out = tmp_path / "out"
    assert crdb("csr", "--config", spec, "--out", out) == 0
    returned = tmp_path / "returned"
    sign_all(issuing, out, returned)  # ca.crt: the intermediate alone
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    capsys.readouterr()
    assert crdb("import", returned, "--config", spec, "--out", out) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: import ca.crt: ") and "is not a self-signed root" in err, err
    assert "\n" not in err and sorted(p.relative_to(out) for p in out.rglob("*")) == before
    shutil.copy(chain.bundle, returned / "ca.crt")
    assert crdb("import", returned, "--config", spec, "--out", out) == 0
    n1 = out / "nodes" / "n1"
    assert (n1 / "ca.crt").read_bytes() == chain.bundle.read_bytes()
    verify = ["openssl", "verify", "-CAfile", n1 / "ca.crt", n1 / "node.crt"]
    assert subprocess.run(verify, capture_output=True, check=False).returncode == 0


def test_with_an_ocsp_url_the_sheet_asks_for_it_and_import_refuses_a_leaf_without_it(
    tmp_path: Path, org: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, SPEC + '[ocsp]\nurl = "http://ocsp.example.com:8888"\n')
    out = tmp_path / "out"
    assert crdb("csr", "--config", spec, "--out", out) == 0
    sheet = (out / "requests" / "REQUESTS.txt").read_text()
    assert sheet.count("authorityInfoAccess: OCSP;URI:http://ocsp.example.com:8888") == 5
    returned = tmp_path / "returned"
    sign_all(org, out, returned)  # the org CA's own usages: no authorityInfoAccess
    capsys.readouterr()
    assert crdb("import", returned, "--config", spec, "--out", out) == 1
    err = capsys.readouterr().err
    assert err.count("lacks authorityInfoAccess OCSP;URI:http://ocsp.example.com:8888") == 5, err
    assert not (out / "nodes" / "n1" / "node.crt").exists()


def test_csr_prints_the_import_line_with_every_path_quoted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Review 14: `Then: crdb-certs import …` named --config and --out unquoted: a folder named
    `x y;$(touch OWN)`, pasted, ran `touch OWN`. Split as the shell would, each path comes back whole."""
    import shlex

    config = write_spec(tmp_path, 'key_type = "ec"\n[[clients]]\nuser = "root"\n', name="c f;g.toml")
    out = tmp_path / "x y;$(touch OWN)"
    capsys.readouterr()
    assert crdb("csr", "--config", config, "--out", out) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("Then: "))
    argv = shlex.split(line.removeprefix("Then: ").replace("<that folder>", "returned"))
    assert argv == ["crdb-certs", "import", "returned", "--config", str(config), "--out", str(out)]
