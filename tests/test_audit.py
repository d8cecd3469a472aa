"""`crdb-certs audit`: clean directories audit clean, the docs' recipe gives only its known notes, and each
broken directory (a good one with exactly one thing broken, by hand, with plain openssl) is caught — with
the right file named and nothing else reported.

Every audit here runs through the command line with --format json, and every output is validated against
the schema kept in the package (orchestrator/audit.schema.json)."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import pkgutil
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from orchestrator import audit, auditing
from tests import handmade
from tests.conftest import FIXTURES, crdb, no_hang, write_spec
from tests.handmade import CLIENT_EXT, NODE_EXT

Found = set[tuple[str, str, str | None]]  # (severity, code, file)
SCHEMA = audit.schema()
IS_ROOT = os.getuid() == 0


def run_audit(folder: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    status = crdb("audit", folder, "--format", "json", *extra)
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    jsonschema.validate(data, SCHEMA)
    assert data["ok"] == (status == 0)
    assert data["summary"]["error"] == sum(f["severity"] == "error" for f in data["findings"])
    return status, data


def findings(data: dict[str, Any], *severities: str) -> Found:
    wanted = severities or ("error", "warning", "info")
    return {(f["severity"], f["code"], f["file"]) for f in data["findings"] if f["severity"] in wanted}


# ------------------------------------------------------------------------------------------- fixtures


SPLIT_SPEC = """\
profile = "secure"
layout = "{layout}"

[[nodes]]
name = "node1"
hosts = ["localhost", "127.0.0.1"]

[[clients]]
user = "root"
"""

DOCS_SPEC = """\
profile = "docs"
layout = "standard"

[[nodes]]
name = "node1"
hosts = ["node1.example.com", "localhost", "127.0.0.1"]

[[clients]]
user = "maxroach"

[[clients]]
user = "root"
"""


def _issue(factory: pytest.TempPathFactory, name: str, text: str) -> Path:
    out = factory.mktemp(name)
    spec = write_spec(factory.mktemp(f"{name}-spec"), text)
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    return out


@pytest.fixture(scope="module")
def split_ca_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _issue(tmp_path_factory, "split-ca", SPLIT_SPEC.format(layout="split-ca"))


@pytest.fixture(scope="module")
def split_node_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _issue(tmp_path_factory, "split-node", SPLIT_SPEC.format(layout="split-node"))


@pytest.fixture(scope="module")
def docs_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _issue(tmp_path_factory, "docs", DOCS_SPEC)


@pytest.fixture(scope="module")
def openssl_recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The docs' v26.3 page followed by hand: its configs and its commands, placeholders filled in."""
    work = tmp_path_factory.mktemp("recipe")
    docs = FIXTURES / "docs" / "v26.3"
    values = {
        "<node-hostname>": "node1",
        "<node-domain>": "node1.example.com",
        "<IP Address>": "127.0.0.1",
        "<username_1>": "maxroach",
        "<username_2>": "bob",
    }

    def fill(text: str) -> str:
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        return text

    for name in ("ca.cnf", "node.cnf"):
        (work / name).write_text(fill((docs / name).read_text()))
    script = fill((docs / "commands.sh").read_text())
    # The page uses client.cnf for each user; for the first one its content is client.first-user.cnf.
    first, others = (
        fill((docs / "client.first-user.cnf").read_text()),
        fill((docs / "client.cnf").read_text()),
    )
    script = script.replace("# first user", f"cat > client.cnf <<'EOF'\n{first}EOF")
    script = script.replace("# other users", f"cat > client.cnf <<'EOF'\n{others}EOF")
    # Not run: `cockroach start`, and the page's `… | grep CN=` checks (OpenSSL 3 prints `CN = x`).
    lines = [
        line for line in script.splitlines() if not line.startswith("cockroach ") and "| grep" not in line
    ]
    lines.append("rm -f certs/*.pem")
    subprocess.run(["bash", "-e"], input="\n".join(lines) + "\n", text=True, cwd=work, check=True)
    return work


@dataclass
class Dir:
    """A copy of a good certs directory to break, and the CA key(s) that made it."""

    certs: Path
    ca_key: Path
    client_ca_key: Path | None = None

    @property
    def ca(self) -> Path:
        return self.certs / "ca.crt"


def copy_of(pki: Path, into: Path) -> Dir:
    certs = into / "certs"
    shutil.copytree(pki / "certs", certs)  # copy2: modes kept
    safe = pki / "my-safe-directory"
    client_ca_key = safe / "ca-client.key"
    return Dir(certs, safe / "ca.key", client_ca_key if client_ca_key.exists() else None)


# ------------------------------------------------------------------------------- clean directories


def test_every_directory_crdb_certs_makes_audits_clean(
    default_pki: Path,
    cluster_pki: Path,
    split_node_pki: Path,
    split_ca_pki: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folders = [
        default_pki / "certs",
        default_pki / "nodes" / "node1",
        cluster_pki / "certs",
        *(cluster_pki / "nodes" / n for n in ("node1", "node2", "node3")),
        split_node_pki / "certs",
        split_node_pki / "nodes" / "node1",
        split_ca_pki / "certs",
        split_ca_pki / "nodes" / "node1",
    ]
    for folder in folders:
        status, data = run_audit(folder, capsys)
        assert (status, data["findings"]) == (0, []), folder
        assert data["key_permission_check"] == "enforced"


def test_the_docs_profile_gets_only_the_docs_known_notes(
    docs_pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, data = run_audit(docs_pki / "certs", capsys)
    assert status == 0
    assert findings(data) == {
        # The page's node.crt has no CN: it relies on --cert-principal-map=<node-domain>:node.
        ("info", "node-principal", "node.crt"),
        # The page gives the first user's certificate DNS:root.
        ("warning", "client-extra-principal", "client.maxroach.crt"),
    }
    note = next(f for f in data["findings"] if f["code"] == "node-principal")
    assert "--cert-principal-map=node1.example.com:node" in note["fix"]
    status, data = run_audit(docs_pki / "nodes" / "node1", capsys)
    assert (status, findings(data)) == (0, {("info", "node-principal", "node.crt")})


def test_the_docs_recipe_run_by_hand_gets_the_same_notes(
    openssl_recipe: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    certs = openssl_recipe / "certs"
    assert {p.name for p in certs.iterdir()} == {
        "ca.crt",
        "node.crt",
        "node.key",
        "client.maxroach.crt",
        "client.maxroach.key",
        "client.bob.crt",
        "client.bob.key",
    }
    status, data = run_audit(certs, capsys)
    assert status == 0
    assert findings(data) == {
        ("info", "node-principal", "node.crt"),
        ("warning", "client-extra-principal", "client.maxroach.crt"),
    }
    # With the page's own principal map the node note goes away.
    status, data = run_audit(certs, capsys, "--cert-principal-map", "node1.example.com:node")
    assert findings(data) == {("warning", "client-extra-principal", "client.maxroach.crt")}


# ------------------------------------------------------------------------------- broken directories

Breaker = Callable[[Dir], object]


def chmod(name: str, mode: int) -> Breaker:
    return lambda d: (d.certs / name).chmod(mode)


def remove(*names: str) -> Breaker:
    def breaker(d: Dir) -> None:
        for name in names:
            (d.certs / name).unlink()

    return breaker


def swap_keys(a: str, b: str) -> Breaker:
    def breaker(d: Dir) -> None:
        tmp = d.certs / "swap.tmp"
        (d.certs / a).rename(tmp)
        (d.certs / b).rename(d.certs / a)
        tmp.rename(d.certs / b)

    return breaker


def copy_ca_key(name: str) -> Breaker:
    return lambda d: shutil.copy(d.ca_key, d.certs / name)


def copy(src: str, dst: str) -> Breaker:
    return lambda d: shutil.copy2(d.certs / src, d.certs / dst)


def copy_pair(user: str, as_user: str) -> Breaker:
    def breaker(d: Dir) -> None:
        shutil.copy2(d.certs / f"client.{user}.crt", d.certs / f"client.{as_user}.crt")
        shutil.copy2(d.certs / f"client.{user}.key", d.certs / f"client.{as_user}.key")

    return breaker


def write(name: str, text: str, mode: int = 0o400) -> Breaker:
    def breaker(d: Dir) -> None:
        path = d.certs / name
        path.unlink(missing_ok=True)
        path.write_text(text)
        path.chmod(mode)

    return breaker


def resign(name: str, subject: str, ext: str, by: str = "ca", **kw: Any) -> Breaker:
    """Issue `name` again for its own key, with plain openssl and the given CA's key."""

    def breaker(d: Dir) -> None:
        ca_cert, ca_key = (d.ca, d.ca_key) if by == "ca" else (d.certs / "ca-client.crt", d.client_ca_key)
        assert ca_key is not None
        key = d.certs / name.replace(".crt", ".key")
        handmade.sign(d.certs / name, key, ca_cert, ca_key, subject, ext, **kw)

    return breaker


def other_ca_signs(name: str, subject: str, ext: str) -> Breaker:
    def breaker(d: Dir) -> None:
        ca_cert, ca_key = handmade.make_ca(d.certs.parent)
        key = d.certs / name.replace(".crt", ".key")
        handmade.sign(d.certs / name, key, ca_cert, ca_key, subject, ext)

    return breaker


def new_key_and_cert(name: str, bits: int, subject: str, ext: str) -> Breaker:
    def breaker(d: Dir) -> None:
        key = d.certs / name.replace(".crt", ".key")
        key.unlink()
        handmade.genrsa(key, bits)
        handmade.sign(d.certs / name, key, d.ca, d.ca_key, subject, ext)

    return breaker


def reissue_ca(ext: str) -> Breaker:
    """ca.crt again from the same key and subject, with other extensions (leaves still verify)."""
    return lambda d: handmade.self_signed(d.ca, d.ca_key, ext=ext)


def ui_cert(ext: str, key_too: bool = True) -> Breaker:
    def breaker(d: Dir) -> None:
        shutil.copy2(d.certs / "node.key", d.certs / "ui.key")
        handmade.sign(d.certs / "ui.crt", d.certs / "ui.key", d.ca, d.ca_key, "/O=Cockroach/CN=ui", ext)
        if not key_too:
            (d.certs / "ui.key").unlink()

    return breaker


def both(*breakers: Breaker) -> Breaker:
    def breaker(d: Dir) -> None:
        for b in breakers:
            b(d)

    return breaker


def _utc(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).strftime("%Y%m%d%H%M%SZ")


NODE = "/O=Cockroach/CN=node"
ROOT = "/O=Cockroach/CN=root"
UI_EXT = "extendedKeyUsage = serverAuth\nsubjectAltName = DNS:localhost\n"


@dataclass(frozen=True)
class Broken:
    id: str
    breaker: Breaker
    errors: set[tuple[str, str | None]]  # (code, file): exactly these errors
    base: str = "default"  # default: `make certs`' certs/; split-ca: certs/ of a split-ca PKI


BROKEN = [
    # key files
    Broken("node key 0644", chmod("node.key", 0o644), {("key-permissions", "node.key")}),
    Broken("client key 0604", chmod("client.root.key", 0o604), {("key-permissions", "client.root.key")}),
    Broken("node key 0750", chmod("node.key", 0o750), {("key-permissions", "node.key")}),
    Broken("node key missing", remove("node.key"), {("key-missing", "node.key")}),
    Broken("client key missing", remove("client.root.key"), {("key-missing", "client.root.key")}),
    Broken("node key is a folder", lambda d: _folder(d, "node.key"), {("key-not-regular", "node.key")}),
    Broken("node key is not a key", write("node.key", "not a key\n"), {("key-unreadable", "node.key")}),
    Broken(
        "keys swapped",
        swap_keys("node.key", "client.root.key"),
        {("key-mismatch", "node.key"), ("key-mismatch", "client.root.key")},
    ),
    # who can swap what a node trusts: CockroachDB checks only the keys, the audit also the rest
    Broken("certs dir 0777", lambda d: d.certs.chmod(0o777), {("dir-permissions", None)}),
    Broken("certs dir 0770", lambda d: d.certs.chmod(0o770), {("dir-permissions", None)}),
    Broken("ca.crt 0666", chmod("ca.crt", 0o666), {("cert-permissions", "ca.crt")}),
    Broken("node.crt 0664", chmod("node.crt", 0o664), {("cert-permissions", "node.crt")}),
    # a CA key in the directory, by name or by content
    Broken("ca.key copied in", copy_ca_key("ca.key"), {("ca-key", "ca.key")}),
    Broken("CA key under another name", copy_ca_key("backup.pem"), {("ca-key", "backup.pem")}),
    Broken(
        "CA key as node.key", copy_ca_key("node.key"), {("ca-key", "node.key"), ("key-mismatch", "node.key")}
    ),
    Broken("a file named ca-ui.key", write("ca-ui.key", "whatever\n"), {("ca-key", "ca-ui.key")}),
    # names CockroachDB refuses
    Broken("upper-case user", copy_pair("root", "Alice"), {("name-user-case", "client.Alice.crt")}),
    Broken(
        "tenant id abc",
        copy("client.root.crt", "client-tenant.abc.crt"),
        {("name-tenant-id", "client-tenant.abc.crt")},
    ),
    Broken(
        "tenant signing x",
        copy("client.root.crt", "tenant-signing.x.crt"),
        {("name-tenant-id", "tenant-signing.x.crt")},
    ),
    # certificate files
    Broken("ca.crt missing", remove("ca.crt"), {("ca-missing", "ca.crt")}),
    Broken("empty node.crt", write("node.crt", "", 0o644), {("cert-unreadable", "node.crt")}),
    Broken(
        "key inside node.crt",
        lambda d: _append(d.certs / "node.crt", d.certs / "node.key"),
        {("cert-unreadable", "node.crt")},
    ),
    # chains
    Broken(
        "client signed by another CA",
        other_ca_signs("client.root.crt", ROOT, CLIENT_EXT),
        {("chain", "client.root.crt")},
    ),
    Broken("node signed by another CA", other_ca_signs("node.crt", NODE, NODE_EXT), {("chain", "node.crt")}),
    Broken(
        "split-ca without client.node.crt",
        remove("client.node.crt", "client.node.key"),
        {("layout-client-node", "client.node.crt")},
        base="split-ca",
    ),
    Broken(
        "client.node.crt signed by ca.crt",
        resign("client.node.crt", NODE, CLIENT_EXT),
        {("chain", "client.node.crt")},
        base="split-ca",
    ),
    Broken(
        "client signed by ca.crt, not ca-client.crt",
        resign("client.root.crt", ROOT, CLIENT_EXT),
        {("chain", "client.root.crt")},
        base="split-ca",
    ),
    Broken(
        "node signed by the client CA",
        resign("node.crt", NODE, NODE_EXT, by="ca-client"),
        {("chain", "node.crt")},
        base="split-ca",
    ),
    # content
    Broken(
        "root's pair as maxroach's",
        copy_pair("root", "maxroach"),
        {("client-principal", "client.maxroach.crt")},
    ),
    Broken(
        "node.crt serverAuth only",
        resign("node.crt", NODE, NODE_EXT.replace("serverAuth,clientAuth", "serverAuth")),
        {("eku", "node.crt")},
    ),
    Broken(
        "client.crt serverAuth",
        resign("client.root.crt", ROOT, CLIENT_EXT.replace("clientAuth", "serverAuth")),
        {("eku", "client.root.crt")},
    ),
    Broken("ui.crt clientAuth", ui_cert(UI_EXT.replace("serverAuth", "clientAuth")), {("eku", "ui.crt")}),
    Broken("ui.crt without ui.key", ui_cert(UI_EXT, key_too=False), {("key-missing", "ui.key")}),
    Broken(
        "node.crt without SANs",
        resign("node.crt", NODE, NODE_EXT.replace("subjectAltName = DNS:localhost,IP:127.0.0.1\n", "")),
        {("san-missing", "node.crt")},
    ),
    Broken(
        "ca.crt not a CA",
        reissue_ca("basicConstraints = critical,CA:FALSE\nsubjectKeyIdentifier = hash\n"),
        {("ca-constraints", "ca.crt")},
    ),
    Broken(
        "ca.crt may not sign",
        reissue_ca("basicConstraints = critical,CA:TRUE\nkeyUsage = critical,digitalSignature\n"),
        {("ca-constraints", "ca.crt")},
    ),
    Broken(
        "node.crt is a CA",
        resign("node.crt", NODE, NODE_EXT.replace("CA:FALSE", "CA:TRUE")),
        {("leaf-is-ca", "node.crt")},
    ),
    Broken(
        "node.crt expired",
        resign("node.crt", NODE, NODE_EXT, start="20200101000000Z", end="20210101000000Z"),
        {("expired", "node.crt")},
    ),
    Broken(
        "node.crt not yet valid",
        resign("node.crt", NODE, NODE_EXT, start=_utc(timedelta(days=2)), end=_utc(timedelta(days=300))),
        {("not-yet-valid", "node.crt")},
    ),
    Broken(
        "RSA 1024",
        new_key_and_cert("client.root.crt", 1024, ROOT, CLIENT_EXT),
        {("weak-key", "client.root.crt")},
    ),
    Broken(
        "SHA-1",
        resign("client.root.crt", ROOT, CLIENT_EXT, md="sha1"),
        {("weak-signature", "client.root.crt")},
    ),
]


def _folder(d: Dir, name: str) -> None:
    (d.certs / name).unlink()
    (d.certs / name).mkdir()


def _append(target: Path, source: Path) -> None:
    with target.open("ab") as f:
        f.write(source.read_bytes())


@pytest.mark.parametrize("case", BROKEN, ids=[b.id for b in BROKEN])
def test_each_broken_directory_is_caught_with_its_file_and_nothing_else(
    case: Broken,
    default_pki: Path,
    split_ca_pki: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    d = copy_of(default_pki if case.base == "default" else split_ca_pki, tmp_path)
    before = run_audit(d.certs, capsys)
    assert before[0] == 0 and before[1]["findings"] == [], "the copy must be good before it is broken"
    case.breaker(d)
    status, data = run_audit(d.certs, capsys)
    assert status == 1
    assert {(code, file) for _, code, file in findings(data, "error")} == case.errors
    assert findings(data, "warning") == set(), data["findings"]
    for f in data["findings"]:
        assert f["message"] and f["fix"]


def test_the_env_value_go_cannot_parse_is_an_error(
    default_pki: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    d = copy_of(default_pki, tmp_path)
    monkeypatch.setenv("COCKROACH_SKIP_KEY_PERMISSION_CHECK", "yes")
    status, data = run_audit(d.certs, capsys)
    assert (status, findings(data)) == (1, {("error", "key-check-env", None)})


# ----------------------------------------------------------------------- warnings and notes only


@dataclass(frozen=True)
class Noted:
    id: str
    breaker: Breaker
    found: Found  # exactly these findings, none of them an error
    base: str = "default"


NOTED = [
    Noted(
        "sticky world-writable dir", lambda d: d.certs.chmod(0o1777), {("warning", "dir-permissions", None)}
    ),
    Noted("unknown prefix", copy("node.crt", "foo.crt"), {("warning", "name-ignored", "foo.crt")}),
    Noted(
        "old CA kept as ca.old.crt", copy("ca.crt", "ca.old.crt"), {("warning", "name-ignored", "ca.old.crt")}
    ),
    Noted("client.crt", copy("client.root.crt", "client.crt"), {("warning", "name-ignored", "client.crt")}),
    Noted(
        "openssl's leftovers",
        both(copy("node.crt", "01.pem"), write("node.csr", "csr\n", 0o644)),
        {("info", "file-ignored", "01.pem"), ("info", "file-ignored", "node.csr")},
    ),
    Noted("a sub-directory", lambda d: (d.certs / "old").mkdir(), {("info", "file-ignored", "old")}),
    Noted(
        "a stray key",
        lambda d: handmade.genrsa(d.certs / "client.bob.key", 1024),
        {("warning", "key-orphan", "client.bob.key")},
    ),
    Noted(
        "node.crt expires in 10 days",
        resign("node.crt", NODE, NODE_EXT, end=_utc(timedelta(days=10))),
        {("warning", "expires-soon", "node.crt")},
    ),
    Noted(
        "node.crt outlives its CA",
        resign("node.crt", NODE, NODE_EXT, days=5000),
        {("warning", "outlives-ca", "node.crt")},
    ),
    Noted(
        # Issuer + serial is what must be unique: two CAs may each count from 01 (the docs' split layouts).
        "serial 01 from both CAs",
        both(
            resign("node.crt", NODE, NODE_EXT.replace("serverAuth,clientAuth", "serverAuth"), serial="01"),
            resign("client.root.crt", ROOT, CLIENT_EXT, by="ca-client", serial="01"),
        ),
        set(),
        base="split-ca",
    ),
    Noted(
        "serial 01 twice from one CA",
        both(
            resign("node.crt", NODE, NODE_EXT, serial="01"),
            resign("client.root.crt", ROOT, CLIENT_EXT, serial="01"),
        ),
        {("warning", "serial-reused", "client.root.crt")},
    ),
    Noted(
        "node.crt without CN=node (the docs' way)",
        resign("node.crt", "/O=Cockroach", NODE_EXT),
        {("info", "node-principal", "node.crt")},
    ),
    Noted(
        "client with an extra DNS principal",
        resign("client.root.crt", ROOT, CLIENT_EXT + "subjectAltName = DNS:admin\n"),
        {("warning", "client-extra-principal", "client.root.crt")},
    ),
    Noted(
        "user name CockroachDB would not create",
        lambda d: _pair_for(d, "a@b"),
        {("warning", "name-user-invalid", "client.a@b.crt")},
    ),
    Noted("ui.crt from elsewhere", lambda d: _external_ui(d), {("warning", "ui-external", "ui.crt")}),
    Noted("key as a symlink", lambda d: _symlinked_key(d), set()),
    Noted("ca.crt bundle of two CAs", lambda d: _ca_bundle(d), set()),
]


def _pair_for(d: Dir, user: str) -> None:
    key = shutil.copy2(d.certs / "client.root.key", d.certs / f"client.{user}.key")
    handmade.sign(
        d.certs / f"client.{user}.crt", Path(key), d.ca, d.ca_key, f"/O=Cockroach/CN={user}", CLIENT_EXT
    )


def _external_ui(d: Dir) -> None:
    other, other_key = handmade.make_ca(d.certs.parent)
    shutil.copy2(d.certs / "node.key", d.certs / "ui.key")
    handmade.sign(d.certs / "ui.crt", d.certs / "ui.key", other, other_key, "/O=Example/CN=ui", UI_EXT)


def _symlinked_key(d: Dir) -> None:
    elsewhere = d.certs.parent / "keys" / "node.key"
    elsewhere.parent.mkdir()
    (d.certs / "node.key").rename(elsewhere)
    (d.certs / "node.key").symlink_to(elsewhere)


def _ca_bundle(d: Dir) -> None:
    # CA rotation: the new CA first, the old one kept so that its certificates still verify.
    new_ca, _ = handmade.make_ca(d.certs.parent, "new-ca")
    text = new_ca.read_text() + d.ca.read_text()
    d.ca.write_text(text)


@pytest.mark.parametrize("case", NOTED, ids=[n.id for n in NOTED])
def test_warnings_and_notes_leave_the_exit_status_zero(
    case: Noted,
    default_pki: Path,
    split_ca_pki: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    d = copy_of(default_pki if case.base == "default" else split_ca_pki, tmp_path)
    case.breaker(d)
    status, data = run_audit(d.certs, capsys)
    assert (status, findings(data)) == (0, case.found)


def test_the_permission_check_can_be_switched_off_as_cockroachdb_reads_it(
    default_pki: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    d = copy_of(default_pki, tmp_path)
    (d.certs / "node.key").chmod(0o644)
    for value in ("1", "t", "T", "TRUE", "true", "True"):
        monkeypatch.setenv("COCKROACH_SKIP_KEY_PERMISSION_CHECK", value)
        status, data = run_audit(d.certs, capsys)
        assert status == 0, value
        assert data["key_permission_check"] == "skipped"
        assert findings(data) == {
            ("warning", "key-permissions-skipped", "node.key"),
            ("info", "key-check-env", None),
        }
    for value in ("0", "f", "false", "FALSE"):
        monkeypatch.setenv("COCKROACH_SKIP_KEY_PERMISSION_CHECK", value)
        status, data = run_audit(d.certs, capsys)
        assert (status, findings(data)) == (1, {("error", "key-permissions", "node.key")}), value


@pytest.mark.skipif(not IS_ROOT, reason="needs to own keys as uid 0 and change their group")
@pytest.mark.parametrize(
    ("mode", "own_group", "allowed"),
    [
        (0o640, True, True),  # root-owned, in the process's group: up to 0740
        (0o740, True, True),
        (0o440, True, True),
        (0o750, True, False),
        (0o644, True, False),
        (0o660, True, False),
        (0o640, False, False),  # another group: up to 0700 only
        (0o600, False, True),
        (0o700, False, True),
    ],
)
def test_key_permissions_follow_cockroachdbs_exact_rule(
    mode: int,
    own_group: bool,
    allowed: bool,
    default_pki: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    d = copy_of(default_pki, tmp_path)
    key = d.certs / "client.root.key"
    os.chown(key, 0, os.getgid() if own_group else os.getgid() + 4242)
    key.chmod(mode)
    status, data = run_audit(d.certs, capsys)
    if allowed:
        assert (status, data["findings"]) == (0, [])
    else:
        assert (status, findings(data)) == (1, {("error", "key-permissions", "client.root.key")})
        message = data["findings"][0]["message"]
        limit = "-rwxr-----" if own_group else "-rwx------"
        assert message.endswith(f"exceeds {limit}"), message


@pytest.mark.skipif(not IS_ROOT, reason="needs to give a file to another user")
def test_a_ca_crt_anyone_can_swap_is_an_error_and_one_owned_by_another_user_a_warning(
    default_pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A node folder at 0777 holding a 0666 ca.crt owned by another user: anyone can choose the CA the node
    trusts. CockroachDB itself starts with it (it checks only the keys' modes), so only the audit can say."""
    d = copy_of(default_pki, tmp_path)
    os.chown(d.ca, 65534, 65534)  # nobody
    status, data = run_audit(d.certs, capsys)
    assert (status, findings(data)) == (0, {("warning", "cert-owner", "ca.crt")})
    assert "owned by nobody, not by the directory's owner root" in data["findings"][0]["message"]
    d.ca.chmod(0o666)
    d.certs.chmod(0o777)
    status, data = run_audit(d.certs, capsys)
    assert (status, findings(data)) == (
        1,
        {("error", "dir-permissions", None), ("error", "cert-permissions", "ca.crt")},
    )


# ------------------------------------------------------------------------------ text output, usage


def test_text_output_names_the_file_and_the_fix(
    default_pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = copy_of(default_pki, tmp_path)
    (d.certs / "node.key").chmod(0o644)
    capsys.readouterr()
    assert crdb("audit", d.certs) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{d.certs}: 1 error, 0 warnings, 0 notes"
    assert out[1].startswith(f"error    node.key: key file {d.certs}/node.key has permissions -rw-r--r--")
    assert out[2].strip() == f"fix: chmod 600 {d.certs}/node.key"


def test_a_missing_directory_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert crdb("audit", tmp_path / "nope") == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'nope'}: no such directory"
    (tmp_path / "file").write_text("")
    assert crdb("audit", tmp_path / "file", "--format", "json") == 2
    assert crdb("audit", tmp_path, "--cert-principal-map", "nocolon") == 2
    assert crdb("audit", tmp_path, "--format", "yaml") == 2


def test_an_empty_directory_has_no_ca(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, data = run_audit(tmp_path, capsys)
    assert (status, findings(data)) == (1, {("error", "ca-missing", "ca.crt")})


def test_the_schema_documents_every_code_and_is_shipped_in_the_package() -> None:
    schema_file = Path(audit.__file__).parent / "audit.schema.json"
    assert json.loads(schema_file.read_text()) == SCHEMA
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$defs"]["finding"]["properties"]["code"]["enum"] == list(audit.CODES)
    # The schema refuses what the audit must never print.
    bad = {"version": 1, "directory": ".", "ok": True, "key_permission_check": "enforced"}
    bad |= {"summary": {"error": 0, "warning": 0, "info": 0}}
    bad |= {"findings": [{"severity": "fatal", "code": "chain", "file": None, "message": "m", "fix": "f"}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMA)


def test_the_schema_names_each_code_as_its_group_of_rules_declares_it() -> None:
    """Each module of orchestrator/auditing/ declares the codes its rules emit, beside them; audit.CODES
    is their union (no code in two groups), and the schema's enum and description say exactly that."""
    found = (
        importlib.import_module(f"{auditing.__name__}.{m.name}")
        for m in pkgutil.iter_modules(auditing.__path__)
    )
    groups = {module: module.CODES for module in found if hasattr(module, "CODES")}
    assert len(groups) >= 6
    assert sum(len(codes) for codes in groups.values()) == len(audit.CODES)
    assert {c: d for codes in groups.values() for c, d in codes.items()} == audit.CODES
    for module, codes in groups.items():
        source = inspect.getsource(module)
        for code in codes:
            assert source.count(f'"{code}"') >= 2, f"{module.__name__} declares {code} but never emits it"
    code = SCHEMA["$defs"]["finding"]["properties"]["code"]
    assert code["enum"] == list(audit.CODES)
    described = "; ".join(f"{c}: {d}" for c, d in audit.CODES.items())
    assert code["description"] == f"Stable identifier of the check. {described}"


# ---------------------------------------------------------------------------------- issue audits


def test_issue_fails_when_a_directory_it_produced_has_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path / "spec", SPLIT_SPEC.format(layout="standard"))
    out = tmp_path / "out"
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    # A key no step of the run reads (a client's): only the audit at the end can see its mode.
    (out / "certs" / "client.root.key").chmod(0o644)
    capsys.readouterr()
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 1
    err = capsys.readouterr().err
    assert f"{out}/certs/client.root.key has permissions -rw-r--r--" in err
    assert err.strip().splitlines()[-1].startswith("error: audit: CockroachDB would refuse certs (1 error)")
    (out / "certs" / "client.root.key").chmod(0o400)
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0


@pytest.mark.parametrize(
    "text",
    [
        DOCS_SPEC.replace('layout = "standard"', 'layout = "split-ca"'),
        DOCS_SPEC + '[ui]\nhosts = ["localhost"]\nissuer = "ui-ca"\n',
    ],
    ids=["split-ca", "ui-ca"],
)
def test_a_docs_profile_with_two_cas_warns_of_no_reused_serial(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    # Each CA's serial.txt counts from 01, as the docs' recipe does: legitimate, since the issuers differ.
    spec = write_spec(tmp_path / "spec", text)
    assert crdb("issue", "--config", spec, "--out", tmp_path / "out") == 0
    captured = capsys.readouterr()
    assert "serial" not in captured.out + captured.err


def test_issue_refuses_to_copy_a_key_others_can_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path / "spec", SPLIT_SPEC.format(layout="standard"))
    out = tmp_path / "out"
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    (out / "nodes" / "node1" / "node.key").chmod(0o644)
    (out / "certs" / "node.key").unlink()  # so the run copies it into certs/ again
    capsys.readouterr()
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 2
    assert "node.key: readable by others (mode 0644)" in capsys.readouterr().err
    assert not (out / "certs" / "node.key").exists(), "nothing was copied"


# --------------------------------------------------------------------- what is not a certificate file


def test_a_fifo_is_a_finding_not_a_hang(
    default_pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 11: a FIFO in a certs directory hung the audit (any name) while it waited for a writer."""
    d = copy_of(default_pki, tmp_path)
    os.mkfifo(d.certs / "pipe")
    os.mkfifo(d.certs / "client.bob.crt")
    with no_hang():
        status, data = run_audit(d.certs, capsys)
    assert status == 1
    assert findings(data) == {
        ("warning", "file-not-regular", "pipe"),
        ("error", "cert-unreadable", "client.bob.crt"),
    }


def test_a_file_name_that_is_not_utf8_is_printed_escaped(
    default_pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 11: a name with bytes that are not UTF-8 made the report unprintable (a traceback)."""
    d = copy_of(default_pki, tmp_path)
    (d.certs / os.fsdecode(b"notes-\xff.txt")).write_text("")
    (d.certs / os.fsdecode(b"\xfe.crt")).write_text("")
    status, data = run_audit(d.certs, capsys)
    assert status == 0
    assert findings(data) == {
        ("info", "file-ignored", "notes-\\xff.txt"),
        ("warning", "name-ignored", "\\xfe.crt"),
    }
    assert crdb("audit", d.certs) == 0
    assert "notes-\\xff.txt: CockroachDB ignores it" in capsys.readouterr().out


@pytest.mark.skipif(not IS_ROOT, reason="needs root to make folders another user cannot enter")
def test_an_unprivileged_audit_or_check_of_the_tools_private_folders_is_one_line(
    default_pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 11: `audit`/`check` by a user who may not enter the 0700 folders crdb-certs makes ended in a
    PermissionError traceback. Run here with the effective user `nobody` (the interpreter lives under
    /root, so a child process of another user could not even start it)."""
    import rich.console  # `list` imports them lazily; `nobody` could not read them later
    import rich.table

    assert rich.console and rich.table
    "".encode("unicode_escape")  # the codec the error message uses, also loaded lazily
    top = Path(tempfile.mkdtemp(prefix="crdb-certs-unprivileged-", dir="/tmp"))
    shutil.copytree(default_pki, top / "out", symlinks=True)
    for folder in (top, top / "out"):
        folder.chmod(0o755)  # nobody may come this far: certs/ and nodes/ stay 0700
    capsys.readouterr()
    commands = [
        ("audit", top / "out" / "nodes" / "node1"),
        ("list", top / "out" / "nodes" / "node1"),
        ("check", top / "out"),
        ("check", top / "out" / "nodes"),
        ("check", top / "out" / "nodes" / "node1"),  # not "does not exist": it cannot be reached
    ]
    results = []
    os.setegid(65534)
    os.seteuid(65534)
    try:
        for command in commands:
            results.append((crdb(*command), capsys.readouterr().err))
    finally:
        os.seteuid(0)
        os.setegid(0)
        shutil.rmtree(top)
    for command, (status, err) in zip(commands, results, strict=True):
        assert status == 2 and err.count("\n") == 1, (command, err)
        assert err.startswith("error: ") and "Permission denied" in err, (command, err)


def revoked_folder(tmp_path: Path) -> tuple[Path, Path]:
    """An EC folder whose maxroach was revoked; the old certificate is put back into certs/."""
    spec = write_spec(
        tmp_path,
        'key_type = "ec"\n[[nodes]]\nname = "a"\nhosts = ["a.example.com"]\n[[nodes]]\nname = "b"\n'
        'hosts = ["b.example.com"]\n[[clients]]\nuser = "root"\n[[clients]]\nuser = "maxroach"\n',
    )
    out = tmp_path / "out"
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    assert crdb("revoke", "--out", out, "--clients", "maxroach") == 0
    for kept in out.glob("backup/*/certs/client.maxroach.*"):
        shutil.copy2(kept, out / "certs" / kept.name)
    return out, out / "crl" / "ca.crl"


def test_a_certificate_revoked_in_the_folders_crl_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, crl = revoked_folder(tmp_path)
    status, data = run_audit(out / "certs", capsys)
    assert status == 1
    (found,) = [f for f in data["findings"] if f["code"] == "revoked"]
    assert found["file"] == "client.maxroach.crt" and str(crl) in found["message"]
    assert "crdb-certs revoke --serial" in found["fix"]
    # Elsewhere, with the CRL given: the same finding; a node's folder finds ../../crl itself.
    elsewhere = tmp_path / "copy"
    shutil.copytree(out / "certs", elsewhere)
    assert run_audit(elsewhere, capsys)[0] == 0
    status, data = run_audit(elsewhere, capsys, "--crl", str(crl))
    assert status == 1 and [f["code"] for f in data["findings"]].count("revoked") == 1
    assert run_audit(out / "nodes" / "a", capsys)[0] == 0


def test_ocsp_urls_that_differ_in_one_directory_are_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = 'key_type = "ec"\n[[nodes]]\nname = "a"\nhosts = ["a.example.com"]\n[[clients]]\nuser = "root"\n'
    out = tmp_path / "out"
    assert crdb("issue", "--config", write_spec(tmp_path, text), "--out", out, "--quiet") == 0
    with_url = write_spec(tmp_path, text + '[ocsp]\nurl = "http://ocsp.example.com"\n', "url.toml")
    assert crdb("issue", "--config", with_url, "--out", out, "--quiet", "--reissue") == 0
    assert run_audit(out / "certs", capsys)[0] == 0
    for kept in out.glob("backup/*/certs/client.root.*"):  # the old root certificate, without the URL
        (out / "certs" / kept.name).unlink()
        shutil.copy2(kept, out / "certs" / kept.name)
    status, data = run_audit(out / "certs", capsys)
    assert status == 0
    (found,) = [f for f in data["findings"] if f["code"] == "ocsp-url-differs"]
    assert found["severity"] == "warning" and "client.root.crt: none" in found["message"]
    assert "node.crt: http://ocsp.example.com" in found["message"]
