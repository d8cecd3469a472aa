"""`crdb-certs init`: the spec it writes is the one `issue` then makes, its values are checked as the spec
checks them before anything is written, and an existing file is kept unless --force."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from orchestrator import spec
from orchestrator.errors import SpecError
from tests.conftest import REPO, crdb

OPTIONAL = ("# key_type", "# key_bits", "# ca_days", "# cert_days", "# pkcs8", "# [ui]", "# [ca]")


def test_init_alone_writes_the_default_spec_with_every_optional_key_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert crdb("init") == 0
    assert (
        capsys.readouterr().out
        == "certs.toml: written; next: crdb-certs issue --config certs.toml --out DIR\n"
    )
    text = (tmp_path / "certs.toml").read_text()
    assert spec.load(tmp_path / "certs.toml") == spec.load(REPO / "certs.toml")
    for key in (*OPTIONAL, "# [subject]", "# organization", "# issuer", "# hosts"):
        assert key in text, key
    # Each commented key is one the spec reads: uncommented, the file is still a valid spec.
    uncommented = "\n".join(
        line.removeprefix("# ")
        for line in text.splitlines()
        if line.startswith(("# key_type", "# ca_days", "# cert_days", "# [subject]", "# organization"))
        or not line.startswith("#")
    )
    assert spec.parse(tomllib.loads(uncommented), tmp_path).ca_days == 3660
    # `issue` takes it as it is.
    assert crdb("issue", "--config", "certs.toml", "--out", "out", "--quiet") == 0
    assert (tmp_path / "out/nodes/node1/node.crt").is_file()
    assert (tmp_path / "out/certs/client.root.crt").is_file()


def test_init_with_options_writes_what_issue_then_makes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cluster.toml"
    args = ["--node", "n1=n1.example.com,10.0.0.1", "--node", "n2 = n2.example.com, ::1"]
    args += ["--user", "Max", "--user", "root", "--profile", "docs", "--layout", "split-node"]
    assert crdb("init", path, *args) == 0
    written = spec.load(path)
    assert [(n.name, n.hosts) for n in written.nodes] == [
        ("n1", ("n1.example.com", "10.0.0.1")),
        ("n2", ("n2.example.com", "::1")),
    ]
    assert [c.user for c in written.clients] == ["max", "root"]  # normalized, as CockroachDB does
    assert (written.profile, written.layout) == ("docs", "split-node")
    assert "# cert_days = 365" in path.read_text()  # the docs profile's own default
    out = tmp_path / "out"
    assert crdb("issue", "--config", path, "--out", out, "--key-type", "ec", "--quiet") == 0
    assert {p.name for p in (out / "nodes/n2").iterdir()} >= {"node.crt", "client.node.crt"}
    assert (out / "certs/client.max.crt").is_file()


def test_init_never_replaces_a_file_unless_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "certs.toml"
    path.write_text("# mine\n")
    assert crdb("init", path, "--user", "maxroach") == 2
    err = capsys.readouterr().err
    assert err == f'error: FILE: "{path}" exists; --force replaces it\n'
    assert path.read_text() == "# mine\n"
    assert crdb("init", path, "--user", "maxroach", "--force") == 0
    assert [c.user for c in spec.load(path).clients] == ["maxroach"]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("--node", "n1"), 'error: --node: "n1" is not NAME=HOST,HOST'),
        (("--node", "n1="), 'error: --node: "n1=" is not NAME=HOST,HOST'),
        (("--node", "n1=a b"), 'error: --node: "a b" contains white space'),
        (("--node", "N1=localhost"), 'error: --node: "N1" is not a valid node name'),
        (("--node", "n1=a..b"), 'error: --node: "a..b" has an empty label'),
        (("--user", "-x"), 'error: --user: "-x" is not a valid CockroachDB user name'),
        (("--node", "a=h", "--node", "a=g"), 'error: nodes[1].name: "a" appears twice'),
        (("--layout", "split-ca", "--user", "node"), 'error: clients: "node" is made by the split-ca layout'),
        (("--namespace", "db"), "error: --namespace: 'db' needs --kubernetes RELEASE"),
        (("--profile", "nope"), "error: Invalid value for '--profile'"),
    ],
)
def test_init_refuses_a_bad_value_in_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], error: str
) -> None:
    assert crdb("init", tmp_path / "certs.toml", *args) == 2
    err = capsys.readouterr().err
    assert err.startswith(error) and err.count("\n") == 1, err
    assert not (tmp_path / "certs.toml").exists()


def test_init_kubernetes_names_the_release_and_namespace(tmp_path: Path) -> None:
    path = tmp_path / "k8s.toml"
    assert crdb("init", path, "--kubernetes", "cockroachdb", "--namespace", "db") == 0
    text = path.read_text()
    try:
        spec.parse({"kubernetes": {"release": "x"}, "clients": [{"user": "root"}]})
    except SpecError:
        # This crdb-certs has no [kubernetes] table yet: the keys are written commented out, with a note,
        # and the spec still works (the default node).
        assert "# This crdb-certs does not read [kubernetes] yet" in text
        assert '# [kubernetes]\n# release = "cockroachdb"\n# namespace = "db"\n' in text
        assert [n.name for n in spec.load(path).nodes] == ["node1"]
    else:
        assert '\n[kubernetes]\nrelease = "cockroachdb"\nnamespace = "db"\n' in text
    assert crdb("issue", "--config", path, "--out", tmp_path / "out", "--key-type", "ec", "--quiet") == 0


@pytest.mark.parametrize("command", [("init",), ("export", "alert-rules")])
def test_the_new_commands_have_help(command: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    assert crdb(*command, "--help") == 0
    assert "Usage: crdb-certs " + " ".join(command) in capsys.readouterr().out
