"""Hostile input: every spec field gets values shaped like the traps of openssl-traps.md §4.1, easy-rsa's
hostile fixture characters, control characters, look-alikes and over-long names. Each value is either
refused cleanly (one line naming the field and the value, exit 2, nothing written) or ends up, alone and in
its canonical form, in the right field of a certificate that real openssl made (read back with
`cryptography`)."""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
import tempfile
import tomllib
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jinja2
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtensionOID, NameOID
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from orchestrator import certcheck, openssl, plan, render, runner, spec, validate
from orchestrator.errors import RunError, SpecError
from orchestrator.profiles import PROFILES, ProfileName
from orchestrator.spec import DEFAULT_ORGANIZATION
from orchestrator.steps import Kind, Plan, RandomSerial, Run, Task, Verify
from tests import pkicheck
from tests.conftest import crdb, write_spec

EASY_RSA_HOSTILE = [*",./<>?;:@~[]!%^*()=+|"]

CORPUS: list[str] = [
    # openssl-traps.md §4.1: comment, expansion, escapes, a newline that opens a section
    "Acme #1",
    "#",
    "pa$word",
    "$HOME",
    "${ENV::HOME}",
    "x${ENV::HOME}",
    "$ENV::HOME",
    '"quoted"',
    'say "hi"',
    "O'Brien",
    "back\\slash",
    "trailing\\",
    "alice\n[ ext ]\nbasicConstraints = critical,CA:TRUE\n[ x ]",
    "a\nb",
    "a\rb",
    "tab\there",
    "nul\x00byte",
    "del\x7f",
    "c1\x85control",
    "a,DNS:node",
    "DNS:root",
    "root,node",
    # easy-rsa's hostile characters, one by one and in a name
    *EASY_RSA_HOSTILE,
    "a;b",
    "a=b",
    "a|b",
    "a@b.example.com",
    # paths
    "../etc",
    "../../my-safe-directory/ca",
    "a/b",
    "..",
    # empty and white space
    "",
    " ",
    " node1",
    "node1 ",
    "no de",
    # look-alikes
    "\u0430lice",  # Cyrillic a
    "ex\u0430mple.com",  # Cyrillic a inside a Latin label
    "\uff52\uff4f\uff4f\uff54",  # fullwidth root
    "\uff45\uff58.com",  # fullwidth host
    "ro\u200bot",  # zero-width space
    "ro\u00adot",  # soft hyphen
    "e\u0301",  # e + combining acute (NFC: é)
    "\u0130stanbul",  # dotted capital I
    "stra\u00dfe.de",
    "b\u00fccher.de",
    # lengths
    "a" * 63,
    "a" * 64,
    "u" * 64,
    "x" * 254,
    ".".join(["a" * 63] * 4),  # 255 characters
    ".".join(["b" * 63] * 3 + ["b" * 61]),  # 253: the longest DNS name
    # IP look-alikes and wildcards
    "555.1.1.1",
    "127.1",
    "0x7f.0.0.1",
    "1.2.3.4/32",
    "a.*.com",
    "*.com",
    "**.example.com",
    "*.example.com",
    # IPv6 forms
    "::1",
    "2001:DB8::1",
    "2001:0db8:0000:0000:0000:0000:0000:0001",
    "::ffff:127.0.0.1",
    "fe80::1%eth0",
    "fe80::1%0\n[x]",
    "[::1]",
    # plain values that must work
    "127.0.0.1",
    "localhost",
    "Node1.Example.COM.",
    "root",
    "Root",
    "node",
    "max.roach",
    "_svc",
    "-dash",
    "\u00fcmlaut",
]

STRING_FIELDS = {
    "nodes[0].name": lambda v: {"nodes": [{"name": v, "hosts": ["localhost"]}]},
    "nodes[0].hosts[0]": lambda v: {"nodes": [{"name": "n", "hosts": [v]}]},
    "clients[0].user": lambda v: {"clients": [{"user": v}]},
    "ui.hosts[0]": lambda v: {"clients": [{"user": "root"}], "ui": {"hosts": [v]}},
    "profile": lambda v: {"profile": v, "clients": [{"user": "root"}]},
    "layout": lambda v: {"layout": v, "clients": [{"user": "root"}]},
    "key_bits": lambda v: {"key_bits": v, "clients": [{"user": "root"}]},
    "ca_days": lambda v: {"ca_days": v, "clients": [{"user": "root"}]},
    "cert_days": lambda v: {"cert_days": v, "clients": [{"user": "root"}]},
}

NUMBER_CORPUS: list[Any] = [
    0,
    -1,
    1,
    365,
    2047,
    2048,
    4096,
    36600,
    36601,
    2**63 - 1,
    2048.0,
    1.5,
    True,
    [365],
]


def test_the_corpus_is_big_enough() -> None:
    assert len(set(CORPUS)) >= 40
    assert len(set(CORPUS)) == len(CORPUS), "a duplicate hides a missing case"


# ------------------------------------------------------------------------------ TOML written by hand


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    out = []
    for c in value:
        if c in '"\\' or ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def toml_doc(data: dict[str, Any]) -> str:
    lines = [f"{k} = {toml_value(v)}" for k, v in data.items() if not isinstance(v, list | dict)]
    for k, v in data.items():
        if isinstance(v, dict):
            lines += [f"[{k}]", *(f"{kk} = {toml_value(vv)}" for kk, vv in v.items())]
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            for table in v:
                lines += [f"[[{k}]]", *(f"{kk} = {toml_value(vv)}" for kk, vv in table.items())]
        elif isinstance(v, list):
            lines.insert(0, f"{k} = {toml_value(v)}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("value", ["a\nb", "nul\x00", 'q"\\', "\u0430", "\x7f", "😀"])
def test_toml_writer_round_trips(value: str) -> None:
    assert tomllib.loads(toml_doc({"x": value}))["x"] == value


# ---------------------------------------------------------------- issuing without generating keys


@pytest.fixture(scope="module")
def premade_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two RSA keys made once: signing is what is under test here, not key generation."""
    folder = tmp_path_factory.mktemp("keys")
    keys = {name: folder / f"{name}.key" for name in ("ca", "leaf")}
    for key in keys.values():
        subprocess.run(["openssl", "genrsa", "-out", key, "2048"], check=True, capture_output=True)
        key.chmod(0o400)
    return keys


def issue_with_premade_keys(the_spec: spec.Spec, out: Path, keys: dict[str, Path]) -> Plan:
    """Run the real plan step by step with the runner's own executor and real openssl; only a key's
    generation is replaced by copying a key made beforehand (the CA key for my-safe-directory/, the other
    for leaves)."""
    todo = plan.build(the_spec)
    tool = openssl.find()
    out.mkdir(parents=True, exist_ok=True)
    for step in todo.steps:
        if isinstance(step, Run) and step.keygen:
            target = out / step.writes[0]
            source = keys["ca"] if target.parent.name == "my-safe-directory" else keys["leaf"]
            _premade(step, source, out, tool)
        else:
            runner._do(step, out, tool)
    return todo


def _premade(step: Run, key: Path, out: Path, tool: openssl.OpenSSL) -> None:
    """A key step done with a copy of `key`; `openssl req -newkey` (key and CSR in one command) becomes
    the same request made from that key (`-key` for `-newkey ... -keyout`)."""
    shutil.copyfile(key, out / step.writes[0])
    if step.kind is Kind.KEY_AND_REQUEST:
        argv, dropped = list(step.argv), {"-newkey": 2, "-pkeyopt": 2, "-nodes": 1}
        for option, width in dropped.items():
            if option in argv:
                del argv[argv.index(option) : argv.index(option) + width]
        argv[argv.index("-keyout")] = "-key"
        runner._do(Run(tuple(argv), Kind.REQUEST, writes=step.writes[1:]), out, tool)


# --------------------------------------------------------------------------- the corpus, every field


def _cases() -> Iterator[Any]:
    for field, make in STRING_FIELDS.items():
        values: list[Any] = list(CORPUS)
        if field in ("key_bits", "ca_days", "cert_days"):
            values += NUMBER_CORPUS
        if field == "profile":
            values += ["secure", "docs", "docs-v19", "Secure", "secure "]
        if field == "layout":
            values += ["standard", "split-node", "split-ca", "split_node"]
        for i, value in enumerate(values):
            yield pytest.param(field, make, value, id=f"{field}-{i}")


def _refusal(
    field: str, value: Any, data: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_spec(tmp_path, toml_doc(data))
    out = tmp_path / "out"
    capsys.readouterr()
    status = crdb("issue", "--config", path, "--out", out)
    captured = capsys.readouterr()
    assert status == 2, captured
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"error: {field}: "), lines[0]
    assert lines[0].isprintable() and lines[0].isascii(), "the value is shown escaped, on one line"
    if (
        isinstance(value, str)
        and value.isascii()
        and value.isprintable()
        and '"' not in value
        and "\\" not in value
    ):
        assert f'"{value}"' in lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert not out.exists(), "a refused spec wrote files"


@pytest.mark.parametrize(("field", "make", "value"), list(_cases()))
def test_every_field_refuses_or_carries_the_value(
    field: str,
    make: Any,
    value: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    premade_keys: dict[str, Path],
    ca_folder: Path,
) -> None:
    data = make(value)
    try:
        the_spec = spec.parse(tomllib.loads(toml_doc(data)))
    except SpecError as e:
        assert e.field == field
        _refusal(field, value, data, tmp_path, capsys)
        return
    _accepted(field, value, the_spec, ca_folder, premade_keys, tmp_path / "out")


def _accepted(
    field: str, value: Any, the_spec: spec.Spec, base: Path, keys: dict[str, Path], work: Path
) -> None:
    if field == "nodes[0].hosts[0]":
        assert isinstance(value, str)
        out = _sign_one(the_spec, base, keys, "node:", work)
        node = pkicheck.read(out / "nodes/n/node.crt")
        canonical = validate.host(field, value)
        assert (node.dns | node.ips) == {canonical}, "the host is the one and only SAN"
        if canonical in node.ips:
            assert ipaddress.ip_address(canonical) == ipaddress.ip_address(value)
        else:
            assert canonical == canonical.encode("ascii").decode("idna").encode("idna").decode("ascii")
            assert canonical.encode("ascii").decode("idna") == value.lower().removesuffix(".")
        assert node.cn == ["node"]
    elif field == "nodes[0].name":
        assert isinstance(value, str)
        out = _sign_one(the_spec, base, keys, "node:", work)
        assert the_spec.nodes[0].name == value, "node names are used verbatim"
        bundle = out / "nodes" / value
        assert bundle.resolve().parent == (out / "nodes").resolve(), "a node name escaped nodes/"
        assert {p.name for p in bundle.iterdir()} == {"ca.crt", "node.crt", "node.key"}
        pkicheck.assert_node(
            bundle / "node.crt",
            ["localhost"],
            bundle / "ca.crt",
            ["node"],
            {pkicheck.SERVER, pkicheck.CLIENT},
            secure=True,
        )
    elif field == "clients[0].user":
        assert isinstance(value, str)
        out = _sign_one(the_spec, base, keys, "client:", work)
        user = the_spec.clients[0].user
        assert user == unicodedata.normalize("NFC", value.replace("\u0130", "i").lower())
        [cert] = (out / "certs").glob("client.*.crt")
        assert cert.name == f"client.{user}.crt"
        assert cert.name.removeprefix("client.").removesuffix(".crt") == user
        pkicheck.assert_client(cert, user, out / "certs/ca.crt", secure=True)
    elif field == "ui.hosts[0]":
        assert the_spec.ui is not None
        # Same rule as a node's hosts; the host is also the CN, so openssl must take it there too.
        canonical = validate.host("x", value)
        assert the_spec.ui.hosts == (canonical,)
        ui = pkicheck.read(_sign_one(the_spec, base, keys, "ui", work) / "certs/ui.crt")
        assert (ui.dns | ui.ips) == {canonical} and ui.cn == [canonical]
    elif field in ("profile", "layout"):
        assert value in (spec.PROFILES if field == "profile" else spec.LAYOUTS)
        assert getattr(the_spec, field) == value
    else:
        assert type(value) is int
        assert getattr(the_spec, field) == value


def test_a_ui_host_too_long_for_a_cn_is_a_san_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], premade_keys: dict[str, Path], ca_folder: Path
) -> None:
    """A CN holds at most 64 characters, a DNS name up to 253: the first host that fits is the CN."""
    long = ".".join(["b" * 63] * 3 + ["b" * 61])
    data = {"clients": [{"user": "root"}], "ui": {"hosts": [long, "console.example.com"]}}
    the_spec = spec.parse(data)
    ui = pkicheck.read(_sign_one(the_spec, ca_folder, premade_keys, "ui", tmp_path / "out") / "certs/ui.crt")
    assert ui.cn == ["console.example.com"] and ui.dns == {long, "console.example.com"}
    data["ui"]["hosts"] = [long, "a" * 63 + ".example.com"]  # type: ignore[index]
    _refusal("ui.hosts[0]", long, data, tmp_path / "refused", capsys)


def test_cli_profile_option_refuses_hostile_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    for value in ("secure\n[x]", "../docs", "$HOME", ""):
        assert crdb("issue", "--out", out, "--profile", value) == 2
        assert not out.exists()
    assert "Invalid value for '--profile'" in capsys.readouterr().err


def test_hostile_out_path_is_only_an_argument(tmp_path: Path) -> None:
    """--out never reaches a config file: openssl runs inside it with relative paths."""
    out = tmp_path / "o #1 $HOME ${ENV::HOME} 'x' \"y\" \\z"
    assert crdb("issue", "--out", out, "--quiet") == 0
    pkicheck.assert_client(out / "certs/client.root.crt", "root", out / "certs/ca.crt", secure=True)


# ------------------------------------------------------------------------------- render.cnf_value


TRAPS = [
    "Acme #1",
    "pa$word",
    "x${ENV::HOME}",
    "$ENV::HOME",
    'say "hi"',
    "back\\slash",
    "trailing\\",
    "O'Brien",
    "\u00fcn\u00efcode",
    "a,DNS:node",
    "a = b",
    "[ ext ]",
    ".include /etc/passwd",
    "+commonName",
]


def _common_names_of_request(cnf_text: str, key: Path, folder: Path) -> list[str]:
    """Run real `openssl req` on a rendered client config; the CNs of the CSR it writes."""
    (folder / "c.cnf").write_text(cnf_text, encoding="utf-8")
    argv = (
        "openssl",
        "req",
        "-new",
        "-utf8",
        "-config",
        "c.cnf",
        "-key",
        str(key),
        "-out",
        "c.csr",
        "-batch",
    )
    openssl.find().run(argv, folder)
    csr = x509.load_pem_x509_csr((folder / "c.csr").read_bytes())
    return [str(a.value) for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]


@pytest.mark.parametrize("value", TRAPS)
def test_cnf_value_keeps_each_trap_literal_through_openssl_req(
    value: str, tmp_path: Path, premade_keys: dict[str, Path]
) -> None:
    text = render.render(
        "client.cnf.j2",
        profile=PROFILES[ProfileName.SECURE],
        organization=DEFAULT_ORGANIZATION,
        common_name=value,
        root_san=False,
        first_user=False,
    )
    assert _common_names_of_request(text, premade_keys["leaf"], tmp_path) == [value]


def test_unescaped_rendering_is_what_the_filter_prevents(
    tmp_path: Path, premade_keys: dict[str, Path]
) -> None:
    """The same template without the finalize hook truncates `Acme #1`: the check above can fail."""
    raw = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(render.resource("templates"))), autoescape=False
    )
    text = raw.get_template("client.cnf.j2").render(
        profile=PROFILES[ProfileName.SECURE],
        organization=DEFAULT_ORGANIZATION,
        common_name="Acme #1",
        root_san=False,
        first_user=False,
    )
    assert _common_names_of_request(text, premade_keys["leaf"], tmp_path) == ["Acme"]


@pytest.mark.parametrize(
    "value",
    [
        "alice\n[ ext ]\nbasicConstraints = critical,CA:TRUE\n[ x ]",
        "a\rb",
        "nul\x00",
        "del\x7f",
        "c1\x85",
        " lead",
        "trail ",
    ],
)
def test_cnf_value_refuses_what_validation_must_stop_first(value: str) -> None:
    with pytest.raises(ValueError, match="config value"):
        render.cnf_value(value)
    with pytest.raises(SpecError):
        validate.user("u", value)
    with pytest.raises(SpecError):
        validate.host("h", value)


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        # As CockroachDB's Kubernetes docs and its Helm chart write them (issue 13).
        ("*.cockroachdb", "*.cockroachdb"),
        ("*.CockroachDB.db.svc.cluster.local.", "*.cockroachdb.db.svc.cluster.local"),
        ("*.x", "*.x"),
    ],
)
def test_a_wildcard_as_the_whole_left_most_label_is_accepted(value: str, canonical: str) -> None:
    assert validate.host("h", value) == canonical


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("*", "is a wildcard with no label after it"),
        ("*.", "is a wildcard with no label after it"),
        ("a.*.cockroachdb", "has a wildcard that is not the whole left-most label"),
        ("cockroachdb-*.cockroachdb", "has a wildcard that is not the whole left-most label"),
        ("*.*.cockroachdb", "has a wildcard that is not the whole left-most label"),
        ("*..cockroachdb", "has an empty label"),
        ("*.-x", "is not a valid DNS name"),
        ("*.123", "looks like an IP address"),
    ],
)
def test_a_wildcard_anywhere_else_is_refused(value: str, reason: str) -> None:
    with pytest.raises(SpecError, match=re.escape(reason)):
        validate.host("h", value)


def test_a_san_value_with_a_comma_stays_one_entry(tmp_path: Path, premade_keys: dict[str, Path]) -> None:
    """SANs are rendered one per line (@alt_names): even a value validation would refuse cannot split."""
    text = render.render(
        "node.cnf.j2",
        profile=PROFILES[ProfileName.SECURE],
        organization=DEFAULT_ORGANIZATION,
        common_name="node",
        sans=(("DNS", "a,DNS:node,IP:1.2.3.4"),),
        section="node_certificate",
        eku="serverAuth",
    )
    (tmp_path / "n.cnf").write_text(text)
    argv = (
        "openssl",
        "req",
        "-new",
        "-x509",
        "-days",
        "1",
        "-config",
        "n.cnf",
        "-extensions",
        "node_certificate",
    )
    openssl.find().run((*argv, "-key", str(premade_keys["leaf"]), "-out", "n.crt", "-batch"), tmp_path)
    san = x509.load_pem_x509_certificate((tmp_path / "n.crt").read_bytes()).extensions.get_extension_for_oid(
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME
    )
    assert list(san.value) == [x509.DNSName("a,DNS:node,IP:1.2.3.4")]


# ------------------------------------------------------------------------------- property-based

PROPERTY = settings(
    max_examples=15,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)

labels = st.from_regex(r"\A[a-zA-Z0-9]([a-zA-Z0-9-]{0,20}[a-zA-Z0-9])?\Z")
dns_names = st.builds(
    lambda ls, tld: ".".join([*ls, tld]),
    st.lists(labels, min_size=0, max_size=3),
    st.from_regex(r"\A[a-z]{2,6}\Z"),
)
ip_strings = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str)
host_like = st.one_of(
    dns_names,
    dns_names.map(lambda n: "*." + n),
    ip_strings,
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30),
    st.text(alphabet=st.sampled_from("abc.-*:%01xn\u0430\u00fc\uff41 "), max_size=20),
)


@settings(max_examples=400, deadline=None, database=None, derandomize=True)
@given(host_like)
def test_host_validation_is_total_and_idempotent(value: str) -> None:
    try:
        canonical = validate.host("h", value)
    except SpecError as e:
        assert e.field == "h"
        return
    assert validate.host("h", canonical) == canonical, "normalizing twice changes the name"
    assert canonical == canonical.strip() and canonical.isascii() and canonical.isprintable()
    assert "%" not in canonical and "," not in canonical and "#" not in canonical and "$" not in canonical


@settings(max_examples=400, deadline=None, database=None, derandomize=True)
@given(
    st.one_of(
        host_like,
        dns_names.map(str.lower),
        st.from_regex(r"\A[0-9x.a-f]{1,16}\Z"),
        st.sampled_from(
            ["xn--80ak6aa92e.com", "a.xn--zz", "xn--a", "127.1", "1.2.3.256", "a" * 64 + ".b", "ab." * 84]
        ),
    )
)
def test_host_s_shortcut_for_plain_names_and_addresses_changes_no_answer(value: str) -> None:
    """validate.host returns plain names and IPv4 addresses without its general checks (issue 16): the same
    canonical form, or the same refusal, as those checks give."""

    def answer(check: Callable[[str, object], str]) -> str:
        try:
            return check("h", value)
        except SpecError as e:
            return f"refused: {e}"

    assert answer(validate.host) == answer(validate.checked_host)


users_like = st.one_of(
    st.text(
        alphabet=st.characters(categories=["Ll", "Lu", "Lt", "Nd"]) | st.sampled_from("_.-"),
        min_size=1,
        max_size=40,
    ),
    st.text(max_size=40),
)


@settings(max_examples=400, deadline=None, database=None, derandomize=True)
@given(users_like)
def test_user_validation_is_total_and_idempotent(value: str) -> None:
    try:
        user = validate.user("u", value)
    except SpecError as e:
        assert e.field == "u"
        return
    assert validate.user("u", user) == user, "normalizing twice changes the name"
    assert unicodedata.is_normalized("NFC", user) and user == user.lower()
    assert 0 < len(user.encode()) <= 63
    assert "/" not in user and not user.startswith(".") and user.isprintable()


@pytest.fixture(scope="module")
def ca_folder(tmp_path_factory: pytest.TempPathFactory, premade_keys: dict[str, Path]) -> Path:
    out = tmp_path_factory.mktemp("ca")
    issue_with_premade_keys(
        spec.parse({"nodes": [{"name": "base", "hosts": ["localhost"]}]}), out, premade_keys
    )
    return out


def _sign_one(the_spec: spec.Spec, base: Path, keys: dict[str, Path], task_prefix: str, work: Path) -> Path:
    """Copy a folder holding a CA into `work`, then run only the steps of `the_spec`'s leaf task (and the
    bundle assembly) with the runner's executor; the leaf key is a copy of a premade one."""
    shutil.copytree(base, work, symlinks=True)
    tool = openssl.find()
    for task in plan.build(the_spec).tasks:
        if task.id == "dirs" or task.id.startswith(task_prefix) or task.id in ("cleanup", "bundles"):
            for step in task.steps:
                if isinstance(step, Run) and step.keygen:
                    _premade(step, keys["leaf"], work, tool)
                else:
                    runner._do(step, work, tool)
    return work


@PROPERTY
@given(
    value=st.one_of(
        dns_names,
        dns_names.map(lambda n: "*.a." + n),
        ip_strings,
        st.sampled_from(["b\u00fccher.de", "\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444"]),
    )
)
def test_any_accepted_host_is_the_certificate_s_only_san(
    value: str, ca_folder: Path, premade_keys: dict[str, Path]
) -> None:
    try:
        canonical = validate.host("h", value)
    except SpecError:
        assume(False)
        raise
    the_spec = spec.parse({"nodes": [{"name": "n", "hosts": [value]}]})
    with tempfile.TemporaryDirectory() as tmp:
        work = _sign_one(the_spec, ca_folder, premade_keys, "node:", Path(tmp) / "w")
        node = pkicheck.read(work / "nodes/n/node.crt")
        assert node.dns | node.ips == {canonical}
        assert not certcheck.problems(plan.build(the_spec).expectations()[1], work)


@PROPERTY
@given(
    value=st.text(
        alphabet=st.characters(categories=["Ll", "Lu", "Nd"]) | st.sampled_from("_.-"),
        min_size=1,
        max_size=30,
    )
)
def test_any_accepted_user_round_trips_into_cn_and_file_name(
    value: str, ca_folder: Path, premade_keys: dict[str, Path]
) -> None:
    try:
        user = validate.user("u", value)
    except SpecError:
        assume(False)
        raise
    the_spec = spec.parse({"clients": [{"user": value}]})
    with tempfile.TemporaryDirectory() as tmp:
        work = _sign_one(the_spec, ca_folder, premade_keys, "client:", Path(tmp) / "w")
        [cert] = (work / "certs").glob("client.*.crt")
        found = cert.name.removeprefix("client.").removesuffix(".crt")
        assert found == user
        assert pkicheck.read(cert).cn == [user]
        assert (work / "certs" / f"client.{user}.key").is_file()


# --------------------------------------------------------------- a CSR that asks for more than it may

HOSTILE_REQUEST = """\
[ req ]
prompt = no
distinguished_name = dn
req_extensions = ext

[ dn ]
O = Cockroach
CN = maxroach

[ ext ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectAltName = DNS:root,DNS:node,URI:crdb://tenant/2/user/root,email:root@example.com
nsComment = "requested by the CSR"
"""


def _sign_hostile_request(profile: str, out: Path, keys: dict[str, Path]) -> tuple[Task, Path]:
    """The plan's own signing steps for client maxroach, fed a CSR that asks for CA:TRUE, extra
    principals (DNS root and node, a tenant URI) and an extension of its own."""
    the_spec = spec.parse({"profile": profile, "clients": [{"user": "root"}, {"user": "maxroach"}]})
    todo = issue_with_premade_keys(the_spec, out, keys)
    [task] = [t for t in todo.tasks if t.id == "client:maxroach"]
    tool = openssl.find()
    (out / "hostile.cnf").write_text(HOSTILE_REQUEST)
    csr = out / "requests/client.maxroach.csr"
    argv = ("openssl", "req", "-new", "-config", "hostile.cnf", "-key", str(keys["leaf"]), "-out", str(csr))
    tool.run(argv, out)
    asked = x509.load_pem_x509_csr(csr.read_bytes()).extensions
    assert asked.get_extension_for_class(x509.BasicConstraints).value.ca, "the CSR does ask for CA:TRUE"
    for step in task.steps:
        if isinstance(step, RandomSerial) or (isinstance(step, Run) and step.kind is Kind.SIGN):
            runner._do(step, out, tool)
    return task, out / "certs/client.maxroach.crt"


def test_secure_profile_ignores_what_a_csr_asks_for(tmp_path: Path, premade_keys: dict[str, Path]) -> None:
    task, cert_path = _sign_hostile_request("secure", tmp_path, premade_keys)
    leaf = pkicheck.read(cert_path)
    assert leaf.basic_constraints is not None and not leaf.basic_constraints.ca
    assert not leaf.key_usage.key_cert_sign and not leaf.key_usage.crl_sign
    oids = {e.oid for e in leaf.cert.extensions}
    assert ExtensionOID.SUBJECT_ALTERNATIVE_NAME not in oids, "a SAN came from the CSR"
    assert x509.ObjectIdentifier("2.16.840.1.113730.1.13") not in oids, "nsComment came from the CSR"
    assert task.expect is not None
    assert certcheck.problems(task.expect, tmp_path) == []


def test_docs_profile_copies_the_csr_and_the_check_after_signing_says_so(
    tmp_path: Path, premade_keys: dict[str, Path]
) -> None:
    """The docs' `copy_extensions = copy` (openssl-traps.md §4.2) hands the CSR's CA:TRUE and extra
    principals to the certificate; the check after every signature refuses it."""
    task, cert_path = _sign_hostile_request("docs", tmp_path, premade_keys)
    leaf = pkicheck.read(cert_path)
    assert leaf.basic_constraints is not None and leaf.basic_constraints.ca, "openssl copied CA:TRUE"
    assert leaf.dns == {"root", "node"}
    assert task.expect is not None
    found = "\n".join(certcheck.problems(task.expect, tmp_path))
    assert "CA:True, expected CA:False" in found
    assert "SANs DNS=['root', 'node']" in found
    assert "extensions the plan did not ask for: " in found
    assert "basicConstraints" not in found.split("did not ask for: ")[1].split("\n")[0]
    assert "subjectAltName" in found and "nsComment" in found
    assert "UniformResourceIdentifier" in found and "RFC822Name" in found
    [verify] = [s for s in task.steps if isinstance(s, Verify)]
    with pytest.raises(RunError, match="other than the one asked for"):
        runner._do(verify, tmp_path, openssl.find())
