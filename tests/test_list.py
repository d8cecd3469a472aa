"""`crdb-certs list`: the `cockroach cert list` table (plus days left), checked against an independent
reading of the same files with `cryptography`."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from orchestrator import certlist, lifecycle
from tests.conftest import crdb

HEADERS = ["Usage", "Certificate File", "Key File", "Expires", "Days Left", "Notes", "Error"]


def not_after(path: Path) -> datetime:
    return x509.load_pem_x509_certificates(path.read_bytes())[0].not_valid_after_utc


def list_json(folder: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    status = crdb("list", folder, "--format", "json")
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return status, data


def test_the_table_has_cockroachs_columns_and_rows(
    default_pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    certs = default_pki / "certs"
    capsys.readouterr()
    assert crdb("list", certs) == 0
    out = capsys.readouterr().out
    lines = [line.split() for line in out.splitlines() if line.strip()]
    assert " ".join(lines[0]) == f"Certificate directory: {certs}"
    header = " ".join(lines[1])
    for name in HEADERS:
        assert name in header
    rows = {line[1]: line for line in lines if line and line[0] in ("CA", "Node", "Client")}
    assert set(rows) == {"ca.crt", "node.crt", "client.root.crt"}
    assert rows["node.crt"][2] == "node.key" and rows["client.root.crt"][2] == "client.root.key"
    for name, row in rows.items():
        expires = not_after(certs / name)
        assert expires.strftime("%Y/%m/%d") in row, row
        assert str((expires - datetime.now(UTC)).days) in row, row
    assert "addresses: localhost,127.0.0.1" in out
    assert "user: root" in out
    assert "num certs: 1" in out
    assert "(3 rows)" in out


def test_json_rows_in_cockroachs_order_with_days_left(
    cluster_pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    certs = cluster_pki / "certs"
    status, data = list_json(certs, capsys)
    assert status == 0 and data["error"] is None
    rows = data["certificates"]
    assert [(r["usage"], r["certificate_file"], r["key_file"]) for r in rows] == [
        ("CA", "ca.crt", None),
        ("Client", "client.maxroach.crt", "client.maxroach.key"),
        ("Client", "client.root.crt", "client.root.key"),
    ]
    for row in rows:
        expires = not_after(certs / row["certificate_file"])
        assert datetime.fromisoformat(row["expires"]) == expires
        assert row["days_left"] == (expires - datetime.now(UTC)).days
        assert row["error"] is None
    assert [r["notes"] for r in rows] == ["num certs: 1", "user: maxroach", "user: root"]


@pytest.mark.parametrize("sign", [1, -1], ids=["expired", "valid"])
def test_list_and_check_count_the_days_left_alike(default_pki: Path, sign: int) -> None:
    # `list` showed -36 days where `check` said "35 days ago": one count, toward zero, for both.
    certs = default_pki / "certs"
    expires = not_after(certs / "client.root.crt")
    now = expires + sign * timedelta(days=35, hours=12)
    [row] = [r for r in certlist.listing(certs, now).rows if r.certificate_file == "client.root.crt"]
    found, _ = lifecycle.expiring(certs, timedelta(days=40), now)
    [line] = [e.line(now) for e in found if e.where == "client.root.crt"]
    assert row.days_left == -35 * sign
    assert ("(35 days ago)" if sign > 0 else "(in 35 days)") in line


def test_a_node_bundle_lists_its_addresses(cluster_pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, data = list_json(cluster_pki / "nodes" / "node3", capsys)
    node = next(r for r in data["certificates"] if r["usage"] == "Node")
    assert node["notes"] == "addresses: node3.example.com,*.nodes.example.com,10.0.0.3"


def test_the_error_column_holds_cockroachs_own_error(
    default_pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    certs = tmp_path / "certs"
    shutil.copytree(default_pki / "certs", certs)
    key = certs / "node.key"
    key.chmod(0o644)
    st = key.stat()
    limit = "-rwxr-----" if st.st_uid == 0 and st.st_gid == os.getgid() else "-rwx------"
    (certs / "client.root.key").unlink()
    status, data = list_json(certs, capsys)
    assert status == 0  # cert list shows per-file errors; it fails only when the whole load does
    errors = {r["certificate_file"]: r["error"] for r in data["certificates"]}
    assert errors == {
        "ca.crt": None,
        "node.crt": f"key file {key} has permissions -rw-r--r--, exceeds {limit}",
        "client.root.crt": f"could not stat key file {certs / 'client.root.key'}: No such file or directory",
    }


def test_a_ca_bundle_counts_its_certificates_and_a_bad_tenant_id_fails_the_load(
    default_pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    certs = tmp_path / "certs"
    shutil.copytree(default_pki / "certs", certs)
    ca = certs / "ca.crt"
    ca.write_text(ca.read_text() * 2)
    _, data = list_json(certs, capsys)
    assert data["certificates"][0]["notes"] == "num certs: 2"
    shutil.copy(certs / "client.root.crt", certs / "client-tenant.abc.crt")
    status, data = list_json(certs, capsys)
    assert status == 1
    assert data["error"] == "cannot load certificates: invalid tenant id abc"


def test_a_missing_directory_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert crdb("list", tmp_path / "nope") == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'nope'}: no such directory"


def test_the_status_column_says_valid_revoked_expired(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.test_audit import revoked_folder

    out, _ = revoked_folder(tmp_path)
    status, data = list_json(out / "certs", capsys)
    assert status == 0
    shown = {r["certificate_file"]: r["status"] for r in data["certificates"]}
    assert shown == {"ca.crt": "valid", "client.root.crt": "valid", "client.maxroach.crt": "revoked"}
    capsys.readouterr()
    assert crdb("list", out / "certs") == 0
    table = capsys.readouterr().out
    assert "Status" in table and "revoked" in table
    expired = certlist.listing(out / "certs", now=datetime.now(UTC) + timedelta(days=400))
    assert {r.certificate_file: r.status for r in expired.rows}["client.root.crt"] == "expired"
