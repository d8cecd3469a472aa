"""`crdb-certs plan`: the same plan as `issue`, printed as the docs' commands; `bash` on it in an empty
folder makes an equivalent PKI."""

from __future__ import annotations

import gc
import shlex
import subprocess
import tracemalloc
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator import cli, plan, record, spec
from tests import pkicheck
from tests.conftest import CLUSTER_SPEC, FIXTURES, crdb, write_spec
from tests.pkicheck import CLIENT, SERVER

DOCS_SPEC = """\
[[nodes]]
name = "node1"
hosts = ["localhost", "node.example.io", "127.0.0.1"]
[[clients]]
user = "maxroach"
[[clients]]
user = "roach"
"""


def plan_text(capsys: pytest.CaptureFixture[str], *args: str | Path) -> str:
    capsys.readouterr()
    assert crdb("plan", *args) == 0
    return capsys.readouterr().out


def shape(command: str) -> tuple[str, ...]:
    """A command reduced to what the docs fix: the program, subcommand and flags (with the values of
    -policy, -extensions and -days), not the file names."""
    words = shlex.split(command.split("|")[0])
    kept: list[str] = []
    for i, word in enumerate(words):
        if (i < 2 and words[0] == "openssl") or word.startswith("-"):
            kept.append(word)
            if word in {"-policy", "-extensions", "-days"}:
                kept.append(words[i + 1])
    return tuple(kept) if words[0] == "openssl" else (words[0],)


def commands(script: str) -> list[tuple[str, ...]]:
    """The commands of a script that make something (not the read-back checks, not the here-documents)."""
    found, in_heredoc = [], None
    for line in script.splitlines():
        if in_heredoc:
            in_heredoc = None if line == in_heredoc else in_heredoc
            continue
        if line.startswith("cat > "):
            in_heredoc = line.split("<<'")[1].rstrip("'")
            continue
        if not line or line.startswith(("#", "set ", "umask", "cp ", "install ", "cockroach")):
            continue
        if line.startswith("openssl x509") or line == "rm -f certs/*.pem":
            continue
        found.append(shape(line))
    return found


@pytest.mark.parametrize(("profile", "era"), [("docs", "v26.3"), ("docs-v19", "v19.2")])
def test_plan_is_the_docs_command_sequence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], profile: str, era: str
) -> None:
    # The v26.3 page has a first user and another; the v19.2 page one recipe for every user.
    text = DOCS_SPEC if profile == "docs" else DOCS_SPEC.removesuffix('[[clients]]\nuser = "roach"\n')
    spec = write_spec(tmp_path, text)
    ours = commands(plan_text(capsys, "--config", spec, "--profile", profile))
    docs = commands((FIXTURES / "docs" / era / "commands.sh").read_text())
    if profile == "docs-v19":  # the v19.2 page makes its two folders with two mkdir commands
        docs = docs[1:]
    assert ours == docs


def test_plan_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan_text(capsys, "--config", write_spec(tmp_path / "spec", CLUSTER_SPEC))
    assert [p.name for p in tmp_path.iterdir()] == ["spec"]


@pytest.mark.parametrize("profile", ["secure", "docs", "docs-v19"])
def test_plan_piped_to_bash_makes_a_working_pki(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], profile: str
) -> None:
    text = plan_text(capsys, "--config", write_spec(tmp_path / "spec", CLUSTER_SPEC), "--profile", profile)
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["bash"], input=text, text=True, cwd=out, check=True, capture_output=True)
    ca = out / "certs" / "ca.crt"
    pkicheck.assert_ca(ca)
    secure = profile == "secure"
    cn = [] if profile == "docs" else ["node"]
    hosts = {
        "node1": ["node1.example.com", "localhost", "127.0.0.1"],
        "node2": ["node2.example.com", "10.0.0.2", "::1"],
        "node3": ["node3.example.com", "*.nodes.example.com", "10.0.0.3"],
    }
    for name, names in hosts.items():
        bundle = out / "nodes" / name
        assert sorted(p.name for p in bundle.iterdir()) == ["ca.crt", "node.crt", "node.key"]
        pkicheck.assert_node(bundle / "node.crt", names, bundle / "ca.crt", cn, {SERVER, CLIENT}, secure)
    pkicheck.assert_client(
        out / "certs/client.root.crt", "root", ca, secure, dns={"root"} if profile == "docs" else None
    )
    pkicheck.assert_client(out / "certs/client.maxroach.crt", "maxroach", ca, secure)
    assert not list((out / "certs").glob("*.pem"))
    assert not (out / "certs" / "ca.key").exists()


def test_plan_for_an_existing_folder_lists_only_what_is_missing(
    default_pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = plan_text(capsys, "--out", default_pki)
    # The folder itself (made if missing), then the directories in it.
    assert commands(text) == [("mkdir",), ("cd",), ("mkdir",)], (
        "an up-to-date folder needs no key, request or signature"
    )
    assert f"cd {default_pki}" in text
    assert "empty folder" not in text, "it adds to a folder that holds a PKI"


def test_plan_out_makes_the_folder_it_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # `plan --out newdir | bash`: the script makes newdir (and its parents) before it changes into it.
    text = plan_text(capsys, "--out", "new/dir")
    assert "empty folder" not in text
    subprocess.run(["bash"], input=text, text=True, cwd=tmp_path, check=True, capture_output=True)
    pkicheck.assert_ca(tmp_path / "new/dir/certs/ca.crt")


@pytest.mark.parametrize(
    ("command", "options"),
    [
        (("plan",), {"config": None, "profile": None, "key_type": None}),
        (
            ("renew", "--nodes", "node1", "--plan"),
            {
                "config": None,
                "within": None,
                "nodes": "node1",
                "clients": None,
                "ui": False,
                "keep_keys": False,
                "show_plan": True,
                "quiet": False,
            },
        ),
        (("rotate-ca", "--plan"), {"config": None, "finish": False, "show_plan": True, "quiet": False}),
    ],
    ids=["plan", "renew", "rotate-ca"],
)
def test_a_newline_in_out_cannot_put_a_command_into_the_printed_script(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: tuple[str, ...], options: dict[str, object]
) -> None:
    # `plan --out $'/x\ntouch /tmp/owned\n#' | bash` ran the touch: the path was pasted into a comment.
    owned = tmp_path / "owned"
    out = tmp_path / f"x\ntouch {owned}\n#"
    # The command line refuses such a name, in one line naming the option ...
    capsys.readouterr()
    assert crdb(command[0], "--out", out, *command[1:]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out:") and err.count("\n") == 1, err
    # ... and the one printer behind it quotes it anyway, comments included: a folder so named (made
    # elsewhere and renamed), printed by the command's own code.
    made = tmp_path / "made"
    assert crdb("issue", "--out", made, "--quiet") == 0
    out.parent.mkdir(parents=True)
    made.rename(out)
    capsys.readouterr()
    assert cli.cli.commands[command[0]].callback(out=out, **options) == 0  # type: ignore[misc]
    text = capsys.readouterr().out
    assert text.startswith("#!/usr/bin/env bash"), text[:200]
    subprocess.run(["bash", "-n"], input=text, text=True, check=True)  # valid bash
    subprocess.run(["bash"], input=text, text=True, cwd=tmp_path, check=True, capture_output=True)
    assert not owned.exists(), "a command from --out ran"
    pkicheck.assert_ca(out / "certs/ca.crt")  # the script worked in the folder it was printed for


def test_a_plan_built_after_another_of_its_spec_is_the_plan_built_alone() -> None:
    """plan.build reuses the tasks the previous build of the same spec made (issue 16): whatever that
    build was given (keys kept, leaves capped at a CA's end, a folder signed elsewhere), the next one is
    what it would have been on its own (a copy of the spec is another object: nothing to reuse)."""
    the_spec = spec.parse(
        {
            "layout": "split-node",
            "key_type": "ec",
            "nodes": [{"name": "a", "hosts": ["a.example.com", "10.0.0.1"]}, {"name": "b", "hosts": ["b"]}],
            "clients": [{"user": "root"}, {"user": "maxroach", "pkcs8": True}],
            "ui": {"hosts": ["console.example.com"]},
        }
    )
    now = datetime.now(UTC)
    states = [
        None,
        plan.State(keep_keys=frozenset({"node:a", "client:root", "client-node:b", "ui"})),
        plan.State(fresh=frozenset({"ca"}), ca_ends={"ca": now + timedelta(days=30)}, now=now),
        plan.State(provenance=record.Provenance.SIGNED_ELSEWHERE),
    ]
    for first in states:
        for then in states:
            plan.build(the_spec, first)
            assert plan.build(the_spec, then) == plan.build(replace(the_spec), then), (first, then)


def test_a_planned_node_costs_under_4_5_kb_of_memory() -> None:
    """Issue 16 (peak memory): the plan of 10,000 nodes is held for the whole run. A node's part of it,
    with what the process keeps besides (plan._made's tasks, render's cache), was ~5.6 KB: each step had
    a __dict__, each node's steps their own copies of the CA's paths, and the render cache the context
    of every config it had rendered. Now ~3.9 KB (its config alone is ~1.2 KB)."""

    def nodes(n: int) -> spec.Spec:
        hosts = [[f"n{i}", f"n{i}.example.com", f"10.0.{i // 250}.{i % 250 + 1}"] for i in range(n)]
        named = [{"name": f"n{i}", "hosts": hosts[i]} for i in range(n)]
        return spec.parse({"key_type": "ec", "nodes": named, "clients": [{"user": "root"}]})

    plan.build(nodes(1))  # what the first plan of a process loads (templates): not a node's cost
    the_spec = nodes(1000)
    gc.collect()
    tracemalloc.start()
    try:
        built = plan.build(the_spec)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert sum(t.id.startswith("node:") for t in built.tasks) == 1000
    assert held < 4500 * 1000, f"{held / 1000:.0f} B a node"
