"""The docs profiles render the docs' own config files, value for value (fixtures copied from
shared/spec/docs/ into tests/fixtures/docs/, placeholders filled in here)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator import openssl, plan, spec
from orchestrator.cas import signers
from orchestrator.profiles import PROFILES, ProfileName
from orchestrator.resources import resource
from orchestrator.spec import Layout
from tests.conftest import FIXTURES

SPEC = {
    "nodes": [{"name": "node1", "hosts": ["node1", "node1.example.com", "10.0.0.1"]}],
    "clients": [{"user": "maxroach"}, {"user": "roach"}],
}


def rendered(profile: str) -> dict[str, str]:
    return plan.build(spec.parse({**SPEC, "profile": profile})).configs()


def fixture(era: str, name: str, **placeholders: str) -> str:
    text = (FIXTURES / "docs" / era / name).read_text()
    for placeholder, value in placeholders.items():
        text = text.replace(f"<{placeholder}>", value)
    assert "<" not in text, f"unfilled placeholder in {name}"
    return text


NODE_PLACEHOLDERS = {"node-hostname": "node1", "node-domain": "node1.example.com", "IP Address": "10.0.0.1"}


@pytest.mark.parametrize(
    ("profile", "era", "files"),  # rendered path -> (fixture file, placeholders)
    [
        (
            "docs",
            "v26.3",
            {
                "ca.cnf": ("ca.cnf", {}),
                "requests/node.node1.cnf": ("node.cnf", NODE_PLACEHOLDERS),
                "requests/client.maxroach.cnf": ("client.first-user.cnf", {"username_1": "maxroach"}),
                "requests/client.roach.cnf": ("client.cnf", {"username_2": "roach"}),
            },
        ),
        (
            "docs-v19",
            "v19.2",
            {
                "ca.cnf": ("ca.cnf", {}),
                "requests/node.node1.cnf": ("node.cnf", NODE_PLACEHOLDERS),
                "requests/client.maxroach.cnf": ("client.cnf", {"username": "maxroach"}),
                "requests/client.roach.cnf": ("client.cnf", {"username": "roach"}),
            },
        ),
    ],
)
def test_docs_profiles_render_the_docs_files(
    profile: str, era: str, files: dict[str, tuple[str, dict[str, str]]]
) -> None:
    configs = rendered(profile)
    assert set(configs) == set(files)
    for path, (name, placeholders) in files.items():
        assert configs[path] == fixture(era, name, **placeholders), path


@pytest.mark.parametrize("path", ["ca.cnf", "requests/node.node1.cnf", "requests/client.maxroach.cnf"])
def test_secure_profile_explains_every_deviation_in_a_comment(path: str) -> None:
    docs_lines = set(rendered("docs")[path].splitlines())
    secure_lines = rendered("secure")[path].splitlines()
    deviations = 0
    for i, line in enumerate(secure_lines):
        if line and not line.startswith("#") and line not in docs_lines:
            deviations += 1
            paragraph = []  # the lines above it, up to the previous blank line
            for above in reversed(secure_lines[:i]):
                if not above:
                    break
                paragraph.append(above)
            assert any(a.startswith("# secure:") for a in paragraph), f"{path}: no reason given for {line!r}"
    assert deviations > 0 or path.startswith("requests/client")


def test_fixture_copies_match_shared_spec() -> None:
    shared = Path(__file__).resolve().parents[2] / "shared" / "spec" / "docs"
    if not shared.is_dir():
        pytest.skip("../shared/spec/docs is not present; the copies in tests/fixtures are used instead")
    for original in shared.rglob("*"):
        if original.is_file():
            copy = FIXTURES / "docs" / original.relative_to(shared)
            assert copy.read_text() == original.read_text(), copy


REQUEST_SECTIONS = {"req", "distinguished_name", "extensions", "alt_names"}  # what `openssl req` reads


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("key")
    argv = ("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "k.pem")
    openssl.find().run(argv, folder)
    return folder / "k.pem"


@pytest.mark.parametrize("ui", [None, "node-ca", "ui-ca"])
@pytest.mark.parametrize("layout", list(Layout))
@pytest.mark.parametrize("profile", list(ProfileName))
def test_openssl_accepts_every_config_of_every_profile_and_layout(
    profile: ProfileName, layout: Layout, ui: str | None, key: Path, tmp_path: Path
) -> None:
    """Each CA config makes a CA certificate and signs with each of its sections; each request config
    makes a CSR, which the CA signs with ca.cnf's node section and with each section of the request's own
    config (`openssl ca -extfile`)."""
    data = {**SPEC, "profile": profile.value, "layout": layout.value}
    if ui:
        data["ui"] = {"hosts": ["ui.example.com", "10.0.0.9"], "issuer": ui}
    the_spec = spec.parse(data)
    configs = plan.build(the_spec).configs()
    kinds = {re.sub(r"[-.].*", "", Path(p).name) for p in configs}  # which templates rendered
    assert kinds == {"ca", "node", "client"} | ({"ui"} if ui else set())
    (tmp_path / "certs").mkdir()
    (tmp_path / "requests").mkdir()
    for path, text in configs.items():
        (tmp_path / path).write_text(text)
    tool, cas = openssl.find(), signers(the_spec).all

    def req(cnf: str, out: str, *x509: str) -> None:
        tool.run(
            ("openssl", "req", "-new", *x509, "-config", cnf, "-key", str(key), "-out", out, "-batch"),
            tmp_path,
        )

    def sign(cnf: str, csr: str, *extensions: str) -> None:
        argv = ("openssl", "ca", "-config", cnf, "-keyfile", str(key), "-cert", f"certs/{cnf[:-4]}.crt")
        argv += ("-policy", "signing_policy", *extensions, "-in", csr, "-out", f"{csr}.crt", "-outdir", ".")
        tool.run((*argv, "-days", "1", "-batch"), tmp_path)

    for ca in cas:
        req(ca.cnf, ca.cert, "-x509", "-days", "2")
        (tmp_path / ca.database).write_text("")
        (tmp_path / ca.serial).write_text("01\n")
        req(ca.cnf, f"{ca.name}.csr")
        for section in ("signing_node_req", "signing_client_req"):
            sign(ca.cnf, f"{ca.name}.csr", "-extensions", section)
    requests = [p for p in configs if p not in {ca.cnf for ca in cas}]
    assert requests and all(p.startswith("requests/") for p in requests)
    for cnf in requests:
        csr = cnf[:-4] + ".csr"
        req(cnf, csr)
        sign(cas[0].cnf, csr, "-extensions", "signing_node_req")
        for section in set(re.findall(r"^\[ (\w+) \]$", configs[cnf], re.M)) - REQUEST_SECTIONS:
            sign(cas[0].cnf, csr, "-extfile", cnf, "-extensions", section)


def test_no_template_names_a_profile() -> None:
    """The templates read the profile's fields (profiles.Profile), never its name: a new profile is a
    new value, not an edit of every template."""
    names = {p.value for p in ProfileName}
    for template in sorted(resource("templates").glob("*.j2")):
        for expression in re.findall(r"\{%.*?%\}|\{\{.*?\}\}", template.read_text(), re.S):
            literals = {m[1] for m in re.findall(r"""(["'])(.*?)\1""", expression)}
            assert not literals & names, f"{template.name}: {expression}"
            assert not re.search(r"profile\s*(==|!=|\bin\b)|profile\.name\b", expression), expression


def test_every_profile_name_has_its_profile() -> None:
    assert set(PROFILES) == set(ProfileName)
    assert all(name == profile.name for name, profile in PROFILES.items())
