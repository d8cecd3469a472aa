"""Issue 17: delivering each node's certs directory over SSH with Ansible, reloading, and checking with
`probe` that the node serves what this folder issued. Real parts: OpenSSH's sshd on a loopback port,
ansible-playbook, and stand-in nodes that re-read their certificate on SIGHUP as CockroachDB does."""

from __future__ import annotations

import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from orchestrator import record, spec
from orchestrator.errors import SpecError
from tests.conftest import crdb, write_spec
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
