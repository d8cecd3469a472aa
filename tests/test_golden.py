"""The docs profiles render the docs' own config files, value for value (fixtures copied from
shared/spec/docs/ into tests/fixtures/docs/, placeholders filled in here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import plan, spec
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
