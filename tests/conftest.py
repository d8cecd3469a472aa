from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from orchestrator import names
from orchestrator.cli import main
from tests import peers

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"

CLUSTER_SPEC = """\
profile = "secure"
layout = "standard"

[[nodes]]
name = "node1"
hosts = ["node1.example.com", "localhost", "127.0.0.1"]

[[nodes]]
name = "node2"
hosts = ["node2.example.com", "10.0.0.2", "::1"]

[[nodes]]
name = "node3"
hosts = ["node3.example.com", "*.nodes.example.com", "10.0.0.3"]

[[clients]]
user = "root"

[[clients]]
user = "maxroach"
"""


def crdb(*args: str | Path) -> int:
    """Run the command line in-process, as a user would type it."""
    return main([str(a) for a in args])


def is_stamp(path: Path) -> bool:
    """The stamp a clean run leaves in .crdb-certs/ (orchestrator/stamp.py): a cache, not the PKI."""
    return path.parts[-2:] == tuple(names.STAMP.split("/"))


def write_spec(folder: Path, text: str, name: str = "spec.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture(scope="session", autouse=True)
def _postgres_templates() -> Iterator[None]:
    """The data directory tests/peers.py copies each PostgreSQL cluster from: removed after the session."""
    yield
    peers.remove_templates()


@pytest.fixture(scope="session")
def default_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `make certs` makes: the embedded default spec, issued once for the whole session."""
    out = tmp_path_factory.mktemp("default")
    assert crdb("issue", "--config", REPO / "certs.toml", "--out", out, "--quiet") == 0
    return out


@pytest.fixture(scope="session")
def cluster_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three nodes, two users."""
    out = tmp_path_factory.mktemp("cluster")
    spec = write_spec(tmp_path_factory.mktemp("cluster-spec"), CLUSTER_SPEC)
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    return out


class Hung(Exception):
    """Not an OSError (as TimeoutError is): the code under test must not catch it as a read error."""


@contextmanager
def no_hang(seconds: int = 20) -> Iterator[None]:
    """Fail, instead of waiting forever, if the block takes longer (a read of a FIFO or /dev/zero)."""

    def expire(_signum: int, _frame: object) -> None:
        raise Hung(f"still running after {seconds} s: it hangs")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
