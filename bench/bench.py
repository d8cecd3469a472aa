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
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
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


@dataclass
class Sample:
    kind: str
    n: int
    round: int
    seconds: float  # wall clock
    cpu: float  # user + sys of the child processes


@dataclass
class Results:
    machine: dict[str, str]
    args: dict[str, object]
    samples: list[Sample] = field(default_factory=list)

    def times(self, kind: str, n: int) -> list[float]:
        return [s.seconds for s in self.samples if s.kind == kind and s.n == n]

    def median(self, kind: str, n: int) -> float:
        found = self.times(kind, n)
        return statistics.median(found) if found else float("nan")


# ----------------------------------------------------------------------------------------------- running


def _timed(argv: list[str], cwd: Path) -> tuple[float, float]:
    """Run argv; return (wall seconds, child CPU seconds). A failure stops the benchmark."""
    env = {**os.environ, "OPENSSL_CONF": os.devnull}  # as crdb-certs runs openssl
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"bench: `{shlex.join(argv)}` in {cwd} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def verify(out: Path, n: int) -> None:
    """Fail the benchmark unless `out` holds the whole cluster-n PKI, every certificate right."""
    try:
        ca = x509.load_pem_x509_certificate((out / scripts.CA_CERT).read_bytes())
        items: list[tuple[str, str, tuple[str, ...], tuple[str, ...]]] = [
            (scripts.CA_CERT, scripts.CA_KEY, (), ())
        ]
        items += [(leaf.cert, leaf.key, leaf.dns, leaf.ips) for leaf in scripts.leaves(n)]
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
    if kind == "crdb-certs ec":
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
        python = Path(shlex.split(args.crdb_certs)[0]).with_name("python")
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
        print(f"  round {rnd + 1} N={n:<4} {s.kind:<13} {s.seconds:7.2f} s  (cpu {s.cpu:6.2f} s)", flush=True)
    if not args.keep:
        shutil.rmtree(out)


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
        old = Results(data["machine"], data["args"], [Sample(**s) for s in data["samples"]])
        _write(old, data["args"]["n"], args.replot.parent, plot_it=not args.no_plot)
        return 0
    ns: list[int] = sorted(set(args.n or [10, 50]) | ({200} if args.big else set()))

    results = Results(
        _machine(),
        {
            "n": ns,
            "rounds": args.rounds,
            "jobs": args.jobs,
            "profile": args.profile,
            "crdb_certs": args.crdb_certs,
            "label": args.label or _checkout(),
        },
    )
    print(f"bench: N={ns}, {args.rounds} rounds, --jobs {args.jobs}, load average {_load()}", flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="crdb-certs-bench-"))
    try:
        for rnd in range(args.rounds):
            for n in ns:
                every = KINDS + EC_KINDS
                order = every[rnd % len(every) :] + every[: rnd % len(every)]  # nobody always runs first
                for kind in order:
                    run_case(kind, n, rnd, args, results, scratch)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    results.machine["load_after"] = _load()

    _write(results, ns, args.results, plot_it=not args.no_plot)
    return 0


def _write(results: Results, ns: list[int], where: Path, plot_it: bool) -> None:
    rows = table(results, ns)
    text = markdown(results, rows)
    print("\n" + text)
    where.mkdir(parents=True, exist_ok=True)
    (where / "results.md").write_text(text)
    data = {
        "machine": results.machine,
        "args": results.args,
        "table": rows,
        "samples": [asdict(s) for s in results.samples],
    }
    (where / "results.json").write_text(json.dumps(data, indent=2) + "\n")
    if plot_it:
        plot(results, rows, where / "results.png")
    print(f"written: {where}/results.md, results.json" + (", results.png" if plot_it else ""))


if __name__ == "__main__":
    sys.exit(main())
