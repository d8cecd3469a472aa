"""`make bench`: crdb-certs against the two plain openssl scripts of bench/scripts.py.

For each "cluster N" (CA + N nodes + 2 clients, RSA 2048) and each round, in one process and interleaved
(the order of the three rotates from round to round, so a burst of load elsewhere on the machine hits all of
them alike):

- floor       keys `--jobs` at a time, signing in series (the least a tool shelling out to openssl costs)
- docs-order  the docs' page command by command
- crdb-certs  `crdb-certs issue --config SPEC --out DIR --quiet --jobs J`, then on its output
              a no-op re-run (nothing to do) and "+1 node" (the spec with one node more)
- floor ec, crdb-certs ec
              the floor script and crdb-certs again with EC P-256 keys instead of RSA 2048
- sh floor ec the floor's openssl commands run from Python through `sh`, as crdb-certs runs them, and
              nothing else (bench/sh_floor.py)

Every run is read back with `cryptography` (files present, keys match, signed by the CA, SANs) before its
time counts, so a broken run cannot pass for a fast one. Medians and ratios are printed and written to
bench/results/ (results.md, results.json, results.png). Not part of `make test`: nothing here is a timed
assertion.

    make bench                       # N = 10 and 50, 3 rounds
    make bench BENCH_ARGS=--big      # also N = 200 (minutes)
    make bench BENCH_ARGS="--n 200 --rounds 1"
    make bench BENCH_ARGS=--huge     # also N = 2,000 and 10,000, EC only, one round (most of an hour)
    make bench BENCH_ARGS="--huge-n 2000 --n 10 --rounds 1"

--huge (issue 16): "floor ec" and "crdb-certs ec" (profile `secure`, what a fleet uses) at N = 2,000 and
10,000, one round each; on crdb-certs' output then a no-op re-run, "+1 node", the re-run after it (which
writes nothing, so audits what the last stamp did not see clean), and `audit` of its certs/ plus `check`
of the whole folder. Each of those crdb-certs runs writes what its phases cost (the file
CRDB_CERTS_PHASES names, orchestrator/phases.py) and its peak RSS is read from wait4(2): the per-phase
table, and results-huge.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scripts  # bench/ is not a package

REPO = Path(__file__).resolve().parent.parent
KINDS = ("floor", "docs-order", "crdb-certs")
EXTRA = ("no-op re-run", "+1 node")
# The same cluster with EC P-256 keys (issue 6: >= 10x faster than RSA); "sh floor ec" runs the floor's
# openssl commands through `sh` from Python (bench/sh_floor.py): the least crdb-certs' way of running costs.
EC_KINDS = ("floor ec", "sh floor ec", "crdb-certs ec")
# --huge (issue 16): thousands of nodes, EC only, one round; the runs on crdb-certs' output after it.
HUGE = (2000, 10000)
HUGE_KINDS = ("floor ec", "sh floor ec", "crdb-certs ec")
HUGE_EXTRA = ("no-op re-run ec", "+1 node ec", "re-run after +1 ec", "audit+check ec")
HUGE_PROFILE = "secure"


@dataclass
class Sample:
    kind: str
    n: int
    round: int
    seconds: float  # wall clock
    cpu: float  # user + sys of the child processes
    rss_mb: float = 0.0  # peak resident set of the process (and its children), from wait4(2)


@dataclass
class Results:
    machine: dict[str, str]
    args: dict[str, object]
    samples: list[Sample] = field(default_factory=list)
    # "<kind> N=<n>" -> phase -> seconds, as crdb-certs reported them (--huge)
    phases: dict[str, dict[str, float]] = field(default_factory=dict)

    def times(self, kind: str, n: int) -> list[float]:
        return [s.seconds for s in self.samples if s.kind == kind and s.n == n]

    def median(self, kind: str, n: int) -> float:
        found = self.times(kind, n)
        return statistics.median(found) if found else float("nan")


# ----------------------------------------------------------------------------------------------- running


def _timed(argv: list[str], cwd: Path, phases: Path | None = None) -> tuple[float, float, float]:
    """Run argv; return (wall seconds, CPU seconds, peak RSS in MB) of it and its children. A failure stops
    the benchmark. With `phases`, crdb-certs writes there what each phase of the run cost."""
    env = {**os.environ, "OPENSSL_CONF": os.devnull}  # as crdb-certs runs openssl
    if phases is not None:
        env["CRDB_CERTS_PHASES"] = str(phases)
    with tempfile.TemporaryFile() as stderr:
        start = time.perf_counter()
        child = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage, not every earlier one's
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            stderr.seek(0)
            said = stderr.read().decode(errors="replace")[-3000:]
            sys.exit(f"bench: `{shlex.join(argv)}` in {cwd} failed ({child.returncode}):\n{said}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def verify(out: Path, n: int, profile: str = "docs") -> None:
    """Fail the benchmark unless `out` holds the whole cluster-n PKI, every certificate right. Only the
    docs' profile gives the first client a SAN (DNS:root)."""
    try:
        ca = x509.load_pem_x509_certificate((out / scripts.CA_CERT).read_bytes())
        items: list[tuple[str, str, tuple[str, ...], tuple[str, ...]]] = [
            (scripts.CA_CERT, scripts.CA_KEY, (), ())
        ]
        items += [
            (leaf.cert, leaf.key, leaf.dns if leaf.kind == "node" or profile == "docs" else (), leaf.ips)
            for leaf in scripts.leaves(n)
        ]
        for cert_path, key_path, dns, ips in items:
            cert = x509.load_pem_x509_certificate((out / cert_path).read_bytes())
            # no RSA consistency check: it costs ~45 ms a key and the question is only "is it this cert's key"
            key = serialization.load_pem_private_key(
                (out / key_path).read_bytes(), password=None, unsafe_skip_rsa_key_validation=True
            )
            spki = serialization.PublicFormat.SubjectPublicKeyInfo
            der = serialization.Encoding.DER
            if key.public_key().public_bytes(der, spki) != cert.public_key().public_bytes(der, spki):
                raise ValueError(f"{key_path} does not match {cert_path}")
            cert.verify_directly_issued_by(ca)
            if (out / key_path).stat().st_mode & 0o077:
                raise ValueError(f"{key_path} is readable by others")
            if dns or ips:
                san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                got = set(san.get_values_for_type(x509.DNSName)) | {
                    str(ip) for ip in san.get_values_for_type(x509.IPAddress)
                }
                if not set(dns) | set(ips) <= got:
                    raise ValueError(f"{cert_path}: SANs {sorted(got)}, expected {dns + ips}")
        for i in range(1, n + 1):
            if (out / f"nodes/node{i}/ca.crt").read_bytes() != (out / scripts.CA_CERT).read_bytes():
                raise ValueError(f"nodes/node{i}/ca.crt is not certs/ca.crt")
        leftovers = sorted(p.name for p in (out / "certs").glob("*.pem"))
        if leftovers:
            raise ValueError(f"openssl's copies left in certs/: {leftovers}")
    except (OSError, ValueError, TypeError, x509.ExtensionNotFound) as e:
        sys.exit(f"bench: {out} is not a complete cluster-{n} PKI: {e}")


def run_case(kind: str, n: int, rnd: int, args: argparse.Namespace, results: Results, scratch: Path) -> None:
    out = Path(tempfile.mkdtemp(prefix=f"{kind}-{n}-", dir=scratch))
    samples: list[Sample] = []
    crdb = [*shlex.split(args.crdb_certs), "issue", "--out", str(out), "--quiet", "--jobs", str(args.jobs)]
    if kind == "crdb-certs ec" and n in args.huge:
        samples += _huge_case(crdb, n, out, args, results, scratch)
    elif kind == "crdb-certs ec":
        spec = scratch / f"cluster-{n}-ec.toml"
        spec.write_text(scripts.spec_toml(n, args.profile, key_type="ec"))
        samples.append(Sample(kind, n, rnd, *_timed([*crdb, "--config", str(spec)], scratch)))
        verify(out, n)
    elif kind == "crdb-certs":
        spec, bigger = scratch / f"cluster-{n}.toml", scratch / f"cluster-{n + 1}.toml"
        spec.write_text(scripts.spec_toml(n, args.profile))
        bigger.write_text(scripts.spec_toml(n + 1, args.profile))
        samples.append(Sample(kind, n, rnd, *_timed([*crdb, "--config", str(spec)], scratch)))
        verify(out, n)
        samples.append(Sample("no-op re-run", n, rnd, *_timed([*crdb, "--config", str(spec)], scratch)))
        verify(out, n)
        samples.append(Sample("+1 node", n, rnd, *_timed([*crdb, "--config", str(bigger)], scratch)))
        verify(out, n + 1)
    elif kind == "sh floor ec":
        python = sys.executable  # the venv bench.py runs in (make bench: .venv), which has orchestrator
        argv = [str(python), str(REPO / "bench" / "sh_floor.py"), "--n", str(n), "--jobs", str(args.jobs)]
        samples.append(Sample(kind, n, rnd, *_timed([*argv, "--key-type", "ec"], out)))
        verify(out, n)
    else:
        if kind == "docs-order":
            text = scripts.docs_order(n)
        else:
            text = scripts.floor(n, args.jobs, key_type="ec" if kind == "floor ec" else "rsa")
        (out / "run.sh").write_text(text)
        samples.append(Sample(kind, n, rnd, *_timed(["bash", "run.sh"], out)))
        verify(out, n)
    for s in samples:
        results.samples.append(s)
        print(
            f"  round {rnd + 1} N={n:<5} {s.kind:<15} {s.seconds:7.2f} s  (cpu {s.cpu:6.2f} s, "
            f"peak {s.rss_mb:5.0f} MB)",
            flush=True,
        )
    if not args.keep:
        shutil.rmtree(out)


def _huge_case(
    crdb: list[str], n: int, out: Path, args: argparse.Namespace, results: Results, scratch: Path
) -> list[Sample]:
    """crdb-certs ec at N = thousands, then on its output: a no-op re-run, +1 node, the re-run after it,
    audit + check; each crdb-certs run reports its phases."""
    spec, bigger = scratch / f"cluster-{n}-ec.toml", scratch / f"cluster-{n + 1}-ec.toml"
    spec.write_text(scripts.spec_toml(n, HUGE_PROFILE, key_type="ec"))
    bigger.write_text(scripts.spec_toml(n + 1, HUGE_PROFILE, key_type="ec"))
    phases = scratch / "phases.json"
    samples = []
    for kind, config, size in (
        ("crdb-certs ec", spec, n),
        ("no-op re-run ec", spec, n),
        ("+1 node ec", bigger, n + 1),
        ("re-run after +1 ec", bigger, n + 1),
    ):
        phases.unlink(missing_ok=True)
        samples.append(Sample(kind, n, 0, *_timed([*crdb, "--config", str(config)], scratch, phases)))
        results.phases[f"{kind} N={n}"] = json.loads(phases.read_text())
        verify(out, size, HUGE_PROFILE)
    tool = shlex.split(args.crdb_certs)
    wall, cpu, rss = 0.0, 0.0, 0.0
    for argv in ([*tool, "audit", str(out / "certs")], [*tool, "check", str(out)]):
        phases.unlink(missing_ok=True)
        w, c, r = _timed(argv, scratch, phases)
        wall, cpu, rss = wall + w, cpu + c, max(rss, r)
        for phase, seconds in json.loads(phases.read_text()).items():
            got = results.phases.setdefault(f"audit+check ec N={n}", {})
            got[phase] = got.get(phase, 0.0) + seconds
    samples.append(Sample("audit+check ec", n, 0, wall, cpu, rss))
    return samples


# ----------------------------------------------------------------------------------------------- report


def _machine() -> dict[str, str]:
    openssl = subprocess.run(["openssl", "version"], capture_output=True, text=True, check=True).stdout
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "openssl": openssl.strip(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "load_before": _load(),
    }


def _checkout() -> str:
    """The commit of this checkout, and whether the code crdb-certs runs differs from it."""
    git = ["git", "-C", str(REPO)]
    try:
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "orchestrator", "templates"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "working tree"
    return f"working tree at {head.stdout.strip()}" + (
        " with uncommitted changes" if dirty.stdout.strip() else ""
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def table(results: Results, ns: list[int]) -> list[dict[str, float | int]]:
    rows: list[dict[str, float | int]] = []
    for n in ns:
        certs = n + 3  # CA, n nodes, 2 clients
        floor, docs, crdb = (results.median(k, n) for k in KINDS)
        paired = [
            _ratio(c, f)
            for c, f in zip(results.times("crdb-certs", n), results.times("floor", n), strict=False)
        ]
        rows.append(
            {
                "n": n,
                "certificates": certs,
                "rounds": len(results.times("crdb-certs", n)),
                "floor_s": floor,
                "docs_order_s": docs,
                "crdb_certs_s": crdb,
                "crdb_over_floor": _ratio(crdb, floor),
                "crdb_over_floor_paired": statistics.median(paired) if paired else float("nan"),
                "crdb_over_docs": _ratio(crdb, docs),
                "floor_ms_per_cert": 1000 * floor / certs,
                "docs_order_ms_per_cert": 1000 * docs / certs,
                "crdb_certs_ms_per_cert": 1000 * crdb / certs,
                "noop_rerun_s": results.median("no-op re-run", n),
                "plus_one_node_s": results.median("+1 node", n),
                "floor_ec_s": results.median("floor ec", n),
                "crdb_certs_ec_s": results.median("crdb-certs ec", n),
                "sh_floor_ec_s": results.median("sh floor ec", n),
                "crdb_ec_over_floor_ec": _ratio(
                    results.median("crdb-certs ec", n), results.median("floor ec", n)
                ),
                "rsa_over_ec": _ratio(crdb, results.median("crdb-certs ec", n)),
            }
        )
    return rows


def markdown(results: Results, rows: list[dict[str, float | int]]) -> str:
    m = results.machine
    lines = [
        "# crdb-certs benchmark",
        "",
        f"{m['date']} · {m['nproc']} CPUs ({m['cpu']}) · {m['openssl']} · Python {m['python']} · "
        f"load average before {m['load_before']}, after {m.get('load_after', '?')}",
        "",
        f"cluster N = CA + N nodes + 2 clients, RSA 2048, profile `{results.args['profile']}`, "
        f"--jobs {results.args['jobs']}; medians of interleaved rounds (wall clock, seconds).",
        f"crdb-certs: {results.args.get('label', '')} (`{results.args['crdb_certs']}`)",
        "",
        "| N | certs | rounds | floor | docs-order | crdb-certs | crdb/floor | crdb/docs "
        "| ms/cert floor | ms/cert docs | ms/cert crdb | no-op re-run | +1 node |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']} | {r['certificates']} | {r['rounds']} "
            f"| {r['floor_s']:.2f} | {r['docs_order_s']:.2f} "
            f"| {r['crdb_certs_s']:.2f} | {r['crdb_over_floor']:.2f} | {r['crdb_over_docs']:.2f} "
            f"| {r['floor_ms_per_cert']:.0f} | {r['docs_order_ms_per_cert']:.0f} "
            f"| {r['crdb_certs_ms_per_cert']:.0f} | {r['noop_rerun_s']:.2f} | {r['plus_one_node_s']:.2f} |"
        )
    lines += [
        "",
        'The same clusters with EC P-256 keys (`key_type = "ec"`): the floor script with `openssl genpkey`, '
        "and crdb-certs.",
        "",
        "| N | floor ec | sh floor ec | crdb-certs ec | crdb ec/floor ec | crdb-certs rsa / crdb-certs ec "
        "| crdb-certs rsa / sh floor ec |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']} | {r['floor_ec_s']:.2f} | {r['sh_floor_ec_s']:.2f} | {r['crdb_certs_ec_s']:.2f} "
            f"| {r['crdb_ec_over_floor_ec']:.2f} | {r['rsa_over_ec']:.1f} "
            f"| {_ratio(float(r['crdb_certs_s']), float(r['sh_floor_ec_s'])):.1f} |"
        )
    lines += [
        "",
        "floor: keys generated --jobs at a time (xargs -P), then requests and signatures in series; "
        "docs-order: the docs' page, every command one after another; both from bench/scripts.py.",
        "Targets (issue 6): crdb/floor ≤ 1.10 at N = 50 and 200; no-op re-run of N = 200 < 1 s; "
        "+1 node on N = 200 < 0.5 s + one key generation; crdb-certs rsa / crdb-certs ec ≥ 10 at N = 200.",
        "",
    ]
    return "\n".join(lines)


def huge_markdown(results: Results, huge: list[int]) -> str:
    """--huge: the thousands-of-nodes table, then what each phase of each crdb-certs run cost."""
    if not huge:
        return ""
    lines = [
        "",
        f"## Thousands of nodes (EC P-256, profile `{HUGE_PROFILE}`, one round)",
        "",
        "| N | certs | floor ec | crdb-certs ec | crdb/floor | ms/cert crdb | peak RSS | no-op re-run "
        "| +1 node | re-run after +1 | audit certs/ + check |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in huge:
        floor, crdb = results.median("floor ec", n), results.median("crdb-certs ec", n)
        rss = max((s.rss_mb for s in results.samples if s.n == n and s.kind.endswith(" ec")), default=0.0)
        lines.append(
            f"| {n} | {n + 3} | {floor:.1f} | {crdb:.1f} | {_ratio(crdb, floor):.2f} "
            f"| {1000 * crdb / (n + 3):.1f} | {rss:.0f} MB | {results.median('no-op re-run ec', n):.2f} "
            f"| {results.median('+1 node ec', n):.2f} | {results.median('re-run after +1 ec', n):.2f} "
            f"| {results.median('audit+check ec', n):.2f} |"
        )
    runs = ("crdb-certs ec", *HUGE_EXTRA)
    other = "other: start-up, reading the spec, exit"  # the wall clock the phases do not account for
    for n in huge:
        found = [dict(results.phases.get(f"{run} N={n}", {})) for run in runs]
        for run, phases in zip(runs, found, strict=True):
            if phases:
                phases[other] = results.median(run, n) - sum(phases.values())
        phases = list(dict.fromkeys(p for f in found for p in f))
        lines += [
            "",
            f"Phases at N = {n} ({n + 3} certificates): seconds, and ms per certificate",
            "",
            "| phase | " + " | ".join(runs) + " |",
            "|---|" + "---:|" * len(runs),
        ]
        for phase in phases:
            cells = [
                f"{f[phase]:.2f} s ({1000 * f[phase] / (n + 3):.2f})" if phase in f else "" for f in found
            ]
            lines.append(f"| {phase} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Targets (issue 16): crdb/floor ≤ 1.20 at N = 2,000 and 10,000; no-op re-run ≤ 1 s at 2,000, ≤ 3 s "
        "at 10,000; +1 node at 10,000 ≤ 1 s + one key; audit + check at 10,000 ≤ 5 s; peak RSS ≤ 150 MB.",
        "",
    ]
    return "\n".join(lines)


def plot_huge(results: Results, huge: list[int], path: Path) -> None:
    """ms per certificate of floor ec and crdb-certs ec at every N measured (flat: linear cost), and
    crdb-certs' phases per certificate at each --huge N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = sorted({s.n for s in results.samples if s.kind == "crdb-certs ec"})
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4))
    for kind, color in (("floor ec", "#4c72b0"), ("sh floor ec", "#8172b2"), ("crdb-certs ec", "#55a868")):
        got = [(n, 1000 * results.median(kind, n) / (n + 3)) for n in ns if results.times(kind, n)]
        left.plot([n for n, _ in got], [m for _, m in got], marker="o", label=kind, color=color)
    left.set_xscale("log")
    left.set_xlabel("N (nodes)")
    left.set_ylabel("ms per certificate")
    left.set_title("Issuing cluster N, EC P-256: flat = linear")
    left.set_ylim(0, left.get_ylim()[1] * 1.15)
    left.legend(fontsize=8)
    bottom = [0.0] * len(huge)
    phases = list(dict.fromkeys(p for n in huge for p in results.phases.get(f"crdb-certs ec N={n}", {})))
    cmap = plt.get_cmap("tab20")
    for k, phase in enumerate(phases):
        per = [1000 * results.phases.get(f"crdb-certs ec N={n}", {}).get(phase, 0.0) / (n + 3) for n in huge]
        right.bar([str(n) for n in huge], per, bottom=bottom, label=phase, color=cmap(k % 20))
        bottom = [b + p for b, p in zip(bottom, per, strict=True)]
    right.set_xlabel("N (nodes)")
    right.set_ylabel("ms per certificate")
    right.set_title("crdb-certs ec: where a run's time goes")
    right.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    info = results.machine
    fig.suptitle(
        f"Thousands of nodes - {info['nproc']} CPUs, load {info['load_before']} before, "
        f"{info.get('load_after', '?')} after, {info['date']}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot(results: Results, rows: list[dict[str, float | int]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [int(r["n"]) for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4), gridspec_kw={"width_ratios": [3, 2]})
    width = 0.26
    colors = {"floor": "#4c72b0", "docs-order": "#c44e52", "crdb-certs": "#55a868"}
    for k, kind in enumerate(KINDS):
        xs = [i + (k - 1) * width for i in range(len(ns))]
        per_cert = [[1000 * t / (n + 3) for t in results.times(kind, n)] for n in ns]
        med = [statistics.median(p) for p in per_cert]
        lo = [m - min(p) for m, p in zip(med, per_cert, strict=True)]
        hi = [max(p) - m for m, p in zip(med, per_cert, strict=True)]
        left.bar(xs, med, width, yerr=[lo, hi], capsize=3, label=kind, color=colors[kind])
        if kind == "crdb-certs":
            for x, p, r in zip(xs, per_cert, rows, strict=True):
                left.annotate(
                    f"{r['crdb_over_floor']:.2f} x floor",
                    (x, max(p)),
                    xytext=(0, 4),
                    textcoords="offset points",
                    ha="center",
                    fontsize=8,
                )
    left.set_xticks(range(len(ns)), [f"N={n}\n({n + 3} certs)" for n in ns])
    left.set_ylabel("ms per certificate (median; bars: min-max)")
    left.set_title("Issuing cluster N from nothing")
    left.legend(loc="upper left", fontsize=8)
    left.set_ylim(0, left.get_ylim()[1] * 1.15)

    for k, kind in enumerate(EXTRA):
        xs = [i + (k - 0.5) * 0.38 for i in range(len(ns))]
        med = [results.median(kind, n) for n in ns]
        right.bar(xs, med, 0.38, label=kind, color=["#8172b2", "#ccb974"][k])
        for x, m in zip(xs, med, strict=True):
            right.annotate(
                f"{m:.2f}", (x, m), xytext=(0, 3), textcoords="offset points", ha="center", fontsize=8
            )
    right.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="no-op target at N=200: 1 s")
    right.set_xticks(range(len(ns)), [f"N={n}" for n in ns])
    right.set_ylabel("seconds (median)")
    right.set_title("crdb-certs on an existing cluster N")
    right.legend(loc="upper left", fontsize=8)
    right.set_ylim(0, max(1.3, right.get_ylim()[1] * 1.15))

    info = results.machine
    fig.suptitle(
        f"crdb-certs vs plain openssl, RSA 2048 - {info['nproc']} CPUs, "
        f"{info['openssl'].split(' (')[0]}, {info['date']}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, action="append", help="cluster size (repeat; default: 10 and 50)")
    parser.add_argument("--big", action="store_true", help="also N = 200 (takes minutes)")
    parser.add_argument(
        "--huge", action="store_true", help="also N = 2,000 and 10,000, EC only, one round (most of an hour)"
    )
    parser.add_argument("--huge-n", type=int, action="append", help="a --huge size of your own (repeat)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per N (default: 3)")
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="keys at once, floor and crdb-certs (default: CPUs)",
    )
    parser.add_argument(
        "--profile",
        default="docs",
        choices=("docs", "secure", "docs-v19"),
        help="crdb-certs profile (default: docs, the same openssl commands as the scripts; "
        "secure adds one `openssl rand` per certificate)",
    )
    parser.add_argument(
        "--crdb-certs",
        default=str(REPO / ".venv" / "bin" / "crdb-certs"),
        help="the crdb-certs command (default: .venv/bin/crdb-certs)",
    )
    parser.add_argument(
        "--label", default="", help="what this crdb-certs is, for the results (e.g. a commit)"
    )
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "results", help="where to write")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG (no matplotlib needed)")
    parser.add_argument("--keep", action="store_true", help="keep the output folders (under the temp dir)")
    parser.add_argument(
        "--replot", type=Path, metavar="JSON", help="only rewrite results.md and the PNG from a results.json"
    )
    args = parser.parse_args(argv)
    if args.replot:
        data = json.loads(args.replot.read_text())
        old = Results(
            data["machine"], data["args"], [Sample(**s) for s in data["samples"]], data.get("phases", {})
        )
        _write(old, data["args"]["n"], args.replot.parent, plot_it=not args.no_plot)
        return 0
    ns: list[int] = sorted(set(args.n or [10, 50]) | ({200} if args.big else set()))
    args.huge = sorted(set(args.huge_n or []) | (set(HUGE) if args.huge else set()))

    results = Results(
        _machine(),
        {
            "n": ns,
            "huge": args.huge,
            "rounds": args.rounds,
            "jobs": args.jobs,
            "profile": args.profile,
            "crdb_certs": args.crdb_certs,
            "label": args.label or _checkout(),
        },
    )
    print(
        f"bench: N={ns}, {args.rounds} rounds, huge N={args.huge}, --jobs {args.jobs}, "
        f"load average {_load()}",
        flush=True,
    )
    scratch = Path(tempfile.mkdtemp(prefix="crdb-certs-bench-"))
    try:
        for rnd in range(args.rounds):
            for n in ns:
                every = KINDS + EC_KINDS
                order = every[rnd % len(every) :] + every[: rnd % len(every)]  # nobody always runs first
                for kind in order:
                    run_case(kind, n, rnd, args, results, scratch)
        for n in args.huge:  # one round: the floor, then crdb-certs and the runs on its output
            for kind in HUGE_KINDS:
                run_case(kind, n, 0, args, results, scratch)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    results.machine["load_after"] = _load()

    _write(results, ns, args.results, plot_it=not args.no_plot)
    return 0


def _write(results: Results, ns: list[int], where: Path, plot_it: bool) -> None:
    rows = table(results, ns)
    huge = list(results.args.get("huge") or [])  # type: ignore[call-overload]
    text = markdown(results, rows) + huge_markdown(results, huge)
    print("\n" + text)
    where.mkdir(parents=True, exist_ok=True)
    (where / "results.md").write_text(text)
    data = {
        "machine": results.machine,
        "args": results.args,
        "table": rows,
        "samples": [asdict(s) for s in results.samples],
        "phases": results.phases,
    }
    (where / "results.json").write_text(json.dumps(data, indent=2) + "\n")
    if plot_it:
        plot(results, rows, where / "results.png")
        if huge:
            plot_huge(results, huge, where / "results-huge.png")
    print(f"written: {where}/results.md, results.json" + (", results.png" if plot_it else ""))


if __name__ == "__main__":
    sys.exit(main())
