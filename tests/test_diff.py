"""`crdb-certs diff`: two profiles' openssl configs for the same spec, as a unified diff — and every way
`secure` departs from the docs' configs carries a `# secure:` comment saying why."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import pytest

from orchestrator import plan, spec
from tests.conftest import CLUSTER_SPEC, REPO, crdb, write_spec


def run_diff(capsys: pytest.CaptureFixture[str], *args: str | Path, status: int = 1) -> str:
    """The diff printed; `status`: 1 when the configs differ, 0 when they are the same, as diff(1)."""
    capsys.readouterr()
    assert crdb("diff", *args) == status
    return capsys.readouterr().out


def test_secure_against_the_docs_shows_the_fixes(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_diff(capsys, "--config", REPO / "certs.toml")
    assert "--- docs/ca.cnf\n+++ secure/ca.cnf\n" in out
    assert "-copy_extensions = copy\n" in out and "+copy_extensions = none\n" in out
    assert "--- docs/requests/node.node1.cnf\n+++ secure/requests/node.node1.cnf\n" in out
    assert "+commonName = node\n" in out
    assert "-subjectAltName = DNS:root\n" in out  # the docs' first user


def test_a_profile_against_itself_has_no_differences(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_diff(capsys, "--profile", "docs", status=0).strip() == "docs and docs: the same configs"


def test_the_two_doc_eras_differ_where_the_pages_do(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_diff(capsys, "--profile", "docs-v19", "--against", "docs")
    assert "--- docs/requests/node.node1.cnf\n+++ docs-v19/requests/node.node1.cnf\n" in out
    assert "+commonName = node\n" in out


NEAR = 8  # lines: a comment explains the change it sits beside


@pytest.mark.parametrize("text", [None, CLUSTER_SPEC], ids=["default", "cluster"])
def test_every_change_secure_makes_is_explained_in_the_rendered_file(
    text: str | None, tmp_path: Path
) -> None:
    path = write_spec(tmp_path, text) if text else REPO / "certs.toml"
    secure = plan.build(spec.load(path, "secure")).configs()
    docs = plan.build(spec.load(path, "docs")).configs()
    assert set(secure) == set(docs)
    for rel in secure:
        new = secure[rel].splitlines()
        comments = [i for i, line in enumerate(new, 1) if line.startswith("# secure:")]
        changes = 0
        for line in difflib.unified_diff(docs[rel].splitlines(), new, n=0, lineterm=""):
            hunk = re.match(r"@@ -\S+ \+(\d+)(?:,(\d+))? @@", line)
            if hunk:
                first = int(hunk.group(1))
                last = first + max(int(hunk.group(2) or 1), 1) - 1
                assert any(first - NEAR <= c <= last + NEAR for c in comments), (rel, line)
                changes += 1
        assert changes == 0 or comments, rel
