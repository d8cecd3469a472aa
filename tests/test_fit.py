"""Fitting the user's machine and organization: [subject] organization, --openssl / CRDB_CERTS_OPENSSL,
plain tables when not on a terminal, the progress line. Real openssl; certificates read back with
`cryptography`."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from tests.conftest import crdb, write_spec

SPEC = """\
key_type = "ec"
layout = "split-ca"
{extra}
[[nodes]]
name = "n1"
hosts = ["localhost", "127.0.0.1"]

[[clients]]
user = "root"

[ui]
hosts = ["console.example.com"]
issuer = "ui-ca"
"""


def organizations(out: Path) -> dict[str, list[str]]:
    found = {}
    for crt in sorted(out.glob("*/**/*.crt")):
        if "backup" in crt.parts:
            continue
        for i, cert in enumerate(x509.load_pem_x509_certificates(crt.read_bytes())):
            names = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
            found[f"{crt.relative_to(out)}#{i}"] = [str(n.value) for n in names]
    return found


def test_subject_organization_is_the_o_of_every_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(
        tmp_path, SPEC.format(extra='[subject]\norganization = "Example \\"Corp\\" #1 $HOME"\n')
    )
    out = tmp_path / "out"
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    found = organizations(out)
    assert len(found) >= 8 and all(o == ['Example "Corp" #1 $HOME'] for o in found.values()), found
    # The folder's record keeps it: a run without --config changes nothing, and audits clean.
    assert crdb("issue", "--out", out) == 0
    assert "up to date" in capsys.readouterr().out
    # Another organization is a difference like any other: refused until --reissue.
    other = write_spec(tmp_path, SPEC.format(extra='[subject]\norganization = "Other"\n'), "other.toml")
    assert crdb("issue", "--config", other, "--out", out) == 1
    assert "subject differs" in capsys.readouterr().err


def test_without_subject_every_certificate_says_cockroach(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, SPEC.format(extra=""))
    out = tmp_path / "out"
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    assert set(map(tuple, organizations(out).values())) == {("Cockroach",)}


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ('organization = ""', 'error: subject.organization: "" is not an organization name'),
        ('organization = "Caf\u00e9"', 'error: subject.organization: "Caf\\xe9" is not printable ASCII'),
        ('organization = "a\\tb"', 'error: subject.organization: "a\\tb" is not printable ASCII'),
        ('organization = " Corp"', 'error: subject.organization: " Corp" starts or ends with white space'),
        (f'organization = "{"x" * 65}"', "is longer than 64 characters"),
        ("organization = 1", "error: subject.organization: 1 is not an organization name"),
        ('org = "x"', 'error: subject.org: "x" is not a known key (known: organization)'),
    ],
)
def test_a_bad_organization_is_one_line_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], table: str, error: str
) -> None:
    spec = write_spec(tmp_path, SPEC.format(extra=f"[subject]\n{table}\n"))
    assert crdb("issue", "--config", spec, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert error in err and err.startswith("error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()
