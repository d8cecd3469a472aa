"""Day 2: renew, rotate-ca, check, export k8s. Real openssl; the results are read back with `cryptography`
and used by real peers (Python ssl handshakes, PostgreSQL certificate authentication), never by the code
that made them. Keys are EC P-256 (RSA is not the point here, and it is ~100x slower to make)."""

from __future__ import annotations

import base64
import os
import shlex
import shutil
import ssl
import stat
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from orchestrator import duration
from orchestrator.errors import SpecError
from tests.conftest import crdb, write_spec
from tests.peers import Party, PostgresServer, handshake

SPEC = """\
key_type = "ec"
{extra}
[[nodes]]
name = "n1"
hosts = ["localhost", "127.0.0.1"]

[[nodes]]
name = "n2"
hosts = ["localhost", "127.0.0.1"]

[[clients]]
user = "root"
"""

# ------------------------------------------------------------------------------------------ helpers


def certs_of(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def key_of(path: Path) -> PrivateKeyTypes:
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


def public(thing: PrivateKeyTypes | x509.Certificate) -> bytes:
    return thing.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def issued_by(leaf: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        leaf.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def snapshot(out: Path) -> dict[str, bytes]:
    """Every file in the output folder but the lock/staging area, by relative path."""
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in out.rglob("*")
        if p.is_file() and ".crdb-certs" not in p.parts
    }


def issue(tmp_path: Path, extra: str = "", text: str = SPEC) -> tuple[Path, Path]:
    spec = write_spec(tmp_path, text.format(extra=extra))
    out = tmp_path / "out"
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    return spec, out


def node(folder: Path) -> Party:
    return Party(folder / "node.crt", folder / "node.key", folder / "ca.crt")


LEAVES = ("nodes/n1/node.crt", "nodes/n2/node.crt", "certs/client.root.crt")
BUNDLE_KEYS = ("nodes/n1/node.key", "nodes/n2/node.key", "certs/client.root.key")

# -------------------------------------------------------------------------------------------- renew


@pytest.mark.parametrize("command", [("renew",), ("rotate-ca",), ("check",), ("export", "k8s")])
def test_lifecycle_commands_have_help(command: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    assert crdb(*command, "--help") == 0
    assert "Usage: crdb-certs " + " ".join(command) in capsys.readouterr().out


def test_renew_reissues_what_expires_with_new_keys_and_keeps_the_old_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, out = issue(tmp_path, "cert_days = 1")
    before = snapshot(out)
    ca = certs_of(out / "certs/ca.crt")[0]

    # 24 hours left: outside a 12-hour window, so nothing is renewed and nothing is written.
    assert crdb("renew", "--config", spec, "--out", out, "--within", "12h") == 0
    assert "nothing expires within 12 hours" in capsys.readouterr().out
    assert snapshot(out) == before

    assert crdb("renew", "--config", spec, "--out", out) == 0  # default window: 30 days
    printed = capsys.readouterr().out
    assert "pkill -SIGHUP -x cockroach" in printed
    assert (out / "certs/ca.crt").read_bytes() == before["certs/ca.crt"]  # the same CA
    assert (out / "my-safe-directory/ca.key").read_bytes() == before["my-safe-directory/ca.key"]
    old_keys = {public(serialization.load_pem_private_key(before[k], None)) for k in BUNDLE_KEYS}
    for leaf in LEAVES:
        new = certs_of(out / leaf)[0]
        assert new.serial_number != x509.load_pem_x509_certificate(before[leaf]).serial_number
        assert issued_by(new, ca), leaf
        assert public(new) == public(key_of(out / leaf.replace(".crt", ".key")))
    # The old keys are in no certs directory any more, but every one is in the backup, still 0400.
    for key in [*(out / "certs").glob("*.key"), *(out / "nodes").rglob("*.key")]:
        assert public(key_of(key)) not in old_keys, key
    (backup,) = (out / "backup").iterdir()
    for rel in (*LEAVES, *BUNDLE_KEYS):
        assert (backup / rel).read_bytes() == before[rel], rel
    for rel in BUNDLE_KEYS:
        assert stat.S_IMODE((backup / rel).stat().st_mode) == 0o400
    assert stat.S_IMODE((out / "backup").stat().st_mode) == 0o700
    assert not (backup / "my-safe-directory").exists()  # the CA key was not replaced, so not moved

    # Renewed is fresh: issue changes nothing, and the audit of every certs directory is clean.
    assert crdb("issue", "--config", spec, "--out", out, "--check") == 0
    for folder in ("certs", "nodes/n1", "nodes/n2"):
        assert crdb("audit", out / folder) == 0


def test_renew_selects_by_window_or_exactly_by_name_and_can_keep_keys(tmp_path: Path) -> None:
    spec, out = issue(tmp_path, "cert_days = 1")
    # n1 with --keep-keys, under a spec that now asks for a year: only n1 changes, with its own key.
    spec.write_text(SPEC.format(extra="cert_days = 365"))
    before = snapshot(out)
    assert crdb("renew", "--config", spec, "--out", out, "--nodes", "n1", "--keep-keys", "-q") == 0
    after = snapshot(out)
    changed_leaves = {p for p in (*LEAVES, "certs/ca.crt") if after[p] != before[p]}
    assert changed_leaves == {"nodes/n1/node.crt"}
    assert after["nodes/n1/node.key"] == before["nodes/n1/node.key"]  # the same key
    n1 = certs_of(out / "nodes/n1/node.crt")[0]
    assert public(n1) == public(key_of(out / "nodes/n1/node.key"))
    assert n1.not_valid_after_utc - n1.not_valid_before_utc == timedelta(days=365)

    # The window now picks what expires within it (n2 and root: 1 day left), not n1 (a year).
    assert crdb("renew", "--config", spec, "--out", out, "--within", "2d", "-q") == 0
    final = snapshot(out)
    assert final["nodes/n1/node.crt"] == after["nodes/n1/node.crt"]
    assert final["nodes/n2/node.crt"] != after["nodes/n2/node.crt"]
    assert final["certs/client.root.crt"] != after["certs/client.root.crt"]
    assert final["nodes/n2/node.key"] != after["nodes/n2/node.key"]  # new keys by default
    assert len(list((out / "backup").iterdir())) == 2  # one backup folder per run


def test_renew_ui_reissues_the_db_console_certificate_in_every_certs_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, out = issue(tmp_path, '[ui]\nhosts = ["localhost"]\n')
    before = snapshot(out)
    capsys.readouterr()
    assert crdb("renew", "--config", spec, "--out", out, "--ui") == 0
    printed = capsys.readouterr().out
    after = snapshot(out)
    changed = {p for p in after if p in before and after[p] != before[p] and p.endswith((".crt", ".key"))}
    ui_files = {f"{d}/{f}" for d in ("nodes/n1", "nodes/n2") for f in ("ui.crt", "ui.key")}
    assert changed == ui_files  # nothing but the UI pair, wherever it is
    assert after["nodes/n1/ui.crt"] == after["nodes/n2/ui.crt"]
    # ui.key is a server's key: never in the clients' certs/ (which is no node's folder here).
    assert not [p for p in after if p.startswith("certs/ui.")]
    old = x509.load_pem_x509_certificate(before["nodes/n1/ui.crt"])
    new = certs_of(out / "nodes/n1/ui.crt")[0]
    assert new.serial_number != old.serial_number
    assert issued_by(new, certs_of(out / "certs/ca.crt")[0])
    assert public(new) == public(key_of(out / "nodes/n1/ui.key")) != public(old)
    # Every node serves the new certificate to a browser that trusts the CA (no client certificate).
    ui = Party(out / "nodes/n2/ui.crt", out / "nodes/n2/ui.key", out / "nodes/n2/ca.crt")
    browser = Party(None, None, out / "certs/ca.crt")
    assert handshake(ui, browser, "localhost", client_auth=False) == ""
    # Both nodes are told to take their folder: the new ui.crt is in each.
    assert f"copy {out / 'nodes/n1'}/ to n1's" in printed and f"copy {out / 'nodes/n2'}/ to n2's" in printed


def test_renew_ui_of_an_imported_certificate_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, made = issue(tmp_path / "made", '[ui]\nhosts = ["localhost"]\n')
    pair = f'cert = "{made}/nodes/n1/ui.crt"\nkey = "{made}/nodes/n1/ui.key"\n'
    extra = f'[ui]\nhosts = ["localhost"]\nissuer = "import"\n{pair}'
    spec, out = issue(tmp_path, extra)
    before = snapshot(out)
    capsys.readouterr()
    assert crdb("renew", "--config", spec, "--out", out, "--ui") == 2
    err = capsys.readouterr().err
    assert err.startswith('error: --ui: ui.issuer is "import"') and err.count("\n") == 1, err
    assert snapshot(out) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--ui",), "error: --ui: the spec has no [ui] table"),
        (("--within", "2d", "--ui"), "error: --within: not with --nodes/--clients/--ui"),
        (("--nodes", "n9"), 'error: --nodes: "n9" is not a node of the spec (known: n1, n2)'),
        (("--clients", "bob"), 'error: --clients: "bob" is not a client of the spec (known: root)'),
        (("--within", "30"), 'error: --within: "30" is not a duration'),
        (("--within", "2d", "--nodes", "n1"), "error: --within: not with --nodes/--clients"),
    ],
)
def test_renew_usage_errors_are_one_line_and_touch_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    spec, out = issue(tmp_path)
    before = snapshot(out)
    capsys.readouterr()
    assert crdb("renew", "--config", spec, "--out", out, *args) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err
    assert snapshot(out) == before


@pytest.mark.postgres
def test_postgres_accepts_the_renewed_client_certificate(tmp_path: Path) -> None:
    spec, out = issue(tmp_path)
    certs = out / "certs"
    old_cert = (certs / "client.root.crt").read_bytes()
    server = PostgresServer(out / "nodes/n1/node.crt", out / "nodes/n1/node.key", certs / "ca.crt", ["root"])
    try:
        assert crdb("renew", "--config", spec, "--out", out, "--clients", "root", "-q") == 0
        assert (certs / "client.root.crt").read_bytes() != old_cert
        user = server.current_user(
            "root", certs / "client.root.crt", certs / "client.root.key", certs / "ca.crt"
        )
        assert user == "root"
    finally:
        server.stop()


def test_renew_plan_prints_the_commands_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, out = issue(tmp_path)
    before = snapshot(out)
    capsys.readouterr()
    assert crdb("renew", "--config", spec, "--out", out, "--nodes", "n1", "--keep-keys", "--plan") == 0
    printed = capsys.readouterr().out
    assert snapshot(out) == before
    assert "openssl req -new -config requests/node.n1.cnf -key nodes/n1/node.key" in printed
    assert "openssl ca " in printed and "-in requests/node.n1.csr" in printed
    assert "genpkey" not in printed and "-newkey" not in printed  # --keep-keys: no new key
    assert "node.n2" not in printed  # exactly the node asked for
    assert "cp -p --parents" in printed and "nodes/n1/node.crt" in printed  # the backup, as a command
    assert crdb("renew", "--config", spec, "--out", out, "--clients", "root", "--plan") == 0
    printed = capsys.readouterr().out
    assert "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout certs/client.root.key" in printed
    assert 'mv certs/client.root.key "$backup"/certs/' in printed  # openssl cannot write over a 0400 key


# -------------------------------------------------------------------------------------- CA rotation


def test_rotation_keeps_both_cas_trusted_during_the_roll_and_finish_drops_the_old(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, out = issue(tmp_path)
    old_ca = (out / "certs/ca.crt").read_bytes()
    old_ca_key = (out / "my-safe-directory/ca.key").read_bytes()
    old_n2 = tmp_path / "n2-before"  # node n2 as it runs before anything is copied to it
    shutil.copytree(out / "nodes/n2", old_n2)
    capsys.readouterr()

    assert crdb("rotate-ca", "--config", spec, "--out", out) == 0
    printed = capsys.readouterr().out
    assert "1 of 3" in printed and "pkill -SIGHUP -x cockroach" in printed
    assert f"crdb-certs rotate-ca --finish --config {spec} --out {out}" in printed
    # ... and ends with the probe that shows each node took the change (each node's first host).
    assert printed.rstrip().endswith(f"and again: crdb-certs probe localhost:26257 --out {out}")

    # Every CA file: the new CA first, then the old one.
    new_key = key_of(out / "my-safe-directory/ca.key")
    for folder in ("certs", "nodes/n1", "nodes/n2"):
        bundle = certs_of(out / folder / "ca.crt")
        assert len(bundle) == 2, folder
        assert public(bundle[0]) == public(new_key)
        assert bundle[1] == x509.load_pem_x509_certificate(old_ca)
    new_ca = certs_of(out / "certs/ca.crt")[0]
    for leaf in LEAVES:
        assert issued_by(certs_of(out / leaf)[0], new_ca), leaf
    # The old CA key was kept beside the CA keys (never in backup/ with the leaves), never deleted.
    (backup,) = (out / "my-safe-directory/backup").iterdir()
    assert (backup / "ca.key").read_bytes() == old_ca_key
    assert stat.S_IMODE((backup / "ca.key").stat().st_mode) == 0o400
    assert stat.S_IMODE(backup.stat().st_mode) == 0o700
    assert public(new_key) != public(key_of(backup / "ca.key"))
    assert f"the key of the old CA in certs/ca.crt: kept in {backup / 'ca.key'}" in printed
    assert not (out / "backup" / backup.name / "my-safe-directory").exists()
    # A rotated PKI is what `issue` would keep: issuing again changes nothing.
    assert crdb("issue", "--config", spec, "--out", out, "--check") == 0

    # Step 1 of the roll: n2 gets only the CA file. Now a node with a new certificate and a node with an
    # old one handshake both ways, since both trust the bundle.
    shutil.copyfile(out / "nodes/n2/ca.crt", old_n2 / "ca.crt")
    n1 = node(out / "nodes/n1")
    assert handshake(n1, node(old_n2)) == "node"
    assert handshake(node(old_n2), n1) == "node"
    # Why step 1 comes first: a node that still trusts only the old CA refuses the new certificate.
    stale = Party(old_n2 / "node.crt", old_n2 / "node.key", tmp_path / "old-ca.crt")
    (tmp_path / "old-ca.crt").write_bytes(old_ca)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(n1, stale)
    assert handshake(stale, node(old_n2)) == "node"  # (the old certificates still work with each other)

    # --finish is refused while a leaf of the old CA is still in the output folder.
    for name in ("node.crt", "node.key"):
        (out / "nodes/n2" / name).unlink()
        shutil.copy2(old_n2 / name, out / "nodes/n2" / name)
    capsys.readouterr()
    assert crdb("rotate-ca", "--config", spec, "--out", out, "--finish") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: rotate-ca --finish: nodes/n2/node.crt still signed by the old CA")
    assert err.count("\n") == 1
    assert len(certs_of(out / "certs/ca.crt")) == 2
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0  # re-issues it from the new CA

    assert crdb("rotate-ca", "--config", spec, "--out", out, "--finish", "-q") == 0
    for folder in ("certs", "nodes/n1", "nodes/n2"):
        assert certs_of(out / folder / "ca.crt") == [new_ca], folder
    # The scratch copies of the old and the new CA certificate are not left behind.
    assert not [p.name for p in (out / "requests").glob("ca*.crt")]
    assert crdb("issue", "--config", spec, "--out", out, "--check") == 0
    # After --finish, a certificate of the old CA is refused, as client and as server.
    with pytest.raises((ConnectionError, ssl.SSLError)):
        handshake(
            node(out / "nodes/n1"), Party(old_n2 / "node.crt", old_n2 / "node.key", out / "certs/ca.crt")
        )
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(
            Party(old_n2 / "node.crt", old_n2 / "node.key", out / "certs/ca.crt"), node(out / "nodes/n1")
        )
    assert handshake(node(out / "nodes/n1"), node(out / "nodes/n2")) == "node"


def test_rotation_with_my_safe_directory_on_a_removable_disk_keeps_the_old_ca_key_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As the docs advise, my-safe-directory/ is a link to a removable disk (here /dev/shm, a tmpfs: another
    file system). The old CA key is still trusted until --finish: it must stay on that disk, never be
    copied to backup/ on the main disk."""
    spec, out = issue(tmp_path)
    disk = Path("/dev/shm") / f"crdb-certs-test-{tmp_path.name}-{os.getpid()}"
    shutil.move(out / "my-safe-directory", disk)
    try:
        (out / "my-safe-directory").symlink_to(disk)
        old_ca_key = (disk / "ca.key").read_bytes()
        capsys.readouterr()
        assert crdb("rotate-ca", "--config", spec, "--out", out) == 0
        printed = capsys.readouterr().out
        for folder, _, files in os.walk(out / "backup"):
            for name in files:
                assert old_ca_key not in (Path(folder) / name).read_bytes(), f"the old CA key is in {name}"
        (backup,) = (disk / "backup").iterdir()
        assert (backup / "ca.key").read_bytes() == old_ca_key
        assert stat.S_IMODE((backup / "ca.key").stat().st_mode) == 0o400
        assert stat.S_IMODE(backup.stat().st_mode) == 0o700
        said = [line for line in printed.splitlines() if "key of the old CA" in line]
        assert said == [
            f"the key of the old CA in certs/ca.crt: kept in {out / 'my-safe-directory/backup'}/"
            f"{backup.name}/ca.key (beside the CA keys, never on a node)"
        ], printed
        assert (disk / "ca.key").read_bytes() != old_ca_key
        assert stat.S_IMODE((disk / "ca.key").stat().st_mode) == 0o400
        assert public(key_of(disk / "ca.key")) == public(certs_of(out / "certs/ca.crt")[0])
        assert crdb("issue", "--config", spec, "--out", out, "--check") == 0
    finally:
        shutil.rmtree(disk)


def test_rotation_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec, out = issue(tmp_path)
    capsys.readouterr()
    assert crdb("rotate-ca", "--config", spec, "--out", out, "--finish") == 2
    assert "error: no CA rotation to finish" in capsys.readouterr().err
    assert crdb("rotate-ca", "--config", spec, "--out", out, "-q") == 0
    before = snapshot(out)
    assert crdb("rotate-ca", "--config", spec, "--out", out) == 2  # one rotation at a time
    assert "a rotation is not finished" in capsys.readouterr().err
    assert snapshot(out) == before
    assert crdb("rotate-ca", "--config", spec, "--out", tmp_path / "empty") == 2
    assert "missing; `crdb-certs issue` makes the PKI first" in capsys.readouterr().err
    assert not (tmp_path / "empty").exists()


def test_rotation_of_a_split_ca_layout_bundles_both_cas(tmp_path: Path) -> None:
    spec, out = issue(tmp_path, 'layout = "split-ca"')
    old = {f: (out / "certs" / f).read_bytes() for f in ("ca.crt", "ca-client.crt")}
    assert crdb("rotate-ca", "--config", spec, "--out", out, "-q") == 0
    for f in ("ca.crt", "ca-client.crt"):
        for folder in ("certs", "nodes/n1"):
            bundle = certs_of(out / folder / f)
            assert len(bundle) == 2 and bundle[1] == x509.load_pem_x509_certificate(old[f]), (folder, f)
    client_ca = certs_of(out / "certs/ca-client.crt")[0]
    assert issued_by(certs_of(out / "certs/client.root.crt")[0], client_ca)
    assert issued_by(certs_of(out / "nodes/n1/client.node.crt")[0], client_ca)
    assert crdb("issue", "--config", spec, "--out", out, "--check") == 0
    assert crdb("rotate-ca", "--config", spec, "--out", out, "--finish", "-q") == 0
    assert not [p.name for p in (out / "requests").glob("ca*.crt")]  # neither *.old.crt nor *.new.crt


def test_rotation_with_the_docs_counted_serials_never_reuses_a_serial(tmp_path: Path) -> None:
    # Both CAs are "O=Cockroach, CN=Cockroach CA": a leaf of the new CA numbered 01 again would share
    # issuer name and serial with a leaf of the old one.
    spec, out = issue(tmp_path, 'profile = "docs"')
    before = {certs_of(out / leaf)[0].serial_number for leaf in LEAVES}
    assert crdb("rotate-ca", "--config", spec, "--out", out, "-q") == 0
    after = {certs_of(out / leaf)[0].serial_number for leaf in LEAVES}
    assert len(after) == len(LEAVES) and not before & after
    new_ca = certs_of(out / "certs/ca.crt")[0]
    assert all(issued_by(certs_of(out / leaf)[0], new_ca) for leaf in LEAVES)
    assert crdb("issue", "--config", spec, "--out", out, "--check") == 0


def test_the_printed_rotation_script_does_what_rotate_ca_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, out = issue(tmp_path)
    before = snapshot(out)
    capsys.readouterr()
    assert crdb("rotate-ca", "--config", spec, "--out", out, "--plan") == 0
    printed = capsys.readouterr().out
    assert snapshot(out) == before  # --plan writes nothing
    assert "cat requests/ca.old.crt >> certs/ca.crt" in printed
    assert 'mv my-safe-directory/ca.key my-safe-directory/backup/"$stamp"/' in printed
    subprocess.run(["bash", "-c", printed], check=True, capture_output=True, cwd=tmp_path)
    bundle = certs_of(out / "nodes/n2/ca.crt")
    assert len(bundle) == 2 and bundle[1] == x509.load_pem_x509_certificate(before["certs/ca.crt"])
    assert public(bundle[0]) == public(key_of(out / "my-safe-directory/ca.key"))
    for leaf in LEAVES:
        assert issued_by(certs_of(out / leaf)[0], bundle[0]), leaf
    (backup,) = (out / "my-safe-directory/backup").iterdir()
    assert (backup / "ca.key").read_bytes() == before["my-safe-directory/ca.key"]
    assert not list((out / "backup").glob("*/my-safe-directory"))
    assert crdb("issue", "--config", spec, "--out", out, "--check") == 0


# -------------------------------------------------------------------------------------------- check


def test_check_exit_status_around_the_edge_of_the_window(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Leaves live 24 hours, the CA 48: each `--within` below is just inside or just outside one edge.
    _, out = issue(tmp_path, "ca_days = 2\ncert_days = 1")
    capsys.readouterr()
    assert crdb("check", out, "--within", "23h") == 0
    assert "none of 6 certificates expires within 23 hours" in capsys.readouterr().out

    assert crdb("check", out, "--within", "24h") == 1
    lines = capsys.readouterr().out.splitlines()
    # the leaves, each where a node or client has it (certs/ holds the client, nodes/<n>/ each node)
    assert sorted(line.split(":")[0] for line in lines) == sorted(LEAVES)
    assert all("expires" in line and "(in 23 hours)" in line for line in lines), lines

    assert crdb("check", out, "--within", "47h") == 1
    assert not any("ca.crt" in line for line in capsys.readouterr().out.splitlines())
    assert crdb("check", out, "--within", "2d") == 1
    shown = capsys.readouterr().out
    assert "certs/ca.crt: expires" in shown and "nodes/n1/ca.crt: expires" in shown
    # One certs directory works as well as the output folder.
    assert crdb("check", out / "nodes/n1", "--within", "1d") == 1
    assert capsys.readouterr().out.startswith("node.crt: expires")
    assert crdb("check", out / "nodes/n1", "--within", "3h") == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--within", "30x"), 'error: --within: "30x" is not a duration'),
        (("--within", "-1d"), 'error: --within: "-1d" is not a duration'),
        (("--within", ""), 'error: --within: "" is not a duration'),
    ],
)
def test_check_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    (tmp_path / "certs").mkdir()
    assert crdb("check", tmp_path, *args) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err


def test_check_a_folder_without_certificates_or_no_folder_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert crdb("check", tmp_path) == 2
    assert "no certificates found" in capsys.readouterr().err
    assert crdb("check", tmp_path / "missing") == 2


def test_durations() -> None:
    assert duration.parse("--within", "12h") == timedelta(hours=12)
    assert duration.parse("--within", "30d") == timedelta(days=30)
    assert duration.parse("--within", "2w") == timedelta(days=14)
    assert duration.show(timedelta(days=14)) == "2 weeks"
    assert duration.show(timedelta(hours=1)) == "1 hour"
    for bad in ("30", "d", "1.5d", "30 days", "1y", "99999999d"):
        with pytest.raises(SpecError):
            duration.parse("--within", bad)


# --------------------------------------------------------------------------------------- export k8s


def test_export_k8s_secrets_parse_and_each_certificate_matches_its_key(tmp_path: Path) -> None:
    text = SPEC + '\n[[clients]]\nuser = "max_roach"\n'
    spec, out = issue(tmp_path, 'layout = "split-node"', text=text)
    manifest = tmp_path / "k8s" / "secrets.yaml"
    manifest.parent.mkdir()
    assert crdb("export", "k8s", "--config", spec, "--from", out, "--out", manifest, "--namespace", "db") == 0
    assert stat.S_IMODE(manifest.stat().st_mode) == 0o600
    assert [p.name for p in manifest.parent.iterdir()] == ["secrets.yaml"]  # no temporary file left
    docs = list(yaml.safe_load_all(manifest.read_text()))
    by_name = {d["metadata"]["name"]: d for d in docs}
    assert set(by_name) == {
        "cockroachdb-node-n1",
        "cockroachdb-node-n2",
        "cockroachdb-root",
        "cockroachdb-max-roach",
    }
    ca = (out / "certs/ca.crt").read_bytes()
    for name, doc in by_name.items():
        assert (doc["apiVersion"], doc["kind"], doc["type"]) == ("v1", "Secret", "kubernetes.io/tls")
        assert doc["metadata"]["namespace"] == "db"
        data = {k: base64.b64decode(v, validate=True) for k, v in doc["data"].items()}
        assert data["ca.crt"] == ca
        pairs = [("tls.crt", "tls.key")]
        if "node" in name:  # split-node: the node's client certificate comes with it
            assert set(data) == {"ca.crt", "tls.crt", "tls.key", "client.node.crt", "client.node.key"}
            pairs.append(("client.node.crt", "client.node.key"))
        else:
            assert set(data) == {"ca.crt", "tls.crt", "tls.key"}
        for cert_name, key_name in pairs:
            cert = x509.load_pem_x509_certificate(data[cert_name])
            key = serialization.load_pem_private_key(data[key_name], password=None)
            assert public(cert) == public(key), (name, cert_name)
            assert issued_by(cert, x509.load_pem_x509_certificate(ca))
    n2 = x509.load_pem_x509_certificate(base64.b64decode(by_name["cockroachdb-node-n2"]["data"]["tls.crt"]))
    assert n2 == certs_of(out / "nodes/n2/node.crt")[0]
    user = x509.load_pem_x509_certificate(
        base64.b64decode(by_name["cockroachdb-max-roach"]["data"]["tls.crt"])
    )
    assert user == certs_of(out / "certs/client.max_roach.crt")[0]


def test_export_k8s_one_node_uses_the_helm_charts_secret_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = 'key_type = "ec"\n[[nodes]]\nname = "n1"\nhosts = ["localhost"]\n[[clients]]\nuser = "root"\n'
    spec = write_spec(tmp_path, text)
    out = tmp_path / "out"
    assert crdb("issue", "--config", spec, "--out", out, "-q") == 0
    manifest = tmp_path / "s.yaml"
    capsys.readouterr()
    assert crdb("export", "k8s", "--config", spec, "--from", out, "--out", manifest) == 0
    docs = list(yaml.safe_load_all(manifest.read_text()))
    assert [d["metadata"]["name"] for d in docs] == ["cockroachdb-node", "cockroachdb-root"]
    assert all("namespace" not in d["metadata"] for d in docs)
    assert "tls.certs.nodeSecret=cockroachdb-node,tls.certs.clientRootSecret=cockroachdb-root" in (
        capsys.readouterr().out
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--namespace", "Prod_1"), 'error: --namespace: "Prod_1" is not a Kubernetes namespace'),
        (("--from", "nowhere"), "error: nowhere/nodes/n1/ca.crt: missing"),
        (("--name-prefix", "-x"), 'error: --name-prefix: "-x" is not a Kubernetes name'),
    ],
)
def test_export_k8s_errors_write_no_file(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
    message: str,
) -> None:
    spec, out = issue(tmp_path)
    manifest = tmp_path / "s.yaml"
    options: tuple[str | Path, ...] = args if "--from" in args else ("--from", out, *args)
    monkeypatch.chdir(tmp_path)
    assert crdb("export", "k8s", "--config", spec, "--out", manifest, *options) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err
    assert not manifest.exists()


def test_every_path_the_rollout_prints_is_pasted_back_exactly(tmp_path: Path) -> None:
    """Review 14: the rollout's lines named paths unquoted: a folder with a space, `;` or `$(...)` in its
    name, pasted, ran something else. Each path (and each command line) is one shell word again."""
    from orchestrator import lifecycle
    from orchestrator.spec import parse

    nodes = [{"name": "n1", "hosts": ["n1.example.com"]}]
    the_spec = parse({"key_type": "ec", "nodes": nodes, "clients": [{"user": "root"}]})
    out = tmp_path / "r y;$(touch OWN)"
    config = tmp_path / "c f;g.toml"
    certs = out / "certs"
    for stage in lifecycle.Stage:
        lines = lifecycle.rollout(the_spec, out, config, stage, ["n1"], ["root"]).splitlines()
        for line in lines:
            words = line.strip()
            if words.startswith("copy "):
                pasted = shlex.split(words.removeprefix("copy ").split(" to n1's ")[0])
                expected = [str(out / "nodes" / "n1") + "/"]
                if stage == lifecycle.Stage.ROTATE and len(pasted) == 1 and not pasted[0].endswith("/"):
                    expected = [str(out / "nodes" / "n1" / "ca.crt")]
                assert pasted == expected, line
            elif words.startswith("give each client"):
                assert shlex.split(words.split("client ", 1)[1].removeprefix("the new "))[-1] == str(
                    certs / "ca.crt"
                ), line
            elif words.startswith("give root's clients "):
                pasted = shlex.split(words.removeprefix("give root's clients "))
                assert pasted == [str(certs / "client.root.crt"), "and", str(certs / "client.root.key")], line
            if "crdb-certs " in words:
                argv = shlex.split(words[words.index("crdb-certs ") :])
                assert argv[argv.index("--out") + 1] == str(out), line
                if "--config" in argv:
                    assert argv[argv.index("--config") + 1] == str(config), line
