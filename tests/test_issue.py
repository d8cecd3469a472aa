"""`crdb-certs issue`: what it makes, checked by an independent reading (tests/pkicheck.py)."""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
import tracemalloc
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from orchestrator import bundles, names, openssl, runner
from orchestrator.spec import load
from orchestrator.steps import MakeDirs, Plan, Task, Write
from tests import pkicheck
from tests.conftest import CLUSTER_SPEC, REPO, crdb, is_stamp, write_spec
from tests.peers import PostgresServer
from tests.pkicheck import CLIENT, SERVER

CLUSTER = {
    "node1": ["node1.example.com", "localhost", "127.0.0.1"],
    "node2": ["node2.example.com", "10.0.0.2", "::1"],
    "node3": ["node3.example.com", "*.nodes.example.com", "10.0.0.3"],
}


def files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_default_spec_makes_the_docs_certs_directory(default_pki: Path) -> None:
    certs = default_pki / "certs"
    assert files(certs) == {"ca.crt", "node.crt", "node.key", "client.root.crt", "client.root.key"}
    assert files(default_pki / "my-safe-directory") == {"ca.key"}
    assert files(default_pki / "nodes") == {"node1"}
    assert files(default_pki / "nodes" / "node1") == {"ca.crt", "node.crt", "node.key"}
    ca = pkicheck.assert_ca(certs / "ca.crt")
    assert ca.cn == ["Cockroach CA"]
    pkicheck.assert_key_pair(certs / "ca.crt", default_pki / "my-safe-directory" / "ca.key")
    for folder in (certs, default_pki / "nodes" / "node1"):
        pkicheck.assert_node(
            folder / "node.crt",
            ["localhost", "127.0.0.1"],
            certs / "ca.crt",
            ["node"],
            {SERVER, CLIENT},
            secure=True,
        )
    pkicheck.assert_client(certs / "client.root.crt", "root", certs / "ca.crt", secure=True)


def test_keys_are_owner_only_and_certificates_readable(default_pki: Path) -> None:
    for key in default_pki.rglob("*.key"):
        assert pkicheck.mode(key) == 0o400, key
    for cert in (default_pki / "certs").glob("*.crt"):
        assert pkicheck.mode(cert) == 0o644, cert
    assert pkicheck.mode(default_pki / "my-safe-directory") == 0o700


def test_three_nodes_each_get_their_own_bundle_and_sans(cluster_pki: Path) -> None:
    ca = cluster_pki / "certs" / "ca.crt"
    assert files(cluster_pki / "certs") == {
        "ca.crt",
        "client.root.crt",
        "client.root.key",
        "client.maxroach.crt",
        "client.maxroach.key",
    }
    serials = set()
    for name, hosts in CLUSTER.items():
        bundle = cluster_pki / "nodes" / name
        assert files(bundle) == {"ca.crt", "node.crt", "node.key"}
        assert (bundle / "ca.crt").read_bytes() == ca.read_bytes()
        node = pkicheck.assert_node(bundle / "node.crt", hosts, ca, ["node"], {SERVER, CLIENT}, secure=True)
        serials.add(node.cert.serial_number)
    for user in ("root", "maxroach"):
        client = pkicheck.assert_client(cluster_pki / "certs" / f"client.{user}.crt", user, ca, secure=True)
        serials.add(client.cert.serial_number)
    assert len(serials) == 5, "every certificate has its own serial"


def test_no_ca_key_pem_copy_or_request_in_any_certs_directory(cluster_pki: Path, default_pki: Path) -> None:
    for out in (cluster_pki, default_pki):
        for folder in [out / "certs", *(out / "nodes").iterdir()]:
            for path in folder.iterdir():
                assert path.suffix in {".crt", ".key"}, path
                assert "BEGIN" in path.read_text()
                if path.suffix == ".key":
                    assert path.name != "ca.key"
                    ca_key = (out / "my-safe-directory" / "ca.key").read_bytes()
                    assert path.read_bytes() != ca_key


def _files(out: Path) -> dict[Path, tuple[int, bytes]]:
    """Every file's mtime and bytes, the stamp of a clean run aside (a cache the second run may write)."""
    return {
        p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*") if p.is_file() and not is_stamp(p)
    }


def test_second_run_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert crdb("issue", "--out", out, "--quiet") == 0
    before = _files(out)
    capsys.readouterr()
    assert crdb("issue", "--out", out) == 0
    assert "nothing changed" in capsys.readouterr().out
    after = _files(out)
    assert after == before


def test_a_new_node_and_user_cost_one_certificate_each(tmp_path: Path) -> None:
    one = '[[nodes]]\nname = "a"\nhosts = ["a.example.com"]\n[[clients]]\nuser = "root"\n'
    spec = write_spec(tmp_path, one)
    out = tmp_path / "out"
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    kept = {
        p: p.read_bytes()
        for p in [out / "certs/ca.crt", out / "nodes/a/node.crt", out / "certs/client.root.crt"]
    }
    write_spec(
        tmp_path, one + '[[nodes]]\nname = "b"\nhosts = ["b.example.com"]\n[[clients]]\nuser = "bob"\n'
    )
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    assert {p: p.read_bytes() for p in kept} == kept, "existing certificates were re-issued"
    ca = out / "certs" / "ca.crt"
    pkicheck.assert_node(
        out / "nodes/b/node.crt", ["b.example.com"], ca, ["node"], {SERVER, CLIENT}, secure=True
    )
    pkicheck.assert_client(out / "certs/client.bob.crt", "bob", ca, secure=True)
    # With two nodes, certs/ (the clients' folder) is no longer node a's certs directory: a's key and
    # certificate (CN=node, clientAuth) leave it for the backup, and stay in nodes/a/.
    assert not (out / "certs" / "node.crt").exists() and not (out / "certs" / "node.key").exists()
    [backup] = (out / "backup").iterdir()
    assert (backup / "certs/node.key").read_bytes() == (out / "nodes/a/node.key").read_bytes()
    assert stat.S_IMODE((backup / "certs/node.key").stat().st_mode) == 0o400


def test_changed_hosts_reissue_only_that_node(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, '[[nodes]]\nname = "a"\nhosts = ["a.example.com"]\n')
    out = tmp_path / "out"
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    ca_before = (out / "certs/ca.crt").read_bytes()
    write_spec(tmp_path, '[[nodes]]\nname = "a"\nhosts = ["a.example.com", "10.1.2.3"]\n')
    assert crdb("issue", "--config", spec, "--out", out, "--quiet", "--reissue", "a") == 0
    assert (out / "certs/ca.crt").read_bytes() == ca_before
    for folder in (out / "nodes/a", out / "certs"):
        pkicheck.assert_node(
            folder / "node.crt",
            ["a.example.com", "10.1.2.3"],
            out / "certs/ca.crt",
            ["node"],
            {SERVER, CLIENT},
            secure=True,
        )


def test_check_reports_then_issue_then_check_is_clean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert crdb("issue", "--check", "--out", out) == 1
    assert "would make: node node1" in capsys.readouterr().out
    assert not (out / "certs").exists(), "--check wrote files"
    assert crdb("issue", "--out", out, "--quiet") == 0
    assert crdb("issue", "--check", "--out", out) == 0


def test_transcript_is_a_runnable_record_of_the_run(default_pki: Path, tmp_path: Path) -> None:
    [transcript] = list(default_pki.glob("transcript-*.sh"))
    text = transcript.read_text()
    assert "openssl genrsa -out my-safe-directory/ca.key 2048" in text
    assert "BEGIN" not in text, "no key material in a transcript"
    # It shows what ran: the serials were drawn and the certificates read back by crdb-certs itself,
    # not by an `openssl rand` or `openssl x509` that never ran.
    assert "openssl rand" not in text and "openssl x509" not in text
    assert "> serial.txt  # drawn by crdb-certs itself" in text
    assert "# crdb-certs read certs/client.root.crt back (cryptography)" in text
    replay = tmp_path / "replay"
    replay.mkdir()
    subprocess.run(["bash", str(transcript)], cwd=replay, check=True, capture_output=True)
    pkicheck.assert_client(replay / "certs/client.root.crt", "root", replay / "certs/ca.crt", secure=True)


def test_make_certs_prints_the_next_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert crdb("issue", "--config", REPO / "certs.toml", "--out", tmp_path) == 0
    out = capsys.readouterr().out
    assert f"cockroach start-single-node --certs-dir={tmp_path}/certs" in out
    assert "sslmode=verify-full" in out and "client.root.crt" in out
    assert f"Keep {tmp_path}/my-safe-directory off the nodes: it holds the CA key." in out


ODD_FOLDER = "a&b=c %41 #d?e+f"


def test_the_printed_sql_url_holds_any_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    printed_sql_url(tmp_path, capsys)


def printed_sql_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """The URL `issue` prints for an output folder whose name holds `&`, `%`, `#`, `?`, `+` and a space,
    which end or garble a query value unless percent-encoded; checked by parsing it back."""
    out = tmp_path / ODD_FOLDER
    assert crdb("issue", "--config", REPO / "certs.toml", "--out", out) == 0
    [line] = [line for line in capsys.readouterr().out.splitlines() if "cockroach sql --url=" in line]
    [word] = [w for w in shlex.split(line) if w.startswith("--url=")]
    url = urlsplit(word.removeprefix("--url="))
    assert (url.scheme, url.username, url.hostname, url.port, url.path, url.fragment) == (
        "postgresql",
        "root",
        "localhost",
        26257,
        "/defaultdb",
        "",
    )
    query = parse_qs(url.query, strict_parsing=True)
    assert query == {
        "sslmode": ["verify-full"],
        "sslrootcert": [f"{out}/certs/ca.crt"],
        "sslcert": [f"{out}/certs/client.root.crt"],
        "sslkey": [f"{out}/certs/client.root.key"],
    }
    assert all(Path(value).is_file() for [value] in query.values() if value != "verify-full")
    return word.removeprefix("--url=")


@pytest.mark.postgres
def test_libpq_reads_the_printed_sql_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # libpq itself (psql) connects with the printed URL, only pointed at a PostgreSQL server's port.
    url = printed_sql_url(tmp_path, capsys)
    nodes = tmp_path / ODD_FOLDER / "nodes" / "node1"
    server = PostgresServer(nodes / "node.crt", nodes / "node.key", nodes / "ca.crt", ["root"])
    try:
        here = urlsplit(url)._replace(netloc=f"root@localhost:{server.port}", path="/postgres").geturl()
        done = subprocess.run(
            [str(server.bin / "psql"), here + "&hostaddr=127.0.0.1", "-Atc", "select current_user"],
            capture_output=True,
            text=True,
            env={**os.environ, "PGCONNECT_TIMEOUT": "10"},
        )
        assert (done.returncode, done.stdout.strip()) == (0, "root"), done.stderr
    finally:
        server.stop()


def test_docs_profile_reproduces_the_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(
        tmp_path,
        '[[nodes]]\nname = "n"\nhosts = ["localhost", "node.example.io", "127.0.0.1"]\n'
        '[[clients]]\nuser = "maxroach"\n[[clients]]\nuser = "roach"\n',
    )
    out = tmp_path / "out"
    assert crdb("issue", "--config", spec, "--out", out, "--profile", "docs") == 0
    # Not the page's `,maxroach:root`: it would let every maxroach certificate log in as root.
    assert "--cert-principal-map=node.example.io:node\n" in capsys.readouterr().out
    ca = out / "certs" / "ca.crt"
    node = pkicheck.assert_node(
        out / "certs/node.crt",
        ["localhost", "node.example.io", "127.0.0.1"],
        ca,
        [],
        {SERVER, CLIENT},
        secure=False,
    )
    assert node.cert.serial_number == 1, "the docs' serial.txt starts at 01"
    pkicheck.assert_client(out / "certs/client.maxroach.crt", "maxroach", ca, secure=False, dns={"root"})
    pkicheck.assert_client(out / "certs/client.roach.crt", "roach", ca, secure=False)
    assert not list((out / "certs").glob("*.pem"))


def test_docs_principal_map_lets_every_node_in_and_maps_no_user(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, CLUSTER_SPEC.replace('user = "root"', 'user = "first"'))  # first: not root
    out = tmp_path / "out"
    assert crdb("issue", "--config", spec, "--out", out, "--profile", "docs") == 0
    maps = set(re.findall(r"--cert-principal-map=(\S+)", capsys.readouterr().out))
    assert len(maps) == 1, "every node is started with the same map"
    [printed] = maps
    # Each entry maps a DNS name of a node's certificate to node: it grants no user anything.
    assert printed == "node1.example.com:node,node2.example.com:node,node3.example.com:node"
    for name in CLUSTER:
        assert crdb("audit", out / "nodes" / name, "--format", "json", "--cert-principal-map", printed) == 0
        codes = {f["code"] for f in json.loads(capsys.readouterr().out)["findings"]}
        assert "node-principal" not in codes, f"{name}'s certificate would be refused by the other nodes"
    # With the map, each client certificate is still its own user's (the page's `first:root` broke that).
    assert crdb("audit", out / "certs", "--format", "json", "--cert-principal-map", printed) == 0
    codes = {f["code"] for f in json.loads(capsys.readouterr().out)["findings"]}
    assert "client-principal" not in codes


def test_runs_with_a_hostile_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        assert crdb("issue", "--out", tmp_path, "--quiet") == 0
    finally:
        os.umask(old)
    for key in tmp_path.rglob("*.key"):
        assert pkicheck.mode(key) & 0o077 == 0


def test_a_leaf_never_outlives_its_ca(tmp_path: Path) -> None:
    """Under a CA with less time left than a leaf's lifetime, the secure profile ends the leaf with the CA."""
    spec = write_spec(tmp_path, 'key_type = "ec"\nca_days = 2\ncert_days = 1\n[[clients]]\nuser = "a"\n')
    out = tmp_path / "out"
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    ca = pkicheck.read(out / "certs/ca.crt").cert
    first = pkicheck.read(out / "certs/client.a.crt").cert
    assert first.not_valid_after_utc < ca.not_valid_after_utc, "a 1-day leaf under a 2-day CA is not capped"
    write_spec(
        tmp_path,
        'key_type = "ec"\nca_days = 2\ncert_days = 2\n[[clients]]\nuser = "a"\n[[clients]]\nuser = "b"\n',
    )
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    second = pkicheck.read(out / "certs/client.b.crt").cert
    assert second.not_valid_after_utc == ca.not_valid_after_utc
    pkicheck.assert_client(out / "certs/client.b.crt", "b", out / "certs/ca.crt", secure=True)


def test_each_file_is_found_in_its_certs_directory_by_its_folders() -> None:
    """Issue 16: the commit and the audit after `issue` look each changed file's certs directory up by its
    parent folders (not every file against every folder): the same answer, `nodes/a` never taken for
    `nodes/ab`, and None for what lies in no certs directory."""
    folders = {"certs": (), "nodes/a": (), "nodes/ab": ()}
    assert bundles.folder_of("certs/client.root.crt", folders) == "certs"
    assert bundles.folder_of("nodes/ab/node.crt", folders) == "nodes/ab"
    assert bundles.folder_of("nodes/a/node.crt", folders) == "nodes/a"
    assert bundles.folder_of("nodes/abc/node.crt", folders) is None
    assert bundles.folder_of("requests/node.a.cnf", folders) is None
    assert bundles.folder_of("certs", folders) is None


def test_the_commit_lists_what_was_made_without_a_path_object_per_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16 (peak memory): the commit lists the staged files (50,000 at 10,000 nodes) as text. Listed
    with Path.rglob, Python 3.11 kept a Path of each in a set until the walk ended (~0.7 KB a file): the
    commit set the run's peak memory. Every file made is still committed."""
    spec = load(write_spec(tmp_path, '[[nodes]]\nname = "a"\nhosts = ["a.example.com"]\n'))
    made = [f"{names.NODES_DIR}/node{i}/{name}" for i in range(1500) for name in ("a.cnf", "b.cnf")]
    folders = MakeDirs(tuple(f"{names.NODES_DIR}/node{i}" for i in range(1500)))
    todo = Plan(spec, (Task("files", "files", (folders, *(Write(path, "x") for path in made))),))
    peaks: list[int] = []
    real_commit = runner._commit

    def commit(*args: Any) -> tuple[list[str], Path | None]:
        tracemalloc.start()
        try:
            return real_commit(*args)
        finally:
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()

    monkeypatch.setattr(runner, "_commit", commit)
    out = tmp_path / "out"
    result = runner.issue(spec, out, openssl.find, planner=lambda _: todo)
    assert sorted(result.changed) == sorted(made)
    assert all((out / path).read_text() == "x" for path in made)
    # What it needs: each path a few times as text (~0.2 KB a file); with a Path of each, ~1 KB.
    assert peaks[0] < 500 * len(made), peaks
