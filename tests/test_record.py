"""Day 2 loses nothing: the output folder records the spec it was made from and whose CA signs it, later
commands use that record, and nothing that exists is replaced, dropped or re-signed unless asked
(`--reissue`, `--prune`), with every replaced key and certificate kept in backup/ first. `issue --check`
agrees with `issue` on every folder."""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomli_w
import yaml

from orchestrator import record, spec
from orchestrator.profiles import ProfileName
from orchestrator.spec import Layout
from tests import pkicheck
from tests.conftest import REPO, crdb, is_stamp, no_hang, write_spec
from tests.orgca import OrgCA
from tests.test_handoff import make_org_ca, sign_all

NODES = """\
key_type = "ec"

[[nodes]]
name = "node1"
hosts = ["localhost", "127.0.0.1", "node1.example.com", "10.0.0.1", "lb.example.com"]

[[nodes]]
name = "node2"
hosts = ["node2.example.com", "10.0.0.2"]

[[nodes]]
name = "node3"
hosts = ["node3.example.com", "10.0.0.3"]

[[nodes]]
name = "node4"
hosts = ["node4.example.com", "10.0.0.4"]

"""
USERS = '[[clients]]\nuser = "root"\n\n[[clients]]\nuser = "maxroach"\n'
CUSTOM = NODES + USERS


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file's bytes and mode (the lock file aside: a run holds it; and the stamp of a clean run)."""
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
        for p in folder.rglob("*")
        if p.is_file() and p.name != "lock" and not is_stamp(p)
    }


@pytest.fixture(scope="module")
def custom_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-node, 2-user folder made from a custom spec, which later commands are not given."""
    folder = tmp_path_factory.mktemp("custom")
    spec = write_spec(folder, CUSTOM)
    assert crdb("issue", "--config", spec, "--out", folder / "pki", "--quiet") == 0
    spec.unlink()  # the operator's spec file is gone: only the folder knows what it is
    return folder / "pki"


@pytest.fixture
def pki(custom_pki: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "pki"
    shutil.copytree(custom_pki, copy, symlinks=True)
    return copy


def test_the_forgotten_config_scenario_loses_nothing(
    pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's scenario: `issue --out pki` without its --config, `export k8s --from pki`, a damaged
    key mode seen by --check as by issue. Every original file ends byte-identical."""
    before = snapshot(pki)
    capsys.readouterr()
    assert crdb("issue", "--out", pki) == 0
    assert "up to date, nothing changed" in capsys.readouterr().out
    assert snapshot(pki) == before, "issue without --config changed the folder"

    manifest = tmp_path / "k8s.yaml"
    assert crdb("export", "k8s", "--from", pki, "--out", manifest) == 0
    secrets = [d["metadata"]["name"] for d in yaml.safe_load_all(manifest.read_text()) if d]
    assert sorted(s for s in secrets if "node" in s) == [f"cockroachdb-node-node{i}" for i in (1, 2, 3, 4)]

    key = pki / "nodes/node3/node.key"
    key.chmod(0o644)
    capsys.readouterr()
    assert crdb("issue", "--check", "--out", pki) == 1, "--check said up to date where issue fails"
    assert "node3" in capsys.readouterr().err
    assert crdb("issue", "--out", pki) == 1
    key.chmod(0o400)
    assert snapshot(pki) == before


def test_every_command_without_config_uses_the_record(
    pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(pki)
    commands: list[tuple[str | Path, ...]] = [
        ("issue", "--out", pki),
        ("issue", "--check", "--out", pki),
        ("plan", "--out", pki),
        ("renew", "--out", pki),
        ("renew", "--plan", "--nodes", "node1", "--out", pki),
        ("rotate-ca", "--plan", "--out", pki),
        ("check", pki),
        ("audit", pki / "nodes/node1"),
        ("list", pki / "certs"),
        ("export", "k8s", "--from", pki, "--out", tmp_path / "k8s.yaml"),
    ]
    for command in commands:
        capsys.readouterr()
        assert crdb(*command) == 0, command
        said = capsys.readouterr()
        assert "Traceback" not in said.err
    # The record's spec, not the embedded default: node1 keeps every host, node4 exists.
    renewal = subprocess.run(
        [sys.executable, "-m", "orchestrator", "renew", "--plan", "--nodes", "node1", "--out", pki],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "DNS.3 = lb.example.com" in renewal or "lb.example.com" in renewal
    assert not [line for line in _planned(pki, capsys) if line.startswith("openssl")], "plan has work"
    assert snapshot(pki) == before


def test_render_into_a_folder_writes_the_configs_of_its_record(pki: Path) -> None:
    """Review 13: `render --out pki` rewrote pki/requests/*.cnf from the embedded default (node1 on
    localhost only) over the configs of the folder's own spec."""
    configs = {p: p.read_bytes() for p in (pki / "requests").glob("*.cnf")}
    assert pki / "requests/node.node4.cnf" in configs
    assert crdb("render", "--out", pki) == 0
    assert {p: p.read_bytes() for p in (pki / "requests").glob("*.cnf")} == configs


def _edit_record(folder: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = folder / "crdb-certs.toml"
    data = tomllib.loads(path.read_text())
    change(data)
    path.write_text(tomli_w.dumps(data))


def test_a_record_of_a_newer_format_is_refused(pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Review 12: `format = 7` was read as 1 and rewritten as 1 by the next run."""
    _edit_record(pki, lambda data: data.update(format=7))
    before = snapshot(pki)
    for command in (("issue", "--out", pki), ("plan", "--out", pki), ("renew", "--out", pki)):
        capsys.readouterr()
        assert crdb(*command) == 2, command
        err = capsys.readouterr().err
        assert err.startswith(f"error: {pki / 'crdb-certs.toml'}: ") and err.count("\n") == 1, err
        assert "made by a newer crdb-certs" in err, err
    assert snapshot(pki) == before


def test_a_record_that_is_a_fifo_is_refused_not_waited_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Review 12: a FIFO named crdb-certs.toml hung `issue --out`; the record is read as specs are."""
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "crdb-certs.toml")
    with no_hang(10):
        assert crdb("issue", "--out", out, "--key-type", "ec") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out / 'crdb-certs.toml'}: ") and err.count("\n") == 1, err
    assert sorted(p.name for p in out.iterdir()) == ["crdb-certs.toml"]


def test_an_error_in_the_records_spec_names_the_record(pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Review 12: `error: nodes[1].hosts[0]: ...` did not say that the value is in the folder's record."""
    _edit_record(pki, lambda data: data["spec"]["nodes"][1]["hosts"].__setitem__(0, "bad host"))
    assert crdb("plan", "--out", pki) == 2
    err = capsys.readouterr().err
    assert err.startswith(f'error: {pki / "crdb-certs.toml"}: spec.nodes[1].hosts[0]: "bad host" '), err
    assert err.count("\n") == 1, err


SMALL = 'key_type = "ec"\n[[nodes]]\nname = "n1"\nhosts = ["localhost"]\n[[clients]]\nuser = "root"\n'


@pytest.mark.parametrize("moved", ["ui", "ca"])
def test_files_from_elsewhere_are_checked_only_by_the_commands_that_use_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], moved: str
) -> None:
    """Review 11: the record pinned [ui] issuer = "import" files and [ca]'s forever: once they were moved
    (or the CA's disk unplugged), every --out command failed `ui.cert: ... is not an existing file`.
    Loading a spec reads no other file: only the commands that copy or sign with them need them."""
    org = OrgCA(tmp_path / "elsewhere")
    ui_cert, ui_key = org.issue(tmp_path / "elsewhere", "ui", ["localhost"])
    if moved == "ui":
        extra = f'[ui]\nhosts = ["localhost"]\nissuer = "import"\ncert = "{ui_cert}"\nkey = "{ui_key}"\n'
    else:
        extra = f'[ca]\ncert = "{org.cert_path}"\nkey = "{org.key_path}"\n'
    out = tmp_path / "pki"
    assert crdb("issue", "--config", write_spec(tmp_path, SMALL + extra), "--out", out, "--quiet") == 0
    (tmp_path / "elsewhere").rename(tmp_path / "moved")
    missing = f"{moved}.cert: " + f'"{ui_cert if moved == "ui" else org.cert_path}" is not an existing file'
    works: list[tuple[str | Path, ...]] = [
        ("plan", "--out", out),
        ("export", "k8s", "--from", out, "--out", tmp_path / "k8s.yaml"),
        ("rotate-ca", "--plan", "--out", out),
    ]
    if moved == "ui":  # a renewal signs with the CA made here, and never copies ui.crt
        works += [("renew", "--nodes", "n1", "--out", out)]
    for command in works:
        capsys.readouterr()
        status = crdb(*command)
        assert missing not in capsys.readouterr().err, command
        assert status == 0 or command[0] == "rotate-ca", command  # rotate-ca refuses [ca]: its own error
    capsys.readouterr()
    assert crdb("probe", "127.0.0.1:1", "--timeout", "1", "--out", out) == 2  # nothing listens there
    assert missing not in capsys.readouterr().err
    needs = [("issue", "--out", out), ("issue", "--check", "--out", out)]
    needs += [("renew", "--nodes", "n1", "--out", out)] if moved == "ca" else []
    for command in needs:
        capsys.readouterr()
        assert crdb(*command) == 2, command
        err = capsys.readouterr().err
        assert err == f"error: {missing}\n", err


def _planned(out: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    capsys.readouterr()
    assert crdb("plan", "--out", out) == 0
    return capsys.readouterr().out.splitlines()


def test_a_certs_directory_never_gets_a_pki_of_its_own(
    pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Review 5: `issue --out pki/certs` (or any `cockroach cert` folder: ca.crt, node.crt, node.key)
    made the default spec's PKI there, my-safe-directory/ca.key among the files handed to clients."""
    before = snapshot(pki)
    for inner in (pki / "certs", pki / "nodes/node2"):
        for command in (("issue", "--out", inner), ("csr", "--out", inner), ("plan", "--out", inner)):
            capsys.readouterr()
            assert crdb(*command) == 2, command
            err = capsys.readouterr().err
            said = (
                f'error: --out: "{inner}" is a certs directory of the output folder {pki}: give --out {pki}'
            )
            assert err == said + "\n", err
    assert snapshot(pki) == before
    cockroach_cert = tmp_path / "cockroach-certs"  # `cockroach cert create-node`'s folder, copied
    shutil.copytree(pki / "nodes/node2", cockroach_cert)
    capsys.readouterr()
    assert crdb("issue", "--out", cockroach_cert, "--key-type", "ec") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --config: ") and "holds certificates but no record" in err, err
    assert sorted(p.name for p in cockroach_cert.iterdir()) == sorted(
        p.name for p in (pki / "nodes/node2").iterdir()
    )


def test_a_pki_without_a_record_is_not_guessed_at(pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (pki / "crdb-certs.toml").unlink()
    before = snapshot(pki)
    for command in (("issue",), ("issue", "--check"), ("renew",), ("rotate-ca",), ("plan",)):
        capsys.readouterr()
        assert crdb(*command, "--out", pki) == 2, command
        err = capsys.readouterr().err
        assert err.startswith("error: --config:") and err.count("\n") == 1, err
    assert snapshot(pki) == before


def test_differences_are_named_and_nothing_changes_until_asked(
    pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Hosts changed, key size changed, a node and a user removed: refused, one line each, exit 1, nothing
    written, the same lines from --check. --reissue and --prune then do it, keeping the old files."""
    before = snapshot(pki)
    changed = (
        NODES.replace('"lb.example.com"', '"lb2.example.com"')
        .replace('key_type = "ec"', 'key_type = "rsa"')
        .split('[[nodes]]\nname = "node4"')[0]
    )
    spec = write_spec(tmp_path, changed + '[[clients]]\nuser = "root"\n')
    capsys.readouterr()
    assert crdb("issue", "--config", spec, "--out", pki) == 1
    err = capsys.readouterr().err
    assert "node1: hosts differ: -lb.example.com +lb2.example.com; re-run with --reissue node1" in err
    assert "node2: key differs: EC P-256 in the folder, RSA 2048 in the spec" in err
    assert "node4: not in the spec any more; its files stay; re-run with --prune" in err
    assert "maxroach: not in the spec any more" in err
    assert "Traceback" not in err
    assert snapshot(pki) == before
    assert crdb("issue", "--check", "--config", spec, "--out", pki) == 1
    assert capsys.readouterr().err == err, "--check and issue disagree"
    assert snapshot(pki) == before

    assert crdb("issue", "--config", spec, "--out", pki, "--reissue", "node1", "--prune") == 1
    assert "node1:" not in capsys.readouterr().err, "--reissue node1 did not cover node1"
    assert snapshot(pki) == before

    assert crdb("issue", "--config", spec, "--out", pki, "--reissue", "--prune", "--quiet") == 0
    after = snapshot(pki)
    assert not (pki / "nodes/node4").exists() and not (pki / "certs/client.maxroach.crt").exists()
    pkicheck.assert_node(
        pki / "nodes/node1/node.crt",
        ["localhost", "node1.example.com", "lb2.example.com", "127.0.0.1", "10.0.0.1"],
        pki / "certs/ca.crt",
        ["node"],
        {pkicheck.SERVER, pkicheck.CLIENT},
        secure=True,
    )
    assert after["certs/ca.crt"] == before["certs/ca.crt"]
    assert after["my-safe-directory/ca.key"] == before["my-safe-directory/ca.key"]
    [backup] = (pki / "backup").iterdir()
    assert stat.S_IMODE(backup.stat().st_mode) == 0o700
    for kept in (
        "nodes/node1/node.key",
        "nodes/node1/node.crt",
        "nodes/node4/node.key",
        "certs/client.maxroach.key",
    ):
        assert (backup / kept).read_bytes() == before[kept][0], kept
        if kept.endswith(".key"):
            assert stat.S_IMODE((backup / kept).stat().st_mode) == 0o400
    assert not (backup / "my-safe-directory").exists(), "the CA key was not replaced"
    assert crdb("issue", "--config", spec, "--out", pki, "--check") == 0


def test_key_type_and_size_are_part_of_what_the_folder_is(
    pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(pki)
    for override in (("--key-type", "rsa"),):
        capsys.readouterr()
        assert crdb("issue", "--check", "--out", pki, *override) == 1
        assert "key differs: EC P-256 in the folder, RSA 2048 in the spec" in capsys.readouterr().err
    assert snapshot(pki) == before


def test_a_node_key_never_stays_in_the_clients_folder(tmp_path: Path) -> None:
    """One node: certs/ is also node1's certs directory. Grow to two: node1's files leave certs/ (for the
    backup), and `renew --nodes node1` does not bring them back."""
    one = '[[nodes]]\nname = "node1"\nhosts = ["localhost"]\n[[clients]]\nuser = "root"\nkey_type = "ec"\n'
    spec = write_spec(tmp_path, 'key_type = "ec"\n' + one.replace('key_type = "ec"\n', ""))
    out = tmp_path / "out"
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    assert (out / "certs/node.key").exists()
    write_spec(tmp_path, spec.read_text() + '[[nodes]]\nname = "node2"\nhosts = ["node2.example.com"]\n')
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    assert crdb("renew", "--nodes", "node1", "--out", out, "--quiet") == 0
    assert sorted(p.name for p in (out / "certs").iterdir()) == [
        "ca.crt",
        "client.root.crt",
        "client.root.key",
    ]


def test_issue_check_agrees_with_issue_on_damaged_folders(
    custom_pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """For each damage: --check exits 0 exactly when issue would change nothing and pass; when issue
    refuses, --check refuses with the same status."""

    def chmod(path: str, mode: int) -> None:
        (pki / path).chmod(mode)

    def remove(path: str) -> None:
        (pki / path).unlink()

    def edit(path: str) -> None:
        (pki / path).write_bytes((pki / path).read_bytes() + b"# edited\n")

    damages = {
        "nothing": lambda: None,
        "node key 0644": lambda: chmod("nodes/node2/node.key", 0o644),
        "CA key 0644": lambda: chmod("my-safe-directory/ca.key", 0o644),
        "node cert missing": lambda: remove("nodes/node2/node.crt"),
        "client key missing": lambda: remove("certs/client.root.key"),
        "copy of ca.crt edited": lambda: edit("nodes/node3/ca.crt"),
        "a config edited": lambda: edit("requests/node.node1.cnf"),
        "CA key missing": lambda: remove("my-safe-directory/ca.key"),
        "record missing": lambda: remove("crdb-certs.toml"),
        "index.txt missing": lambda: remove("index.txt"),
    }
    for name, damage in damages.items():
        pki = tmp_path / name.replace(" ", "-")
        shutil.copytree(custom_pki, pki, symlinks=True)
        damage()
        before = snapshot(pki)
        capsys.readouterr()
        checked = crdb("issue", "--check", "--out", pki)
        assert snapshot(pki) == before, f"{name}: --check wrote"
        issued = crdb("issue", "--out", pki, "--quiet")
        changed = snapshot(pki) != before
        if checked == 0:
            assert issued == 0 and not changed, f"{name}: --check said up to date, issue {issued}/{changed}"
        elif changed:
            assert checked == 1 and issued == 0, f"{name}: check {checked}, issue {issued}"
        else:
            assert issued == checked != 0, f"{name}: check {checked}, issue {issued}"


def test_rotate_ca_and_renew_never_touch_a_ca_made_elsewhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An organization's CA via [ca], and a CA reached only through csr + import: rotate-ca is refused
    (exit 2, nothing changed, no claim of a kept key); renew is refused where no CA key is at hand."""
    org = OrgCA(tmp_path / "org", cn="Example Issuing CA")
    own = write_spec(
        tmp_path,
        'key_type = "ec"\n[[nodes]]\nname = "n1"\nhosts = ["localhost"]\n[[clients]]\nuser = "root"\n'
        f'[ca]\ncert = "{org.cert_path}"\nkey = "{org.key_path}"\n',
        "own.toml",
    )
    assert crdb("issue", "--config", own, "--out", tmp_path / "own", "--quiet") == 0

    elsewhere = tmp_path / "elsewhere"
    hand_off = write_spec(
        tmp_path,
        'key_type = "ec"\nlayout = "split-node"\n[[nodes]]\nname = "n1"\nhosts = ["localhost"]\n',
        "handoff.toml",
    )
    assert crdb("csr", "--config", hand_off, "--out", elsewhere) == 0
    assert crdb("issue", "--check", "--out", elsewhere) == crdb("issue", "--out", elsewhere) == 2
    sign_all(make_org_ca(tmp_path / "plain-org"), elsewhere, tmp_path / "returned")
    assert crdb("import", tmp_path / "returned", "--out", elsewhere) == 0

    for folder, renew_status in ((tmp_path / "own", 0), (elsewhere, 2)):
        before = snapshot(folder)
        capsys.readouterr()
        for command in (("rotate-ca",), ("rotate-ca", "--plan"), ("rotate-ca", "--finish")):
            assert crdb(*command, "--out", folder) == 2, (folder, command)
            err = capsys.readouterr().err
            assert "crdb-certs never" in err and "kept" not in err and err.count("\n") == 1, err
        assert crdb("renew", "--nodes", "n1", "--plan", "--out", folder) == renew_status
        assert crdb("issue", "--check", "--out", folder) == 0, capsys.readouterr()
        assert crdb("issue", "--out", folder) == 0
        assert snapshot(folder) == before


def test_adding_to_a_folder_signed_elsewhere_says_how(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # split-node: node.crt only serves, as the stand-in CA signs node requests (serverAuth)
    spec = write_spec(
        tmp_path, 'key_type = "ec"\nlayout = "split-node"\n[[nodes]]\nname = "n1"\nhosts = ["localhost"]\n'
    )
    out = tmp_path / "out"
    assert crdb("csr", "--config", spec, "--out", out) == 0
    sign_all(make_org_ca(tmp_path / "org"), out, tmp_path / "returned")
    assert crdb("import", tmp_path / "returned", "--out", out) == 0
    write_spec(tmp_path, spec.read_text() + '[[clients]]\nuser = "root"\n')
    before = snapshot(out)
    capsys.readouterr()
    assert crdb("issue", "--config", spec, "--out", out) == 2
    err = capsys.readouterr().err
    assert "crdb-certs csr" in err and "client root" in err
    assert crdb("issue", "--check", "--config", spec, "--out", out) == 2
    assert snapshot(out) == before


def test_a_clock_behind_replaces_nothing(pki: Path) -> None:
    """With the clock a day behind, every certificate is 'not yet valid': issue must say so, not make
    new keys for everything."""
    before = snapshot(pki)
    run = subprocess.run(
        ["faketime", "-f", "-2d", sys.executable, "-m", "orchestrator", "issue", "--out", str(pki)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert run.returncode == 1, run.stderr
    assert "is this machine's clock right?" in run.stderr
    assert snapshot(pki) == before


def test_profile_and_layout_are_enums_the_record_writes_as_the_toml_does() -> None:
    data = {"profile": "docs-v19", "layout": "split-ca", "nodes": [{"name": "n1", "hosts": ["n1"]}]}
    the_spec = spec.parse(data)
    assert the_spec.profile is ProfileName.DOCS_V19 and the_spec.layout is Layout.SPLIT_CA
    text = record.of(the_spec)
    assert '\nprofile = "docs-v19"\nlayout = "split-ca"\n' in text
    assert spec.parse(tomllib.loads(text)["spec"]) == the_spec


# ------------------------------------------------------------------ findings of the adversarial review


def test_import_never_switches_a_folder_with_its_own_ca(
    pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`import` into a folder whose CA crdb-certs made replaced ca.crt and every leaf with another CA's,
    with no backup; `csr` there rewrote the record to signed-elsewhere. Both are refused."""
    before = snapshot(pki)
    returned = tmp_path / "returned"
    returned.mkdir()
    for command in (("csr", "--out", pki), ("import", returned, "--out", pki)):
        capsys.readouterr()
        assert crdb(*command) == 2, command
        err = capsys.readouterr().err
        assert "a CA crdb-certs made here" in err and err.count("\n") == 1, err
    assert snapshot(pki) == before


def test_a_second_import_replaces_nothing_unless_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(
        tmp_path, 'key_type = "ec"\nlayout = "split-node"\n[[nodes]]\nname = "n1"\nhosts = ["localhost"]\n'
    )
    out = tmp_path / "out"
    assert crdb("csr", "--config", spec, "--out", out) == 0
    sign_all(make_org_ca(tmp_path / "org"), out, tmp_path / "returned")
    assert crdb("import", tmp_path / "returned", "--out", out) == 0
    before = snapshot(out)
    sign_all(make_org_ca(tmp_path / "other-org"), out, tmp_path / "other")  # another CA signs the same CSRs
    capsys.readouterr()
    assert crdb("import", tmp_path / "other", "--out", out) == 1
    err = capsys.readouterr().err
    assert "CA: certs/ca.crt is installed already" in err and "--reissue" in err
    assert snapshot(out) == before
    assert crdb("import", tmp_path / "other", "--out", out, "--reissue") == 0
    [backup] = (out / "backup").iterdir()
    assert (backup / "certs/ca.crt").read_bytes() == before["certs/ca.crt"][0]


def test_your_own_ca_replaced_in_place_is_a_difference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The organization rotated its CA into the same files [ca] names: issue switched every node at once."""
    OrgCA(tmp_path / "org", cn="Org Root 1")
    first = tmp_path / "org"
    spec = write_spec(
        tmp_path,
        'key_type = "ec"\n[[nodes]]\nname = "n1"\nhosts = ["localhost"]\n[[clients]]\nuser = "root"\n'
        f'[ca]\ncert = "{first / "org-ca.crt"}"\nkey = "{first / "org-ca.key"}"\n',
    )
    out = tmp_path / "out"
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    before = snapshot(out)
    OrgCA(first, cn="Org Root 2")  # new key and certificate at the same paths
    capsys.readouterr()
    assert crdb("issue", "--out", out) == 1
    assert "CA: certs/ca.crt is not the CA [ca] names now" in capsys.readouterr().err
    assert crdb("issue", "--check", "--out", out) == 1
    assert snapshot(out) == before
    assert crdb("issue", "--out", out, "--reissue", "--quiet") == 0


def test_a_lost_ca_certificate_is_put_back_from_a_node_not_made_anew(
    pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """certs/ca.crt deleted: issue made a new CA certificate and re-signed every leaf. It now says where
    the copy is (every node's folder has one) and changes nothing; put back, the folder is up to date."""
    before = snapshot(pki)
    (pki / "certs/ca.crt").unlink()
    capsys.readouterr()
    assert crdb("issue", "--out", pki) == 1
    err = capsys.readouterr().err
    assert "CA: certs/ca.crt is missing or unreadable, and every node holds a copy; put it back (cp " in err
    assert crdb("issue", "--check", "--out", pki) == 1
    del before["certs/ca.crt"]
    assert snapshot(pki) == before
    fix = err.split("put it back (")[1].split(")")[0]
    subprocess.run(shlex.split(fix), check=True)
    assert crdb("issue", "--check", "--out", pki) == 0


def test_a_changed_ca_subject_is_its_own_difference(
    pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, CUSTOM + '\n[subject]\norganization = "Example Org"\n')
    before = snapshot(pki)
    capsys.readouterr()
    assert crdb("issue", "--config", spec, "--out", pki) == 1
    err = capsys.readouterr().err
    assert "CA: certs/ca.crt: subject" in err and "made again, it would sign every certificate again" in err
    assert snapshot(pki) == before


def test_files_of_an_abandoned_layout_or_ui_are_removals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """split-ca -> standard left ca-client.crt in every certs directory (CockroachDB then refuses every
    client certificate), and a removed [ui] left ui.crt/ui.key forever: both are removals, one line each,
    and --prune takes them away (to backup/)."""
    base = (
        'key_type = "ec"\n[[nodes]]\nname = "n1"\nhosts = ["localhost"]\n'
        '[[nodes]]\nname = "n2"\nhosts = ["n2.example.com"]\n[[clients]]\nuser = "root"\n'
    )
    spec = write_spec(tmp_path, 'layout = "split-ca"\n' + base + '[ui]\nhosts = ["console.example.com"]\n')
    out = tmp_path / "out"
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    write_spec(tmp_path, base)
    before = snapshot(out)
    capsys.readouterr()
    assert crdb("issue", "--config", spec, "--out", out, "--reissue") == 1
    err = capsys.readouterr().err
    for path in (
        "nodes/n1/ca-client.crt",
        "certs/ca-client.crt",
        "nodes/n2/ui.key",
        "nodes/n1/client.node.key",
    ):
        assert f"--prune to move {path} to backup/" in err, path
    assert snapshot(out) == before
    assert crdb("issue", "--config", spec, "--out", out, "--reissue", "--prune", "--quiet") == 0
    for folder in ("certs", "nodes/n1", "nodes/n2"):
        assert not (out / folder / "ca-client.crt").exists() and not (out / folder / "ui.key").exists()
    assert crdb("issue", "--config", spec, "--out", out, "--check") == 0


def test_reissue_can_name_exactly_one_certificate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A node and a user both called `root`: the refusal names node:root and client:root, and
    --reissue node:root replaces the node's certificate only."""
    text = '[[nodes]]\nname = "root"\nhosts = ["localhost"]\n[[clients]]\nuser = "root"\n'
    spec = write_spec(tmp_path, 'key_type = "ec"\n' + text)
    out = tmp_path / "out"
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    write_spec(tmp_path, text)  # rsa now
    capsys.readouterr()
    assert crdb("issue", "--config", spec, "--out", out) == 1
    err = capsys.readouterr().err
    assert "--reissue node:root to replace nodes/root/node.crt" in err
    assert "--reissue client:root to replace certs/client.root.crt" in err
    user_before = (out / "certs/client.root.crt").read_bytes()
    assert (
        crdb("issue", "--config", spec, "--out", out, "--reissue", "node:root") == 1
    )  # the user still differs
    assert crdb("issue", "--config", spec, "--out", out, "--reissue", "node:root,client:root", "--quiet") == 0
    assert (out / "certs/client.root.crt").read_bytes() != user_before


def test_where_nodes_live_round_trips_and_changes_no_certificate() -> None:
    """The deploy keys ([[nodes]] ssh, certs_dir, sql_addr; [deploy] reload) are written back as given
    and read into the same Spec; defaults are not written."""
    data: dict[str, Any] = {
        "nodes": [
            {
                "name": "n1",
                "hosts": ["n1.example.com", "10.0.0.1"],
                "ssh": "deploy@10.0.0.1:2222",
                "certs_dir": "/srv/crdb/certs",
                "sql_addr": "10.0.0.1:26258",
            },
            {"name": "n2", "hosts": ["n2.example.com"], "ssh": "n2"},
            {"name": "n3", "hosts": ["n3.example.com"]},
        ],
        "deploy": {"reload": "systemctl reload 'cockroach db'"},
    }
    the_spec = spec.parse(data)
    assert the_spec.nodes[1].certs_dir == spec.DEFAULT_CERTS_DIR and the_spec.nodes[2].ssh is None
    written = tomllib.loads(record.of(the_spec))["spec"]
    assert written["nodes"][0] == data["nodes"][0]
    assert written["nodes"][1] == {"name": "n2", "hosts": ["n2.example.com"], "ssh": "n2"}
    assert written["nodes"][2] == {"name": "n3", "hosts": ["n3.example.com"]}
    assert written["deploy"] == {"reload": "systemctl reload 'cockroach db'"}
    assert spec.parse(written) == the_spec
    plain = spec.parse({"nodes": [{"name": "n3", "hosts": ["n3.example.com"]}]})
    assert "deploy" not in tomllib.loads(record.of(plain))["spec"]
    # Nothing that issues certificates reads them: the same plan with or without them.
    from orchestrator import plan

    bare = spec.parse({"nodes": [{"name": n["name"], "hosts": n["hosts"]} for n in data["nodes"]]})
    assert plan.build(the_spec).configs() == plan.build(bare).configs()


def test_the_record_of_ten_thousand_nodes_is_read_back(tmp_path: Path) -> None:
    """Issue 16: the record of a 10,000-node folder is ~1.1 MB, over the 1 MB a spec could be: every
    command without --config then refused the folder."""
    hosts = [[f"node{i}", f"node{i}.example.com", f"10.0.{i // 256}.{i % 256}"] for i in range(10_000)]
    nodes = [{"name": f"node{i}", "hosts": h} for i, h in enumerate(hosts)]
    the_spec = spec.parse({"nodes": nodes, "clients": [{"user": "root"}]})
    (tmp_path / "crdb-certs.toml").write_text(record.of(the_spec))
    assert (tmp_path / "crdb-certs.toml").stat().st_size > 1 << 20
    held = record.read(tmp_path)
    assert held is not None and held.spec() == the_spec


@pytest.mark.parametrize("provenance", [None, *record.Provenance])
def test_the_settings_a_stamp_holds_are_those_of_the_record_written(
    provenance: record.Provenance | None, tmp_path: Path
) -> None:
    """Issue 16: a stamp holds the settings of the record its run left (record.Settings.of), so that a
    later run need not parse a record of 10,000 nodes; they must be what reading that record gives."""
    org = OrgCA(tmp_path / "org")
    own = {"ca": {"cert": str(org.cert_path), "key": str(org.key_path)}}
    nodes = {
        "nodes": [{"name": "n1", "hosts": ["n1.example.com"]}],
        "layout": "split-node",
        "profile": "docs",
    }
    for data in (nodes, nodes | own):
        the_spec = spec.parse(data, base=tmp_path)
        (tmp_path / record.names.RECORD).write_text(record.of(the_spec, provenance))
        held = record.read(tmp_path)
        assert held is not None
        settings = record.Settings.of(the_spec, provenance)
        assert held.settings() == settings == record.Settings.from_held(settings.held())
        assert settings.ca_cert == (str(org.cert_path) if "ca" in data else None)
