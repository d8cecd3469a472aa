"""The command line's contract: --help everywhere, one-line errors that name the field and the value,
exit status 2, and nothing written for a user mistake; `render` writes configs and nothing else."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.cli import main
from tests.conftest import crdb, no_hang, write_spec

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
            "error: nodes[0].host: ['a'] is not a known key (known: certs_dir, hosts, name, sql_addr, ssh)",
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


def test_a_missing_file_from_elsewhere_is_refused_by_the_commands_that_use_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`plan` and `render` read no file the spec names (review 11); `issue` and `csr` refuse it, one line,
    nothing written."""
    spec = write_spec(
        tmp_path / "spec",
        '[[clients]]\nuser = "a"\n[ui]\nhosts = ["a"]\nissuer = "import"\n'
        'cert = "nope.crt"\nkey = "nope.key"\n',
    )
    out = tmp_path / "out"
    for command in (["issue", "--out", out], ["csr", "--out", out]):
        capsys.readouterr()
        assert crdb(*command, "--config", spec) == 2, command
        err = capsys.readouterr().err
        assert err == f'error: ui.cert: "{tmp_path / "spec/nope.crt"}" is not an existing file\n', err
        assert not out.exists()
    assert crdb("plan", "--config", spec) == 0
    assert crdb("render", "--config", spec, "--out", out) == 0


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


# ------------------------------------------------------------------------------------- path options

# Every path option and argument: (the command line, with {bad} for the value tried and {base} for the
# sandbox; the name the error must give; what the path is for). "out": a folder or file the command
# makes or writes into; "in": one that must exist; "file": a file that is read.
PATH_OPTIONS = [
    ("issue --out {bad}", "--out", "out"),
    ("issue --config {bad} --out {base}/unused", "--config", "file"),
    ("plan --out {bad}", "--out", "in"),
    ("plan --config {bad}", "--config", "file"),
    ("render --out {bad}", "--out", "out"),
    ("render --config {bad} --out {base}/unused", "--config", "file"),
    ("csr --out {bad}", "--out", "out"),
    ("csr --config {bad} --out {base}/unused", "--config", "file"),
    ("import {bad} --out {base}/unused", "RETURNED", "in"),
    ("import {base}/returned --out {bad}", "--out", "in"),
    ("import {base}/returned --config {bad} --out {base}/unused", "--config", "file"),
    ("renew --out {bad}", "--out", "in"),
    ("renew --config {bad} --out {base}/pki", "--config", "file"),
    ("rotate-ca --out {bad}", "--out", "in"),
    ("rotate-ca --config {bad} --out {base}/pki", "--config", "file"),
    ("check {bad}", "TARGET", "in"),
    ("export k8s --out {bad} --from {base}/pki --config {base}/spec.toml", "--out", "out-file"),
    ("export k8s --out {base}/unused.yaml --from {bad}", "--from", "in"),
    ("export k8s --out {base}/unused.yaml --config {bad} --from {base}/pki", "--config", "file"),
    ("audit {bad}", "CERTS_DIR", "in"),
    ("list {bad}", "CERTS_DIR", "in"),
    ("diff --config {bad}", "--config", "file"),
    ("init {bad}", "FILE", "out-file"),
    ("export alert-rules --out {bad}", "--out", "out-file"),
    ("--openssl {bad} plan", "--openssl", "file"),
    ("probe 127.0.0.1:1 --out {bad}", "--out", "in"),
    ("probe 127.0.0.1:1 --certs-dir {bad}", "--certs-dir", "in"),
    ("probe 127.0.0.1:1 --config {bad} --out {base}/pki", "--config", "file"),
    ("audit {base}/pki/certs --crl {bad}", "--crl", "file"),
    ("list {base}/pki/certs --crl {bad}", "--crl", "file"),
]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder holding a regular file, a dangling symlink, a FIFO, a PKI, and (where mounts are
    allowed) `ro/`, a read-only file system."""
    base = tmp_path_factory.mktemp("paths")
    spec = write_spec(base, '[[clients]]\nuser = "root"\n')
    assert crdb("issue", "--config", spec, "--out", base / "pki", "--key-type", "ec", "--quiet") == 0
    (base / "returned").mkdir()
    (base / "file").write_text("")
    (base / "dangling").symlink_to(base / "nowhere")
    os.mkfifo(base / "fifo")
    with read_only_mount(base / "ro"):
        yield base


@contextmanager
def read_only_mount(where: Path) -> Iterator[bool]:
    """A read-only tmpfs at `where`; False (and a plain folder) where this process may not mount."""
    where.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", where], check=True, capture_output=True
        )
    except (OSError, subprocess.CalledProcessError):
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["umount", where], check=True)


def tree(base: Path) -> set[tuple[str, int, int]]:
    """Every name under `base` with its size and mtime: what "nothing written" compares."""
    found = set()
    for folder, dirs, files in os.walk(base):
        for name in dirs + files:
            st = (Path(folder) / name).lstat()
            found.add(((Path(folder) / name).relative_to(base).as_posix(), st.st_size, st.st_mtime_ns))
    return found


def unusable_paths(role: str) -> st.SearchStrategy[str]:
    """Paths no command can use for `role`: a newline in the name, below a regular file, a dangling
    symlink, a FIFO or a device where a file is read; for what is written, also /proc and a read-only
    mount (a folder that exists but cannot be written to: as root, permissions do not stop a write)."""
    name = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9 _.$#'-]{0,11}", fullmatch=True)
    shapes = [
        name.map(lambda n: f"{{base}}/a\n{n}"),
        name.map(lambda n: f"{{base}}/{n}\n"),
        name.map(lambda n: f"{{base}}/file/{n}"),
        st.just("{base}/dangling"),
        name.map(lambda n: f"{{base}}/dangling/{n}"),
        st.just("{base}/fifo"),
    ]
    if role == "file":
        shapes += [st.just("/dev/zero"), st.just("{base}/returned")]
    if role in ("in", "out"):
        shapes += [st.just("{base}/file")]
    if role in ("out", "out-file"):
        shapes += [name.map(lambda n: f"/proc/{n}"), name.map(lambda n: f"{{base}}/ro/{n}")]
    if role == "out-file":
        shapes += [st.just("/dev/null"), st.just("{base}/pki")]
    return st.one_of(shapes)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_path_option_refuses_an_unusable_path_in_one_line(
    data: st.DataObject, sandbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 11: no traceback for a path. Each value is refused with exit 2 and one line that starts with
    `error:` and names the option, and nothing is written anywhere."""
    command, option, role = data.draw(st.sampled_from(PATH_OPTIONS))
    bad = data.draw(unusable_paths(role)).replace("{base}", str(sandbox))
    argv = [a.replace("{base}", str(sandbox)) for a in command.split(" ")]
    argv = [bad if a == "{bad}" else a for a in argv]
    before = tree(sandbox)
    capsys.readouterr()
    with no_hang(10):
        status = main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    assert status == 2, (argv, captured)
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: "), captured.err
    assert option in captured.err, captured.err
    assert tree(sandbox) == before, f"{argv} wrote something"


def test_a_spec_an_editor_saved_with_a_byte_order_mark_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 11: a spec starting with a UTF-8 BOM failed with "Invalid statement"."""
    spec = tmp_path / "spec.toml"
    spec.write_bytes(b'\xef\xbb\xbf[[clients]]\nuser = "root"\n')
    assert crdb("plan", "--config", spec) == 0
    assert "client.root" in capsys.readouterr().out


def test_a_spec_is_toml_1_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Specs are read by tomli 2.5+ (issue 16: ~2.5 times tomllib's speed), which reads TOML 1.1: an
    inline table over several lines, with a trailing comma, is a spec like any other (tomllib of Python
    3.11 refuses it). Pinned in pyproject.toml, so that no install reads fewer specs than another."""
    spec = write_spec(tmp_path, 'ui = {\n  hosts = ["ui.example.com"],\n}\n[[clients]]\nuser = "root"\n')
    assert crdb("plan", "--config", spec) == 0
    assert "ui.example.com" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("a = " + "[" * 500 + "]" * 500 + "\n", "nested too deeply"),
        ('[[nodes]]\nname = "n"\nhosts = ["' + "h" * 500_000 + '"]\n', '..." (500000 characters)'),
        ("# " + "x" * (17 << 20) + "\n", "larger than 16384 KB"),
    ],
    ids=["nested-500-levels", "a-500-KB-value", "a-17-MB-spec"],
)
def test_a_spec_too_deep_or_too_big_is_one_short_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, error: str
) -> None:
    """Issue 11: a TOML nested 500 levels ended in a RecursionError; a 10 MB value was echoed whole."""
    spec = write_spec(tmp_path, text)
    assert crdb("issue", "--config", spec, "--out", tmp_path / "out") == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.err.count("\n") == 1, captured.err[:500]
    assert error in captured.err and len(captured.err) < 400, captured.err[:500]
    assert not (tmp_path / "out").exists()
