"""Revocation (issue 12): [ocsp] url in every leaf, `revoke`, `crl`, `ocsp serve` and `ocsp check`, checked
with real peers: `openssl verify -crl_check`, PostgreSQL with ssl_crl_file, and `openssl ocsp` as the
client of `crdb-certs ocsp serve`."""

from __future__ import annotations

import difflib
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from orchestrator import plan, record, spec
from tests.conftest import FIXTURES, REPO, crdb, is_stamp, write_spec
from tests.peers import PostgresServer

SPEC = """\
key_type = "ec"
{extra}
[[nodes]]
name = "a"
hosts = ["localhost", "127.0.0.1"]

[[nodes]]
name = "b"
hosts = ["b.example.com"]

[[clients]]
user = "root"

[[clients]]
user = "maxroach"
"""
URL = "http://ocsp.example.internal:8888/ocsp"


def issue(tmp: Path, extra: str = "", *args: str) -> Path:
    config = write_spec(tmp, SPEC.format(extra=extra))
    out = tmp / "out"
    assert crdb("issue", "--config", config, "--out", out, "--quiet", *args) == 0
    return out


def serial(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def database(out: Path, name: str = "index.txt") -> dict[int, str]:
    rows = [line.split("\t") for line in (out / name).read_text().splitlines()]
    return {int(r[3], 16): r[0] for r in rows}


def snapshot(out: Path) -> dict[str, bytes]:
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in out.rglob("*")
        if p.is_file() and not is_stamp(p)  # a cache of a clean run
    }


def openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, timeout=30)


def ocsp_urls(path: Path) -> list[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return []
    return [str(d.access_location.value) for d in aia]


# ------------------------------------------------------------------------------------------ [ocsp] url


@pytest.mark.parametrize(
    "url",
    [
        "https://ocsp.example.com",
        "http://ocsp.example.com/a b",
        "http://ocsp.example.com/a,b",
        'http://ocsp.example.com/"x',
        "http://user@ocsp.example.com",
        "http://ocsp.example.com:99999",
        "http://ocsp.example.com/?q=1",
        "http://ocsp.example.com/#x",
        "ocsp.example.com",
        "http://",
    ],
)
def test_a_bad_ocsp_url_is_one_line_and_nothing_is_written(
    tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_spec(tmp_path, SPEC.format(extra=f"[ocsp]\nurl = {url!r}\n".replace("'", '"', 2)))
    if '"x' in url:
        config.write_text(SPEC.format(extra="[ocsp]\nurl = 'http://ocsp.example.com/\"x'\n"))
    assert crdb("issue", "--config", config, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ocsp.url: ") and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_the_ocsp_url_is_in_every_leaf_of_every_profile_and_round_trips(tmp_path: Path) -> None:
    extra = f'[ocsp]\nurl = "{URL}"\n[ui]\nhosts = ["console.example.com"]\n'
    for profile in ("secure", "docs", "docs-v19"):
        out = issue(tmp_path / profile, extra, "--profile", profile)
        leaves = [*out.glob("nodes/*/*.crt"), *out.glob("certs/client.*.crt")]
        leaves = [p for p in leaves if not p.name.startswith("ca")]
        assert len(leaves) == 2 + 2 + 2  # node.crt, ui.crt in each node; two clients
        for leaf in leaves:
            assert ocsp_urls(leaf) == [URL], (profile, leaf)
        assert ocsp_urls(out / "certs/ca.crt") == []  # the root is never asked about
        held = record.read(out)
        assert held is not None and held.spec().ocsp_url == URL
        assert crdb("issue", "--out", out, "--check") == 0  # the record round-trips: nothing to do


def test_split_ca_leaves_of_both_cas_carry_the_url(tmp_path: Path) -> None:
    out = issue(tmp_path, f'layout = "split-ca"\n[ocsp]\nurl = "{URL}"\n')
    for leaf in ("nodes/a/node.crt", "nodes/a/client.node.crt", "certs/client.maxroach.crt"):
        assert ocsp_urls(out / leaf) == [URL]


def test_docs_profiles_with_an_ocsp_url_differ_from_the_docs_by_the_added_lines_only() -> None:
    data = {
        "nodes": [{"name": "node1", "hosts": ["node1", "node1.example.com", "10.0.0.1"]}],
        "clients": [{"user": "maxroach"}, {"user": "roach"}],
    }
    for profile, era in (("docs", "v26.3"), ("docs-v19", "v19.2")):
        plain = plan.build(spec.parse({**data, "profile": profile})).configs()
        with_url = plan.build(spec.parse({**data, "profile": profile, "ocsp": {"url": URL}})).configs()
        assert plain["ca.cnf"] == (FIXTURES / "docs" / era / "ca.cnf").read_text()
        for name in plain:
            diff = [
                line
                for line in difflib.unified_diff(plain[name].splitlines(), with_url[name].splitlines(), n=0)
                if line[:1] in "+-" and not line.startswith(("+++", "---"))
            ]
            expected = [f"+authorityInfoAccess = OCSP;URI:{URL}"] * 2 if name == "ca.cnf" else []
            assert diff == expected, (profile, name, diff)


def test_adding_or_changing_the_url_is_a_difference_that_needs_reissue(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = issue(tmp_path)
    config = write_spec(tmp_path, SPEC.format(extra=f'[ocsp]\nurl = "{URL}"\n'), "with-url.toml")
    capsys.readouterr()
    assert crdb("issue", "--config", config, "--out", out, "--check") == 1
    said = capsys.readouterr()
    assert f"root: OCSP URL differs: none in the folder, {URL} in the spec" in said.out + said.err
    assert crdb("issue", "--config", config, "--out", out, "--quiet") == 1
    assert crdb("issue", "--config", config, "--out", out, "--quiet", "--reissue") == 0
    assert ocsp_urls(out / "certs/client.root.crt") == [URL]
    other = write_spec(tmp_path, SPEC.format(extra='[ocsp]\nurl = "http://10.0.0.9"\n'), "other.toml")
    capsys.readouterr()
    assert crdb("issue", "--config", other, "--out", out, "--check") == 1
    assert f"OCSP URL differs: {URL} in the folder, http://10.0.0.9 in the spec" in capsys.readouterr().err


# -------------------------------------------------------------------------------------- revoke, crl


def test_revoke_a_client_then_issue_makes_a_new_one_and_the_old_serial_stays_revoked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = issue(tmp_path)
    certs = out / "certs"
    old = serial(certs / "client.maxroach.crt")
    capsys.readouterr()
    assert crdb("revoke", "--out", out, "--clients", "maxroach", "--reason", "keyCompromise") == 0
    said = capsys.readouterr().out
    assert not (certs / "client.maxroach.crt").exists() and not (certs / "client.maxroach.key").exists()
    (kept,) = out.glob("backup/*/certs/client.maxroach.crt")
    assert serial(kept) == old
    assert oct(kept.with_suffix(".key").stat().st_mode & 0o777) == "0o400"
    assert database(out)[old] == "R"
    crl = x509.load_pem_x509_crl((out / "crl/ca.crl").read_bytes())
    revoked = crl.get_revoked_certificate_by_serial_number(old)
    assert revoked is not None
    assert revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason.name == "key_compromise"
    assert f"copy {out / 'crl/ca.crl'}" in said and f"crdb-certs issue --out {out}" in said
    # The real peer: openssl verify with the CRL refuses the old certificate, accepts the others.
    ca, crl_file = certs / "ca.crt", out / "crl/ca.crl"
    refused = openssl("verify", "-crl_check", "-CAfile", ca, "-CRLfile", crl_file, kept)
    assert refused.returncode != 0 and "certificate revoked" in refused.stdout + refused.stderr
    for good in (certs / "client.root.crt", out / "nodes/a/node.crt"):
        assert openssl("verify", "-crl_check", "-CAfile", ca, "-CRLfile", crl_file, good).returncode == 0
    # A later issue makes a new key and certificate; the old serial stays revoked.
    assert crdb("issue", "--out", out, "--quiet") == 0
    new = serial(certs / "client.maxroach.crt")
    assert new != old and database(out)[old] == "R" and database(out)[new] == "V"
    assert (
        openssl(
            "verify", "-crl_check", "-CAfile", ca, "-CRLfile", crl_file, certs / "client.maxroach.crt"
        ).returncode
        == 0
    )


def test_revoking_a_node_takes_it_out_of_every_certs_directory(tmp_path: Path) -> None:
    out = issue(tmp_path, '[ui]\nhosts = ["console.example.com"]\n')
    node, ui = serial(out / "nodes/a/node.crt"), serial(out / "nodes/a/ui.crt")
    assert crdb("revoke", "--out", out, "--nodes", "a", "--ui") == 0
    for gone in ("nodes/a/node.crt", "nodes/a/node.key", "nodes/a/ui.crt", "nodes/b/ui.key"):
        assert not (out / gone).exists(), gone
    assert (out / "nodes/b/node.crt").exists()
    assert database(out)[node] == database(out)[ui] == "R"
    assert crdb("issue", "--out", out, "--quiet") == 0
    assert serial(out / "nodes/a/node.crt") != node and serial(out / "nodes/b/ui.crt") != ui


def test_revoke_by_serial_finds_a_certificate_kept_in_the_backup(tmp_path: Path) -> None:
    out = issue(tmp_path)
    old = serial(out / "certs/client.root.crt")
    assert crdb("renew", "--out", out, "--clients", "root", "--quiet") == 0
    assert crdb("revoke", "--out", out, "--serial", f"{old:x}", "--reason", "superseded") == 0
    assert database(out)[old] == "R"
    assert (out / "certs/client.root.crt").exists()  # the renewed one stays


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--serial", "0xDEADBEEF"), "is not in the CA database (index.txt)"),
        (("--serial", "xyz"), "is not a serial number in hexadecimal"),
        (("--clients", "nobody"), "is not a client of the spec"),
        (("--reason", "CACompromise", "--clients", "root"), "Invalid value for '--reason'"),
        ((), "name what to revoke"),
    ],
)
def test_revoke_mistakes_are_one_line_exit_2_and_change_nothing(
    tmp_path: Path, args: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = issue(tmp_path)
    before = snapshot(out)
    capsys.readouterr()
    assert crdb("revoke", "--out", out, *args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert snapshot(out) == before


def test_revoking_the_ca_certificate_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = issue(tmp_path)
    before = snapshot(out)
    capsys.readouterr()
    assert crdb("revoke", "--out", out, "--serial", f"{serial(out / 'certs/ca.crt'):X}") == 2
    err = capsys.readouterr().err
    assert "is the CA certificate certs/ca.crt" in err and err.count("\n") == 1
    assert snapshot(out) == before


def test_revoking_twice_is_refused_once_done(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = issue(tmp_path)
    old = serial(out / "certs/client.root.crt")
    assert crdb("revoke", "--out", out, "--clients", "root") == 0
    capsys.readouterr()
    assert crdb("revoke", "--out", out, "--serial", f"{old:X}") == 2
    assert "is already revoked" in capsys.readouterr().err


def test_revoke_plan_prints_the_commands_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = issue(tmp_path)
    before = snapshot(out)
    capsys.readouterr()
    assert crdb("revoke", "--out", out, "--clients", "maxroach", "--plan") == 0
    text = capsys.readouterr().out
    assert "openssl ca -config ca.cnf -keyfile my-safe-directory/ca.key -cert certs/ca.crt -revoke" in text
    assert "-gencrl" in text and 'mv certs/client.maxroach.key "$backup"/certs/' in text
    assert snapshot(out) == before


@pytest.mark.parametrize("profile", ["docs", "docs-v19"])
def test_docs_profiles_revoke_without_a_crl_and_point_to_ocsp(
    tmp_path: Path, profile: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = issue(tmp_path, "", "--profile", profile)
    old = serial(out / "certs/client.maxroach.crt")
    capsys.readouterr()
    assert crdb("revoke", "--out", out, "--clients", "maxroach") == 0
    said = capsys.readouterr().out
    assert "lacks cRLSign" in said and "crdb-certs ocsp serve" in said
    assert database(out)[old] == "R" and not (out / "crl").exists()
    assert crdb("crl", "--out", out) == 1
    err = capsys.readouterr().err
    assert "lacks cRLSign" in err and "crdb-certs ocsp serve" in err and err.count("\n") == 1


def test_crl_of_split_ca_for_both_cas(tmp_path: Path) -> None:
    out = issue(tmp_path, 'layout = "split-ca"\n')
    assert crdb("revoke", "--out", out, "--clients", "maxroach") == 0
    assert (out / "crl/ca-client.crl").exists() and not (out / "crl/ca.crl").exists()
    assert crdb("crl", "--out", out, "--days", "7") == 0
    for name, ca in (("ca.crl", "ca.crt"), ("ca-client.crl", "ca-client.crt")):
        crl = x509.load_pem_x509_crl((out / "crl" / name).read_bytes())
        issuer = x509.load_pem_x509_certificate((out / "certs" / ca).read_bytes())
        assert crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
        assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number >= 1
    numbers = x509.load_pem_x509_crl((out / "crl/ca-client.crl").read_bytes())
    assert numbers.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2


def test_postgres_with_the_crl_refuses_the_revoked_client_and_accepts_the_others(tmp_path: Path) -> None:
    out = issue(tmp_path)
    certs = out / "certs"
    assert crdb("revoke", "--out", out, "--clients", "maxroach", "--reason", "keyCompromise") == 0
    assert crdb("issue", "--out", out, "--quiet") == 0
    (old,) = out.glob("backup/*/certs/client.maxroach.crt")
    server = PostgresServer(
        out / "nodes/a/node.crt",
        out / "nodes/a/node.key",
        certs / "ca.crt",
        ["root", "maxroach"],
        crl=out / "crl/ca.crl",
    )
    try:
        with pytest.raises(ConnectionError, match="revoked"):
            server.current_user("maxroach", old, old.with_suffix(".key"), certs / "ca.crt")
        assert (
            server.current_user(
                "root", certs / "client.root.crt", certs / "client.root.key", certs / "ca.crt"
            )
            == "root"
        )
        new = certs / "client.maxroach.crt"
        assert (
            server.current_user("maxroach", new, certs / "client.maxroach.key", certs / "ca.crt")
            == "maxroach"
        )
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------ OCSP


class Served:
    def __init__(self, out: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "ocsp", "serve", "--out", str(out), "--port", "0"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        deadline = time.monotonic() + 30
        self.said = []
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            self.said.append(line)
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)/", line)
            if found:
                self.url = found.group(1)
                return
            if not line:
                break
        self.process.kill()
        self.process.communicate(timeout=10)
        raise AssertionError(f"ocsp serve did not start: {self.said}")

    def stop(self) -> tuple[int, str, str]:
        self.process.send_signal(signal.SIGTERM)
        try:
            out, err = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, err = self.process.communicate(timeout=10)
            raise AssertionError(f"ocsp serve did not stop on SIGTERM: {out!r} {err!r}") from None
        return self.process.returncode, out, err


@pytest.fixture
def served() -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for one in started:
        if one.process.poll() is None:
            one.process.kill()
            one.process.communicate(timeout=10)  # (also closes its pipes)


def ask(url: str, issuer: Path, *what: str | Path) -> str:
    args: list[str | Path] = []
    for item in what:
        args += ["-serial", item] if isinstance(item, str) else ["-cert", item]
    done = openssl("ocsp", "-issuer", issuer, "-CAfile", issuer, "-url", url, "-timeout", "10", *args)
    assert done.returncode == 0 and "Response verify OK" in done.stderr, done
    return done.stdout


@pytest.mark.parametrize(
    ("profile", "layout"),
    [("secure", "standard"), ("docs", "standard"), ("docs-v19", "standard"), ("secure", "split-ca")],
)
def test_openssl_ocsp_client_against_ocsp_serve(
    tmp_path: Path, profile: str, layout: str, served: list[Served]
) -> None:
    out = issue(tmp_path, f'layout = "{layout}"\n', "--profile", profile)
    assert crdb("revoke", "--out", out, "--clients", "maxroach", "--reason", "keyCompromise") == 0
    (old,) = out.glob("backup/*/certs/client.maxroach.crt")
    server = Served(out)
    served.append(server)
    client_ca = out / "certs" / ("ca-client.crt" if layout == "split-ca" else "ca.crt")
    said = ask(server.url, client_ca, old, out / "certs/client.root.crt", "0xDEADBEEF")
    assert f"{old}: revoked" in said and "Reason: keyCompromise" in said
    assert f"{out / 'certs/client.root.crt'}: good" in said
    assert "0xDEADBEEF: unknown" in said
    # The node CA's certificates are answered by the same responder (its own delegated certificate).
    assert f"{out / 'nodes/a/node.crt'}: good" in ask(
        server.url, out / "certs/ca.crt", out / "nodes/a/node.crt"
    )
    for responder in out.glob("ocsp/*.responder.key"):
        assert oct(responder.stat().st_mode & 0o777) == "0o400"
    # A new revocation is answered without a restart.
    assert crdb("revoke", "--out", out, "--clients", "root") == 0
    (root,) = out.glob("backup/*/certs/client.root.crt")
    assert f"{root}: revoked" in ask(server.url, client_ca, root)
    status, stdout, stderr = server.stop()
    assert status == 0 and "stopped" in stdout
    assert len([line for line in stderr.splitlines() if " POST 200 " in line]) == 3, stderr


def test_ocsp_check_is_the_preflight_for_strict(
    tmp_path: Path, served: list[Served], capsys: pytest.CaptureFixture[str]
) -> None:
    out = issue(tmp_path, '[ocsp]\nurl = "http://127.0.0.1:1/"\n')  # a port nobody listens on
    capsys.readouterr()
    assert crdb("ocsp", "check", "--out", out) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and "http://127.0.0.1:1/: the OCSP responder is unreachable" in lines[0]
    server = Served(out)
    served.append(server)
    assert crdb("ocsp", "check", "--out", out, "--url", server.url) == 0
    said = capsys.readouterr().out
    assert "4 certificates: each good" in said
    assert said.strip().endswith("SET CLUSTER SETTING security.ocsp.mode = strict;")
    # A revoked certificate still in a certs directory: one line each, exit 1.
    assert crdb("revoke", "--out", out, "--clients", "maxroach") == 0
    (old,) = out.glob("backup/*/certs/client.maxroach.crt")
    (out / "certs/client.maxroach.crt").write_bytes(old.read_bytes())
    capsys.readouterr()
    assert crdb("ocsp", "check", "--out", out, "--url", server.url) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("certs/client.maxroach.crt: revoked"), lines


def test_ocsp_check_finds_leaves_without_the_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = issue(tmp_path)
    capsys.readouterr()
    assert crdb("ocsp", "check", "--out", out) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and all("no OCSP URL" in line for line in lines)


def test_ocsp_serve_binds_only_where_told(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = issue(tmp_path)
    assert crdb("ocsp", "serve", "--out", out, "--host", "192.0.2.1", "--port", "0") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --host/--port: cannot listen on 192.0.2.1:0") and err.count("\n") == 1


def test_ocsp_serve_answers_a_get_and_a_malformed_request(tmp_path: Path, served: list[Served]) -> None:
    import base64
    import urllib.request

    out = issue(tmp_path)
    server = Served(out)
    served.append(server)
    request = tmp_path / "request.der"
    made = openssl(
        "ocsp",
        "-issuer",
        out / "certs/ca.crt",
        "-cert",
        out / "certs/client.root.crt",
        "-reqout",
        request,
        "-no_nonce",
    )
    assert made.returncode == 0, made
    encoded = base64.b64encode(request.read_bytes()).decode()
    with urllib.request.urlopen(f"{server.url}/{encoded}", timeout=10) as answer:
        response = answer.read()
    from cryptography.x509 import ocsp

    parsed = ocsp.load_der_ocsp_response(response)
    assert parsed.certificate_status is ocsp.OCSPCertStatus.GOOD
    post = urllib.request.Request(server.url + "/", data=b"not an OCSP request", method="POST")
    with urllib.request.urlopen(post, timeout=10) as answer:
        assert ocsp.load_der_ocsp_response(answer.read()).response_status.name == "MALFORMED_REQUEST"


# --------------------------------------------------------------------------------- concurrency, faults


def run_cli(*args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *map(str, args)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_revokes_and_an_issue_at_once_leave_one_consistent_database(tmp_path: Path) -> None:
    out = issue(tmp_path)
    serials = {u: serial(out / f"certs/client.{u}.crt") for u in ("root", "maxroach")}
    more = write_spec(
        tmp_path, SPEC.format(extra="") + '\n[[nodes]]\nname = "c"\nhosts = ["c.example.com"]\n', "more.toml"
    )
    runs = [
        run_cli("revoke", "--out", out, "--clients", "root"),
        run_cli("revoke", "--out", out, "--clients", "maxroach"),
        run_cli("issue", "--config", more, "--out", out, "--quiet"),
    ]
    results = [r.communicate(timeout=120) for r in runs]
    assert [r.returncode for r in runs] == [0, 0, 0], results
    rows = database(out)
    assert rows[serials["root"]] == rows[serials["maxroach"]] == "R"
    # Whichever ran when: every certificate now in a certs directory is valid in the database, and the
    # database holds exactly what was issued (an issue after a revoke made that client anew).
    current = {serial(p) for p in [*out.glob("nodes/*/node.crt"), *out.glob("certs/client.*.crt")]}
    assert all(rows[s] == "V" for s in current)
    assert set(rows) == current | set(serials.values())
    assert serial(out / "nodes/c/node.crt") in current
    crl = x509.load_pem_x509_crl((out / "crl/ca.crl").read_bytes())
    assert {r.serial_number for r in crl} == set(serials.values())


def test_sigkill_during_revoke_leaves_old_or_new_and_a_rerun_completes(tmp_path: Path) -> None:
    """Killed after any step or rename: each file is the old one or the new one; a certificate is out of
    its certs directory only once the database says revoked (the fail-safe order); the same revoke again
    completes it."""
    template = issue(tmp_path / "template")
    old_serial = serial(template / "certs/client.maxroach.crt")
    old_index = (template / "index.txt").read_text()
    log = tmp_path / "events.log"
    args = ("revoke", "--out", tmp_path / "listed", "--clients", "maxroach")
    shutil.copytree(template, tmp_path / "listed", symlinks=True)
    assert harness("never", log, *args).returncode == 0
    points = log.read_text().splitlines()
    assert any(p.startswith("Run:ca") for p in points) and "rename certs" in points
    for k, point in enumerate(points, start=1):
        mine = tmp_path / f"kill-{k}"
        shutil.copytree(template, mine, symlinks=True)
        when = f"{point}@{points[:k].count(point)}"
        killed = harness(when, tmp_path / f"kill-{k}.log", "revoke", "--out", mine, "--clients", "maxroach")
        assert killed.returncode == -signal.SIGKILL, (when, killed.stderr)
        index = (mine / "index.txt").read_text()
        revoked = database(mine)[old_serial] == "R"
        assert index == old_index or (revoked and index.replace("\tR\t", "") != old_index), when
        present = [(mine / "certs" / f"client.maxroach.{x}").exists() for x in ("crt", "key")]
        assert present in ([True, True], [False, False]), (when, present)
        assert present == [True, True] or revoked, f"{when}: a certificate left before it was revoked"
        if (mine / "crl/ca.crl").exists():
            crl = x509.load_pem_x509_crl((mine / "crl/ca.crl").read_bytes())
            assert [r.serial_number for r in crl] == [old_serial], when
        rerun = crdb("revoke", "--out", mine, "--clients", "maxroach")
        assert rerun == (0 if present[0] else 2), when
        assert database(mine)[old_serial] == "R" and not (mine / "certs/client.maxroach.crt").exists()
        crl = x509.load_pem_x509_crl((mine / "crl/ca.crl").read_bytes())
        assert [r.serial_number for r in crl] == [old_serial], when
        assert list(mine.glob("backup/*/certs/client.maxroach.key")), when


def harness(when: str, log: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.fault_harness", when, str(log), *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
