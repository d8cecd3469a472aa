"""The four-step loop (community.crypto): check says what would change (exit 1) and writes nothing; issue;
check finds nothing (exit 0); issue again changes nothing, not even an mtime. Then a changed spec (a new
host, a new node, a new user) replaces exactly the files it must, and never the CA key or certificate.
(tests/test_issue.py has the single-step versions of some of these.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import pkicheck
from tests.conftest import crdb, is_stamp, write_spec

# Every spec here starts with NODE_A, and so with EC keys: what a run changes is under test, not the kind of
# key, and an RSA key takes ~100 times longer to make.
NODE_A = 'key_type = "ec"\n\n[[nodes]]\nname = "a"\nhosts = ["a.example.com"{extra}]\n\n'
NODE_B = '[[nodes]]\nname = "b"\nhosts = ["b.example.com", "10.0.0.2"]\n\n'
NODE_C = '[[nodes]]\nname = "c"\nhosts = ["c.example.com"]\n\n'
ROOT = '[[clients]]\nuser = "root"\n\n'
BOB = '[[clients]]\nuser = "bob"\n\n'


def state(out: Path) -> dict[str, tuple[int, bytes]]:
    return {
        p.relative_to(out).as_posix(): (p.stat().st_mtime_ns, p.read_bytes())
        for p in out.rglob("*")
        if p.is_file() and not is_stamp(p)  # a cache of a clean run
    }


def pki_files(snapshot: dict[str, tuple[int, bytes]]) -> dict[str, tuple[int, bytes]]:
    """The files that are handed out or guarded: keys and certificates, not the CA's bookkeeping."""
    return {p: v for p, v in snapshot.items() if p.startswith(("certs/", "nodes/", "my-safe-directory/"))}


def changed(before: dict[str, tuple[int, bytes]], after: dict[str, tuple[int, bytes]]) -> set[str]:
    return {p for p in after if before.get(p) != after[p]} | (before.keys() - after.keys())


@pytest.mark.parametrize("profile", ["secure", "docs", "docs-v19"])
def test_check_issue_check_issue(profile: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path, NODE_A.format(extra="") + NODE_B + ROOT)
    out = tmp_path / "out"
    args = ("--config", spec, "--out", out, "--profile", profile)
    capsys.readouterr()
    assert crdb("issue", "--check", *args) == 1
    said = capsys.readouterr().out
    assert {"would make: node a", "would make: node b", "would make: client root"} <= set(said.splitlines())
    assert not out.exists(), "--check wrote files"
    assert crdb("issue", *args, "--quiet") == 0
    assert crdb("issue", "--check", *args) == 0
    assert "up to date" in capsys.readouterr().out
    before = state(out)
    assert crdb("issue", *args) == 0
    assert "nothing changed" in capsys.readouterr().out
    assert state(out) == before, "a second issue touched files"


@pytest.mark.parametrize("profile", ["secure", "docs"])
def test_a_changed_spec_changes_only_what_it_must(
    profile: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, NODE_A.format(extra="") + NODE_B + ROOT)
    out = tmp_path / "out"
    args = ("--config", spec, "--out", out, "--profile", profile)
    assert crdb("issue", *args, "--quiet") == 0
    guarded = {"my-safe-directory/ca.key", "certs/ca.crt"}
    # A changed host replaces a working certificate: only when asked (--reissue a); adding is never asked.
    steps = [
        (NODE_A.format(extra=', "10.0.0.1"') + NODE_B + ROOT, {"nodes/a/node.crt", "nodes/a/node.key"}),
        (
            NODE_A.format(extra=', "10.0.0.1"') + NODE_B + NODE_C + ROOT,
            {"nodes/c/ca.crt", "nodes/c/node.crt", "nodes/c/node.key"},
        ),
        (
            NODE_A.format(extra=', "10.0.0.1"') + NODE_B + NODE_C + ROOT + BOB,
            {"certs/client.bob.crt", "certs/client.bob.key"},
        ),
    ]
    for text, expected in steps:
        write_spec(tmp_path, text)
        capsys.readouterr()
        assert crdb("issue", "--check", *args) == 1, "check did not see the change"
        before = state(out)
        asked = ("--reissue", "a") if "nodes/a/node.crt" in expected else ()
        assert crdb("issue", *args, *asked, "--quiet") == 0
        after = state(out)
        assert changed(pki_files(before), pki_files(after)) == expected
        assert all(after[p] == before[p] for p in guarded), "the CA was replaced"
        assert crdb("issue", "--check", *args) == 0
    ca = out / "certs" / "ca.crt"
    pkicheck.assert_key_pair(ca, out / "my-safe-directory" / "ca.key")
    cn = ["node"] if profile == "secure" else []
    hosts = {"a": ["a.example.com", "10.0.0.1"], "b": ["b.example.com", "10.0.0.2"], "c": ["c.example.com"]}
    for name, names in hosts.items():
        pkicheck.assert_node(
            out / f"nodes/{name}/node.crt",
            names,
            ca,
            cn,
            {pkicheck.SERVER, pkicheck.CLIENT},
            secure=profile == "secure",
        )
    serials = [line.split("\t")[3] for line in (out / "index.txt").read_text().splitlines()]
    assert len(serials) == len(set(serials)) == 6, "one database line per certificate, no serial twice"


def planned(spec: Path, out: Path, capsys: pytest.CaptureFixture[str], command: str) -> list[str]:
    """The lines of `plan --out` (what issue would still run there) that start with `command`."""
    capsys.readouterr()
    assert crdb("plan", "--config", spec, "--out", out) == 0
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith(command)]


def test_copies_into_the_certs_directories_follow_the_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A new node gets ca.crt copied into its own folder only; a copy edited by hand is put right."""
    spec = write_spec(tmp_path, NODE_A.format(extra="") + NODE_B + ROOT)
    out = tmp_path / "out"
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0

    def copies_planned() -> list[str]:
        return planned(spec, out, capsys, "cp ")

    write_spec(tmp_path, NODE_A.format(extra="") + NODE_B + NODE_C + ROOT)
    assert copies_planned() == ["cp -p certs/ca.crt nodes/c/ca.crt"]
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    assert copies_planned() == []

    ca = (out / "certs/ca.crt").read_bytes()
    (out / "nodes/b/ca.crt").write_bytes(ca + b"# edited\n")
    assert copies_planned() == ["cp -p certs/ca.crt nodes/b/ca.crt"]
    assert crdb("issue", "--config", spec, "--out", out, "--check") == 1
    assert capsys.readouterr().out == "would write: nodes/b/ca.crt\n"
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    assert (out / "nodes/b/ca.crt").read_bytes() == ca
    assert copies_planned() == []


def test_configs_are_rewritten_only_when_they_differ(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every config shows the spec, but a run writes only those that differ from it (one node more:
    that node's config, not the other nodes')."""
    spec = write_spec(tmp_path, NODE_A.format(extra="") + NODE_B + ROOT)
    out = tmp_path / "out"
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0

    def configs_planned() -> list[str]:
        return planned(spec, out, capsys, "cat > ")

    assert configs_planned() == []
    cnf = out / "requests/node.a.cnf"
    text = cnf.read_bytes()
    cnf.write_bytes(text.replace(b"a.example.com", b"evil.example.com"))
    assert configs_planned() == ["cat > requests/node.a.cnf <<'EOF'"]
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    assert cnf.read_bytes() == text
    write_spec(tmp_path, NODE_A.format(extra="") + NODE_B + NODE_C + ROOT)
    # (and the folder's record, which now names node c)
    assert configs_planned() == ["cat > requests/node.c.cnf <<'EOF'", "cat > crdb-certs.toml <<'EOF'"]
