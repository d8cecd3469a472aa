"""The command line's contract: --help everywhere, one-line errors that name the field and the value,
exit status 2, and nothing written for a user mistake; `render` writes configs and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import crdb, write_spec

COMMANDS = ["issue", "plan", "render", "csr", "import", "audit", "list"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert crdb(command, "--help") == 0
    assert "Usage: crdb-certs " + command in capsys.readouterr().out


@pytest.mark.parametrize("group", [(), ("export",)], ids=["crdb-certs", "export"])
def test_no_command_prints_the_help_not_an_error(
    group: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    # As `git` alone: the usage on stdout, and no "error:"; exit 2 (a usage error), as click's own exit
    # for a group named without a command, so a script that lost its command does not pass.
    assert crdb(*group) == 2
    captured = capsys.readouterr()
    assert captured.out.startswith(" ".join(("Usage: crdb-certs", *group, "[OPTIONS] COMMAND [ARGS]...")))
    assert "Commands:" in captured.out
    assert captured.err == ""


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            '[[nodes]]\nname = "n"\nhost = ["a"]\n',
            "error: nodes[0].host: ['a'] is not a known key (known: hosts",
        ),
        ('[[nodes]]\nname = "n"\nhosts = ["a b"]\n', 'error: nodes[0].hosts[0]: "a b"'),
        ('[[nodes]]\nname = "n"\nhosts = []\n', "error: nodes[0].hosts: [] must be a non-empty list"),
        (
            '[[nodes]]\nname = "../x"\nhosts = ["a"]\n',
            'error: nodes[0].name: "../x" is not a valid node name',
        ),
        ('[[clients]]\nuser = "a"\n[[clients]]\nuser = "A"\n', 'error: clients[1].user: "a" appears twice'),
        (
            'profile = "strict"\n[[clients]]\nuser = "a"\n',
            'error: profile: "strict" is not one of secure, docs',
        ),
        (
            'layout = "split-ca"\n[[clients]]\nuser = "node"\n',
            'error: clients: "node" is made by the split-ca',
        ),
        ("nodes = [\n", "not valid TOML"),
        ("", "error: nodes: [] is empty, and so is clients"),
        (
            'cert_days = 4000\n[[clients]]\nuser = "a"\n',
            "error: cert_days: 4000 is longer than the CA's lifetime",
        ),
        ('[[nodes]]\nname = "n"\nhosts = ["::ffff:10.0.0.1"]\n', "list 10.0.0.1 instead"),
        (
            '[[clients]]\nuser = "a"\n[ui]\nhosts = ["a"]\nissuer = "import"\n'
            'cert = "nope.crt"\nkey = "nope.key"\n',
            'error: ui.cert: "nope.crt" is not an existing file',
        ),
    ],
)
def test_bad_spec_is_one_line_exit_2_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, error: str
) -> None:
    spec = write_spec(tmp_path / "spec", text)
    out = tmp_path / "out"
    for command in (["issue", "--out", out], ["plan"], ["render", "--out", out], ["csr", "--out", out]):
        capsys.readouterr()
        assert crdb(*command, "--config", spec) == 2, command
        captured = capsys.readouterr()
        assert error in captured.err, captured.err
        assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
        assert not out.exists()


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert crdb("issue", "--config", tmp_path / "nope.toml", "--out", tmp_path / "out") == 2
    assert "--config: cannot read" in capsys.readouterr().err


def test_render_writes_only_configs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(
        tmp_path / "spec",
        'layout = "split-ca"\n[[nodes]]\nname = "n1"\nhosts = ["a.example.com"]\n'
        '[[clients]]\nuser = "root"\n[ui]\nhosts = ["a.example.com"]\nissuer = "ui-ca"\n',
    )
    out = tmp_path / "out"
    assert crdb("render", "--config", spec, "--out", out) == 0
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == [
        "ca-client.cnf",
        "ca-ui.cnf",
        "ca.cnf",
        "requests/client-node.n1.cnf",
        "requests/client.root.cnf",
        "requests/node.n1.cnf",
        "requests/ui.cnf",
    ]
    assert "commonName = Cockroach Client CA" in (out / "ca-client.cnf").read_text()
    assert "database = ca-client.index.txt" in (out / "ca-client.cnf").read_text()


def test_a_bad_option_is_one_line_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert crdb("issue", "--profile", "strict", "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Invalid value for '--profile'") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_lost_docs_serial_file_is_refused_not_reset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path / "spec", '[[clients]]\nuser = "a"\n')
    out = tmp_path / "out"
    assert crdb("issue", "--config", spec, "--out", out, "--profile", "docs", "--quiet") == 0
    (out / "serial.txt").unlink()
    write_spec(tmp_path / "spec", '[[clients]]\nuser = "a"\n[[clients]]\nuser = "b"\n')
    capsys.readouterr()
    assert crdb("issue", "--config", spec, "--out", out, "--profile", "docs") == 2
    assert "serial.txt: missing, but its CA still exists" in capsys.readouterr().err
    assert not (out / "certs" / "client.b.crt").exists()


def test_reports_print_names_verbatim(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What `issue` prints is plain text: a folder called `[bold]x` or `:smile:` is shown as it is named
    (rich markup or emoji codes would have rewritten both)."""
    out = tmp_path / "[bold]certs :smile:"
    spec = write_spec(tmp_path, '[[clients]]\nuser = "root"\n')
    assert crdb("issue", "--config", spec, "--out", out, "--key-type", "ec") == 0
    said = capsys.readouterr().out
    assert f"commands run: {out}/transcript-" in said
    assert crdb("issue", "--config", spec, "--out", out, "--key-type", "ec") == 0
    assert f"{out}: up to date, nothing changed" in capsys.readouterr().out
