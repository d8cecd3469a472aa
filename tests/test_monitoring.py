"""Expiry monitoring: `check --format prometheus|json` and `export alert-rules`, read back by Prometheus' own
promtool (`check metrics`, `check rules`, `test rules`) and by a JSON schema validator; the values are
compared with the certificates' notAfter read by `cryptography`. Keys are EC P-256 (fast to make)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml
from cryptography import x509

from orchestrator import monitoring
from orchestrator.lifecycle import Seen
from tests.conftest import REPO, crdb, write_spec

SPEC = """\
key_type = "ec"
layout = "split-ca"

[[nodes]]
name = "n1"
hosts = ["localhost", "127.0.0.1"]

[[nodes]]
name = "n2"
hosts = ["n2.example.com"]

[[clients]]
user = "root"

[ui]
hosts = ["console.example.com"]
issuer = "ui-ca"
"""
USAGES = {"ca", "ca-client", "ca-ui", "node", "node-client", "ui", "client"}
SAMPLE = re.compile(r"^(\w+)(?:\{(.*)\})? (-?\d+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        raise RuntimeError("promtool not found (Debian: apt-get install prometheus; .ci/run does this)")
    return found


def promtool_accepts(*args: str, stdin: str | None = None, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [promtool(), *args], input=stdin, capture_output=True, text=True, cwd=cwd, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def samples(text: str) -> list[tuple[str, dict[str, str], int]]:
    found = []
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match:
            labels = {k: unescape(v) for k, v in LABEL.findall(match.group(2) or "")}
            found.append((match.group(1), labels, int(match.group(3))))
    return found


def check_output(target: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    status = crdb("check", target, *args)
    return status, capsys.readouterr().out


@pytest.fixture(scope="module")
def rotated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every usage CockroachDB names (split-ca and a UI CA), after a CA rotation: every CA file holds two."""
    spec = write_spec(tmp_path_factory.mktemp("spec"), SPEC)
    out = tmp_path_factory.mktemp("monitoring") / "out"
    assert crdb("issue", "--config", spec, "--out", out, "--quiet") == 0
    assert crdb("rotate-ca", "--out", out, "--quiet") == 0
    return out


def expected_samples(out: Path) -> dict[tuple[str, str, str], int]:
    """(path, file, index) -> notAfter, read by cryptography: every certificate of a CA file, the first of
    any other .crt."""
    found = {}
    for crt in sorted(out.glob("*/**/*.crt")):
        if crt.parent.name in ("requests",) or "backup" in crt.parts:
            continue
        certs = x509.load_pem_x509_certificates(crt.read_bytes())
        for i, cert in enumerate(certs if crt.name.startswith("ca") else certs[:1]):
            key = (str(crt.parent.resolve()), crt.name, str(i))
            found[key] = int(cert.not_valid_after_utc.timestamp())
    return found


def test_prometheus_samples_pass_promtool_and_are_the_certificates_expiry(
    rotated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, text = check_output(rotated, "--format", "prometheus", capsys=capsys)
    assert status == 0
    promtool_accepts("check", "metrics", stdin=text)
    assert "# TYPE crdb_certs_expiry_timestamp_seconds gauge" in text
    assert "# HELP crdb_certs_expiry_timestamp_seconds " in text
    found = samples(text)
    expiry = [(labels, value) for name, labels, value in found if name == monitoring.EXPIRY]
    series = {(lab["path"], lab["file"], lab["index"]): value for lab, value in expiry}
    assert len(series) == len(expiry)  # no duplicate series: a CA bundle's certificates differ by index
    assert series == expected_samples(rotated)
    assert {lab["usage"] for lab, _ in expiry} == USAGES
    assert any(lab["index"] == "1" and lab["file"] == "ca-ui.crt" for lab, _ in expiry)
    by_file = {lab["file"]: lab for lab, _ in expiry}
    assert by_file["client.node.crt"]["usage"] == "node-client"
    assert by_file["client.root.crt"]["principal"] == "root"
    assert by_file["node.crt"]["principal"] == "node"
    assert set(by_file) >= {"ca.crt", "ca-client.crt", "ca-ui.crt", "node.crt", "ui.crt"}
    checked = [value for name, _, value in found if name == monitoring.CHECKED]
    assert len(checked) == 1 and abs(checked[0] - datetime.now(UTC).timestamp()) < 60
    assert (monitoring.ERRORS, {}, 0) in found


def test_label_values_are_escaped_as_the_exposition_format_says(
    rotated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    odd = tmp_path / 'a "quoted"\\ name'  # (a path with a line break is refused as the command is read)
    shutil.copytree(rotated / "nodes" / "n1", odd)
    status, text = check_output(odd, "--format", "prometheus", capsys=capsys)
    assert status == 0
    promtool_accepts("check", "metrics", stdin=text)
    paths = {labels["path"] for name, labels, _ in samples(text) if name == monitoring.EXPIRY}
    assert paths == {str(odd)}
    # A subject's CN is whatever the certificate says, line breaks included.
    cn = 'x"\\\ny'
    seen = [Seen(odd, "client.x.crt", 0, "client", cn, datetime.now(UTC))]
    text = monitoring.prometheus(seen, [], datetime.now(UTC))
    promtool_accepts("check", "metrics", stdin=text)
    assert 'principal="x\\"\\\\\\ny"' in text
    assert [labels["principal"] for _, labels, _ in samples(text) if labels] == [cn]


def test_json_is_the_same_data_and_follows_its_schema(
    rotated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = monitoring.schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert json.loads((Path(monitoring.__file__).parent / "check.schema.json").read_text()) == schema
    status, text = check_output(rotated, "--format", "json", "--within", "400d", capsys=capsys)
    data = json.loads(text)
    jsonschema.validate(data, schema)
    found = {
        (c["path"], c["file"], str(c["index"])): c["expiry_timestamp_seconds"] for c in data["certificates"]
    }
    assert found == expected_samples(rotated)
    # Leaves live 365 days: all of them expire within 400 days, which the exit status says too.
    assert status == 1 and data["expiring"] and data["within_seconds"] == 400 * 86400
    leaves = [c for c in data["certificates"] if not c["usage"].startswith("ca")]
    assert leaves and all(c["expiring"] for c in leaves)
    assert not any(c["expiring"] for c in data["certificates"] if c["usage"].startswith("ca"))
    assert data["problems"] == []


@pytest.mark.parametrize("output", ["text", "json", "prometheus"])
def test_every_format_exits_as_text_does(
    rotated: Path, tmp_path: Path, output: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check_output(rotated, "--format", output, "--within", "300d", capsys=capsys)[0] == 0
    assert check_output(rotated, "--format", output, "--within", "400d", capsys=capsys)[0] == 1
    broken = tmp_path / "certs"
    shutil.copytree(rotated / "certs", broken)
    (broken / "client.root.crt").write_text("not a certificate\n")
    status, text = check_output(broken, "--format", output, "--within", "1d", capsys=capsys)
    assert status == 1
    if output == "prometheus":
        promtool_accepts("check", "metrics", stdin=text)
        assert "\ncrdb_certs_check_errors 1\n" in text
        assert 'file="client.root.crt"' not in text
    if output == "json":
        problem = f"{broken}/client.root.crt: no certificates found in client.root.crt"
        assert json.loads(text)["problems"] == [problem]


# ------------------------------------------------------------------------------------- alert rules

DAY = 86400
# alert -> (labels of a sample, the threshold in seconds): fires 1 s inside, silent at the edge.
THRESHOLDS = {
    "CrdbCertsCAExpiringSoon": [({"usage": u}, 366 * DAY) for u in ("ca", "ca-client", "ca-ui")],
    "CrdbCertsNodeExpiringSoon": [({"usage": u}, 183 * DAY) for u in ("node", "node-client")],
    "CrdbCertsUIExpiringSoon": [({"usage": "ui"}, 20 * DAY)],
    "CrdbCertsClientExpiringSoon": [({"usage": "client"}, 30 * DAY)],
    "CrdbCertsExpired": [({"usage": "node"}, 0)],
}
HUMANIZED = {366 * DAY - 1: "365d 23h 59m 59s", 183 * DAY - 1: "182d 23h 59m 59s"}
HUMANIZED |= {20 * DAY - 1: "19d 23h 59m 59s", 30 * DAY - 1: "29d 23h 59m 59s", 2 * DAY + 1: "2d 0h 0m 1s"}


def render(template: str, labels: dict[str, str], value: str) -> str:
    """The few Go template forms the rules use."""
    text = template.replace("{{ $value | humanizeDuration }}", value).replace("{{ $value }}", value)
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), text)


def series(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def test_alert_rules_pass_promtool_and_fire_exactly_inside_their_thresholds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "crdb-certs.rules.yml"
    assert crdb("export", "alert-rules", "--out", rules) == 0
    assert "promtool check rules" in capsys.readouterr().out
    assert "SUCCESS: 7 rules found" in promtool_accepts("check", "rules", str(rules))
    shipped = {r["alert"]: r for r in yaml.safe_load(rules.read_text())["groups"][0]["rules"]}

    def fired(alert: str, labels: dict[str, str], value: int) -> dict[str, Any]:
        annotations = shipped[alert]["annotations"]
        shown = HUMANIZED.get(value, str(value))
        return {
            "exp_labels": labels | shipped[alert]["labels"],
            "exp_annotations": {k: render(v, labels, shown) for k, v in annotations.items()},
        }

    tests = []
    # Evaluated at time 0, so a sample's value is the time its certificate has left.
    for alert, cases in THRESHOLDS.items():
        inputs, expected = [], []
        for i, (usage, limit) in enumerate(cases):
            inside = {"path": "/crdb/certs", "file": f"in{i}.crt", "index": "0", "principal": "p"} | usage
            edge = inside | {"file": f"edge{i}.crt"}
            inputs += [
                {"series": "crdb_certs_expiry_timestamp_seconds" + series(inside), "values": str(limit - 1)},
                {"series": "crdb_certs_expiry_timestamp_seconds" + series(edge), "values": str(limit)},
            ]
            expected.append(fired(alert, inside, limit - 1))
        if alert != "CrdbCertsExpired":  # another usage, inside this threshold: not this alert's
            other = {"path": "/crdb/certs", "file": "x.crt", "index": "0", "principal": "p", "usage": "ui"}
            if alert == "CrdbCertsUIExpiringSoon":
                other["usage"] = "client"
            inputs.append({"series": "crdb_certs_expiry_timestamp_seconds" + series(other), "values": "1"})
        tests.append(
            {
                "interval": "1m",
                "input_series": inputs,
                "alert_rule_test": [{"eval_time": "0s", "alertname": alert, "exp_alerts": expected}],
            }
        )
    instance = {"instance": "db1:9100", "job": "node"}
    for alert, metric, inside, edge in (
        ("CrdbCertsCheckStale", "crdb_certs_check_timestamp_seconds", -2 * DAY - 1, -2 * DAY),
        ("CrdbCertsCheckErrors", "crdb_certs_check_errors", 1, 0),
    ):
        value = 2 * DAY + 1 if alert == "CrdbCertsCheckStale" else 1
        tests.append(
            {
                "interval": "1m",
                "input_series": [
                    {"series": metric + series(instance), "values": str(inside)},
                    {"series": metric + series(instance | {"instance": "db2:9100"}), "values": str(edge)},
                ],
                "alert_rule_test": [
                    {"eval_time": "0s", "alertname": alert, "exp_alerts": [fired(alert, instance, value)]}
                ],
            }
        )
    unit = tmp_path / "rules.test.yml"
    unit.write_text(yaml.safe_dump({"rule_files": [rules.name], "tests": tests}))
    promtool_accepts("test", "rules", unit.name, cwd=tmp_path)
    # And promtool does fail a wrong expectation (the test above is not vacuous).
    tests[0]["alert_rule_test"][0]["exp_alerts"] = []
    unit.write_text(yaml.safe_dump({"rule_files": [rules.name], "tests": tests}))
    done = subprocess.run([promtool(), "test", "rules", unit.name], cwd=tmp_path, capture_output=True)
    assert done.returncode != 0


def test_export_alert_rules_to_a_folder_that_cannot_be_written_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert crdb("export", "alert-rules", "--out", tmp_path / "missing" / "rules.yml") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out: ") and err.count("\n") == 1, err


def readme_commands() -> list[str]:
    """The README's cron line and systemd ExecStart, as the shell runs them."""
    text = (REPO / "README.md").read_text()
    cron = next(line for line in text.splitlines() if line.startswith("17 * * * * "))
    unit = next(line for line in text.splitlines() if line.startswith("ExecStart=/bin/sh -c '"))
    systemd = unit.removeprefix("ExecStart=/bin/sh -c '").removesuffix("'").replace("$$", "$")
    return [cron.split(" ", 5)[5], systemd]


@pytest.mark.parametrize("which", [0, 1], ids=["cron", "systemd"])
def test_the_readmes_schedules_write_the_file_whole_and_keep_it_on_an_error(
    rotated: Path, tmp_path: Path, which: int
) -> None:
    certs, textfiles = tmp_path / "certs", tmp_path / "node-exporter"
    shutil.copytree(rotated / "certs", certs)
    textfiles.mkdir()
    command = readme_commands()[which]
    command = command.replace("/var/lib/cockroach/certs", str(certs))
    command = command.replace("/var/lib/prometheus/node-exporter", str(textfiles))
    command = command.replace("crdb-certs check", f"{sys.executable} -m orchestrator check")
    env = os.environ | {"PYTHONPATH": str(REPO)}

    def run() -> int:
        return subprocess.run(["sh", "-c", command], env=env, timeout=60, check=False).returncode

    prom = textfiles / "crdb-certs.prom"
    assert run() == 0
    promtool_accepts("check", "metrics", stdin=prom.read_text())
    assert len([s for s in samples(prom.read_text()) if s[0] == monitoring.EXPIRY]) == len(
        expected_samples(tmp_path)
    )
    # Something expires within the window (exit 1): the file is written all the same.
    command = command.replace("--format prometheus", "--format prometheus --within 400d")
    prom.unlink()
    assert run() == 0 and "crdb_certs_check_errors 0" in prom.read_text()
    # A usage error (exit 2): the last file stays as it was, and the command says it failed.
    before = prom.read_text()
    command = command.replace("--within 400d", "--within 400x")
    assert run() != 0
    assert prom.read_text() == before
