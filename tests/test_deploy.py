"""Issue 17: delivering each node's certs directory over SSH with Ansible, reloading, and checking with
`probe` that the node serves what this folder issued. Real parts: OpenSSH's sshd on a loopback port,
ansible-playbook, and stand-in nodes that re-read their certificate on SIGHUP as CockroachDB does."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator import record, spec
from orchestrator.certcheck import load_cert
from orchestrator.errors import SpecError
from tests.conftest import REPO, crdb, write_spec
from tests.fleet import SSHD, Sshd, StandIn, free_port
from tests.peers import served_certificate
from tests.test_hostile import CORPUS, toml_doc

# ------------------------------------------------------------------------------ the spec's new keys

DEPLOY_FIELDS = {
    "nodes[0].ssh": lambda v: {"nodes": [{"name": "n", "hosts": ["localhost"], "ssh": v}]},
    "nodes[0].certs_dir": lambda v: {"nodes": [{"name": "n", "hosts": ["localhost"], "certs_dir": v}]},
    "nodes[0].sql_addr": lambda v: {"nodes": [{"name": "n", "hosts": ["localhost"], "sql_addr": v}]},
    "deploy.reload": lambda v: {"nodes": [{"name": "n", "hosts": ["localhost"]}], "deploy": {"reload": v}},
}
EXTRA = [
    "root@127.0.0.1:2222",
    "deploy@node1.example.com",
    "-oProxyCommand=touch /tmp/x",
    "u@h:0",
    "u@h:65536",
    "[::1]:22",
    "root@[::1]",
    "[2001:DB8::1]",
    "::1:22",
    "/var/lib/cockroach/certs",
    "/var/lib/cockroach/../../etc",
    "/srv/{{ lookup('pipe', 'id') }}",
    "pkill -HUP -x cockroach",
    "sh -c 'kill -HUP $(cat /run/cockroach.pid)'",
    "pkill -HUP cockroach; rm -rf /",
    'echo "$(id)"',
    "systemctl reload cockroach",
    "'unterminated",
    "-x cockroach",
    "kill -HUP `pidof cockroach`",
    "localhost:26257",
]


def _cases() -> list[Any]:
    return [
        pytest.param(field, make, value, id=f"{field}-{i}")
        for field, make in DEPLOY_FIELDS.items()
        for i, value in enumerate([*CORPUS, *EXTRA])
    ]


@pytest.mark.parametrize(("field", "make", "value"), _cases())
def test_every_deploy_value_is_refused_in_one_line_or_safe(
    field: str, make: Any, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make(value)
    try:
        the_spec = spec.parse(tomllib.loads(toml_doc(data)))
    except SpecError as e:
        assert e.field == field
        path = write_spec(tmp_path, toml_doc(data))
        capsys.readouterr()
        assert crdb("issue", "--config", path, "--out", tmp_path / "out") == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: {field}: "), err
        assert not (tmp_path / "out").exists()
        return
    node = the_spec.nodes[0]
    if field == "deploy.reload":
        # No shell runs it; so that it means what it would in a shell, the argv a shell makes of it is
        # the one shlex makes (a real sh, on a value that holds nothing it could expand).
        words = subprocess.run(
            ["sh", "-c", "printf '%s\\0' " + value], capture_output=True, check=True
        ).stdout.split(b"\0")[:-1]
        assert [w.decode() for w in words] == shlex.split(the_spec.reload)
        assert the_spec.reload == value
        assert spec.parse(tomllib.loads(record.of(the_spec))["spec"]) == the_spec
        return
    written = {
        "nodes[0].ssh": node.ssh,
        "nodes[0].certs_dir": node.certs_dir,
        "nodes[0].sql_addr": node.sql_addr,
    }
    accepted = written[field]
    assert accepted is not None and accepted.isascii() and accepted.isprintable()
    assert not set(accepted) & set(" \t$`;|&<>(){}*?'\"\\!#~%"), accepted
    assert not accepted.startswith("-")
    again = spec.parse(tomllib.loads(record.of(the_spec))["spec"])
    assert again == the_spec, "the record reads back the same"


# ------------------------------------------------------------------------- a fleet on this machine

# .ci/run installs openssh-server; a machine without it (or not root) cannot run these.
needs_sshd = pytest.mark.skipif(not SSHD.exists() or os.geteuid() != 0, reason="needs sshd, as root")
RELOAD = "pkill -HUP -F ../standin.pid"  # run in certs_dir: signals that node's stand-in only


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    server = Sshd(tmp_path_factory.mktemp("sshd"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ansible_env(sshd: Sshd, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key, value in sshd.env().items():
        monkeypatch.setenv(key, value)
    return sshd.env()


class Fleet:
    """N stand-in nodes, each serving the certificate `issue` made for it from its own certs_dir; then
    every node certificate renewed in the PKI (so each node serves an old one until it is deployed)."""

    def __init__(self, base: Path, sshd: Sshd, count: int, reload: str = RELOAD, fail: str = "") -> None:
        self.base, self.pki = base, base / "pki"
        self.names = [f"node{i}" for i in range(1, count + 1)]
        ports = {name: free_port() for name in self.names}
        text = 'key_type = "ec"\n\n[deploy]\nreload = ' + _toml_str(reload) + "\n"
        for name in self.names:
            certs = base / "nodes" / name / "certs"
            text += (
                f'\n[[nodes]]\nname = "{name}"\nhosts = ["{name}.example.com", "127.0.0.1"]\n'
                f'ssh = "root@127.0.0.1:{sshd.port}"\ncerts_dir = "{certs}"\n'
                f'sql_addr = "127.0.0.1:{ports[name]}"\n'
            )
        assert crdb("issue", "--config", write_spec(base, text), "--out", self.pki, "--quiet") == 0
        self.standins: dict[str, StandIn] = {}
        for name in self.names:
            shutil.copytree(self.pki / "nodes" / name, base / "nodes" / name / "certs")
            self.standins[name] = StandIn(base / "nodes" / name, ports[name])
            if name == fail:
                (base / "nodes" / name / "standin.pid").write_text("999999999\n")  # its reload fails
        self.old = {name: self.held(name) for name in self.names}
        assert crdb("renew", "--out", self.pki, "--nodes", ",".join(self.names), "--quiet") == 0
        self.new = {name: _files(self.pki / "nodes" / name) for name in self.names}

    def held(self, name: str) -> dict[str, tuple[bytes, int]]:
        return _files(self.base / "nodes" / name / "certs")

    def served_serial(self, name: str) -> int:
        cert = served_certificate(self.standins[name].port)
        assert cert is not None
        return cert.serial_number

    def issued_serial(self, name: str) -> int:
        return load_cert(self.pki / "nodes" / name / "node.crt").serial_number

    def stop(self) -> None:
        for standin in self.standins.values():
            standin.stop()


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _files(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), stat.S_IMODE(p.stat().st_mode)) for p in folder.iterdir()}


@pytest.fixture
def fleet_of(tmp_path: Path, sshd: Sshd, ansible_env: dict[str, str]) -> Iterator[Any]:
    made: list[Fleet] = []

    def make(count: int, **kwargs: Any) -> Fleet:
        made.append(Fleet(tmp_path, sshd, count, **kwargs))
        return made[-1]

    try:
        yield make
    finally:
        for fleet in made:
            fleet.stop()


BIN = Path(sys.executable).parent  # ansible-playbook, installed beside this Python (the test extra)


def _playbook(folder: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ansible-playbook", "-i", folder / "inventory.yml", folder / "deploy.yml", *extra],
        capture_output=True,
        text=True,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "PATH": f"{BIN}:{os.environ['PATH']}"},
        timeout=300,
    )


@needs_sshd
def test_export_ansible_runs_with_plain_ansible_playbook_and_a_second_run_changes_nothing(
    fleet_of: Any, tmp_path: Path
) -> None:
    fleet = fleet_of(2)
    os.chown(fleet.base / "nodes/node1/certs", 4321, 4321)  # the folder's owner (cockroach) is kept
    play = tmp_path / "play"
    assert crdb("export", "ansible", "--from", fleet.pki, "--out", play) == 0
    inventory = (play / "inventory.yml").read_text()
    assert "!unsafe '/" in inventory and "ansible_port" in inventory
    assert [t for t in yaml.safe_load((play / "deploy.yml").read_text())[0]["tasks"]]

    checked = _playbook(play, "--check", "--diff")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "changed=1" in checked.stdout and "-----BEGIN CERTIFICATE-----" in checked.stdout
    assert "PRIVATE KEY" not in checked.stdout, "a key's content is never shown"
    assert all(fleet.held(n) == fleet.old[n] for n in fleet.names), "check mode touched a node"

    first = _playbook(play)
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.count("changed=1") == 2
    for name in fleet.names:
        certs = fleet.base / "nodes" / name / "certs"
        assert fleet.held(name) == fleet.new[name]
        assert stat.S_IMODE(certs.stat().st_mode) == 0o700
        assert {n: m for n, (_, m) in fleet.held(name).items()} == {
            "ca.crt": 0o644,
            "node.crt": 0o644,
            "node.key": 0o400,
        }
        assert _files(certs.with_name("certs.crdb-certs-previous")) == fleet.old[name], "the old one kept"
        deadline = time.monotonic() + 10
        while fleet.served_serial(name) != fleet.issued_serial(name) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert fleet.served_serial(name) == fleet.issued_serial(name), "the node reloaded"
    owned = {(p.stat().st_uid, p.stat().st_gid) for p in (fleet.base / "nodes/node1/certs").iterdir()}
    assert owned == {(4321, 4321)} and (fleet.base / "nodes/node1/certs").stat().st_uid == 4321

    second = _playbook(play)
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.count("changed=0") == 2 and "changed=1" not in second.stdout


@needs_sshd
def test_no_value_is_ever_evaluated_as_a_template(fleet_of: Any, tmp_path: Path) -> None:
    """A reload command holding Jinja (inside single quotes: the spec accepts it) runs as written."""
    reload = 'sh -c \'echo "{{ 7 * 7 }}" > ../reloaded && kill -HUP "$(cat ../standin.pid)"\''
    fleet = fleet_of(1, reload=reload)
    assert crdb("deploy", "--out", fleet.pki) == 0
    assert (fleet.base / "nodes/node1/reloaded").read_text() == "{{ 7 * 7 }}\n"


@needs_sshd
def test_deploy_rolls_node_by_node_and_stops_at_the_node_whose_reload_fails(
    fleet_of: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = fleet_of(4, fail="node2")
    capsys.readouterr()
    assert crdb("deploy", "--out", fleet.pki) == 1
    out, err = capsys.readouterr()
    assert "node1: delivered, reloaded; serves nodes/node1/node.crt (probe)" in out
    [line] = err.splitlines()
    assert line.startswith("error: deploy: node2: reload failed (exit 1, pkill -HUP -F ../standin.pid)"), line
    assert line.endswith("not touched: node3, node4"), line
    assert fleet.served_serial("node1") == fleet.issued_serial("node1")
    assert fleet.held("node2") == fleet.new["node2"], "delivered, but its reload failed"
    for name in ("node3", "node4"):
        assert fleet.held(name) == fleet.old[name], f"{name} was touched"
        assert fleet.served_serial(name) != fleet.issued_serial(name)


@needs_sshd
def test_deploy_check_changes_nothing_and_a_node_that_does_not_reload_is_named(
    fleet_of: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = fleet_of(2)
    capsys.readouterr()
    assert crdb("deploy", "--out", fleet.pki, "--check") == 0
    out = capsys.readouterr().out
    assert "node1: would be replaced and reloaded" in out and "check: 2 of 2 node(s) would change" in out
    assert all(fleet.held(n) == fleet.old[n] for n in fleet.names)
    # node2's stand-in ignores SIGHUP: its files arrive, it goes on serving the old certificate.
    fleet.standins["node2"].proc.send_signal(signal.SIGSTOP)
    try:
        with _fast_reload_wait():
            assert crdb("deploy", "--out", fleet.pki, "--nodes", "node2") == 1
    finally:
        fleet.standins["node2"].proc.send_signal(signal.SIGCONT)
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: deploy: node2: probe 127.0.0.1:"), line
    assert fleet.held("node1") == fleet.old["node1"], "--nodes node2 touched node1"


@contextlib.contextmanager
def _fast_reload_wait() -> Iterator[None]:
    from orchestrator import deploy

    saved, deploy.RELOAD_WAIT = deploy.RELOAD_WAIT, 2.0
    try:
        yield
    finally:
        deploy.RELOAD_WAIT = saved


@needs_sshd
def test_a_kill_in_the_middle_leaves_each_node_with_its_old_or_its_new_folder(
    fleet_of: Any, tmp_path: Path
) -> None:
    fleet = fleet_of(3)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for delay in (1.0, 2.0, 3.0, 4.5):
        run = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "deploy", "--out", str(fleet.pki)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(delay)
        os.killpg(run.pid, signal.SIGKILL)  # deploy, ansible-playbook and its ssh: all at once
        run.wait()
        time.sleep(0.5)  # what already runs on the node (it is not killed with the controller) ends
        for name in fleet.names:
            held = fleet.held(name)
            assert held in (fleet.old[name], fleet.new[name]), f"{name}: a mix after a kill at {delay}s"
        for name in fleet.names:  # back to the old folders for the next round
            certs = fleet.base / "nodes" / name / "certs"
            shutil.rmtree(certs)
            certs.mkdir(mode=0o700)
            for file, (content, mode) in fleet.old[name].items():
                (certs / file).write_bytes(content)
                (certs / file).chmod(mode)
    assert crdb("deploy", "--out", fleet.pki) == 0, "a run after the kills completes the roll"
    assert all(fleet.held(n) == fleet.new[n] for n in fleet.names)
