"""crdb-certs' own cost, without key generation: the issue-6 targets "fixed overhead < 150 ms" and
"everything but key generation < 15 ms per certificate".

An `openssl` wrapper first on PATH answers `genrsa` by copying a key made beforehand (one per output path, so
every certificate still has its own key) and passes every other command to the real openssl. With key
generation out of the way:

- fixed overhead  = median wall time of a no-op re-run of cluster 1 (start-up, imports, spec, rendering,
                    state inspection, audit, commit), next to `python -c pass`, importing the three
                    libraries every run needs, and `crdb-certs --help`
- per certificate = slope of a fresh issue between cluster `--small` and cluster `--large`
                    (crdb-certs, and the floor script run the same way, for comparison)

    .venv/bin/python bench/overhead.py [--rounds 5] [--crdb-certs CMD]
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scripts  # bench/ is not a package

REPO = Path(__file__).resolve().parent.parent

_WRAPPER = """#!/bin/bash
# genrsa without the key generation: the key made beforehand for this output path
if [ "$1" = genrsa ]; then
  out=; prev=
  for a in "$@"; do [ "$prev" = -out ] && out=$a; prev=$a; done
  cat "{pool}/${{out//\\//_}}" > "$out"; exit 0
fi
exec {openssl} "$@"
"""


def _fake_openssl(where: Path, n: int) -> Path:
    """A folder holding the wrapper `openssl` and a key for every path cluster n writes."""
    real = shutil.which("openssl")
    if real is None:
        sys.exit("overhead: openssl not found")
    pool = where / "pool"
    pool.mkdir()
    keys = [scripts.CA_KEY, *(leaf.key for leaf in scripts.leaves(n))]
    names = "\n".join(k.replace("/", "_") for k in keys) + "\n"
    subprocess.run(
        [
            "xargs",
            "-P",
            str(os.cpu_count() or 1),
            "-I{}",
            real,
            "genrsa",
            "-out",
            "{}",
            str(scripts.KEY_BITS),
        ],
        input=names,
        cwd=pool,
        text=True,
        capture_output=True,
        check=True,
    )
    binary = where / "bin"
    binary.mkdir()
    (binary / "openssl").write_text(_WRAPPER.format(pool=pool, openssl=real))
    (binary / "openssl").chmod(0o755)
    return binary


def _time(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"overhead: `{shlex.join(argv)}` failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--small", type=int, default=10)
    parser.add_argument("--large", type=int, default=50)
    parser.add_argument("--profile", default="docs", choices=("docs", "secure", "docs-v19"))
    parser.add_argument("--crdb-certs", default=str(REPO / ".venv" / "bin" / "crdb-certs"))
    args = parser.parse_args(argv)
    crdb = shlex.split(args.crdb_certs)
    scratch = Path(tempfile.mkdtemp(prefix="crdb-certs-overhead-"))
    try:
        binary = _fake_openssl(scratch, args.large)
        env = {**os.environ, "PATH": f"{binary}{os.pathsep}{os.environ['PATH']}", "OPENSSL_CONF": os.devnull}
        for n in (1, args.small, args.large):
            (scratch / f"c{n}.toml").write_text(scripts.spec_toml(n, args.profile))
        one = scratch / "one"
        _time(
            [*crdb, "issue", "--config", str(scratch / "c1.toml"), "--out", str(one), "--quiet"], scratch, env
        )
        samples: dict[str, list[float]] = {}
        for rnd in range(args.rounds):
            runs: dict[str, list[str]] = {
                "python -c pass": [sys.executable, "-c", "pass"],
                # The floor under any run: the libraries every run needs (CLI, certificates, configs).
                "import click, cryptography.x509, jinja2": [
                    str(Path(crdb[0]).with_name("python")),
                    "-c",
                    "import click, cryptography.x509, jinja2",
                ],
                "crdb-certs --help": [*crdb, "--help"],
                "no-op re-run, cluster 1": [
                    *crdb,
                    "issue",
                    "--config",
                    str(scratch / "c1.toml"),
                    "--out",
                    str(one),
                ],
            }
            for label, cmd in runs.items():
                samples.setdefault(label, []).append(
                    _time([*cmd, "--quiet"] if "issue" in cmd else cmd, scratch, env)
                )
            for n in (args.small, args.large):
                out = scratch / f"fresh-{n}-{rnd}"
                spec = str(scratch / f"c{n}.toml")
                cmd = [*crdb, "issue", "--config", spec, "--out", str(out), "--quiet"]
                samples.setdefault(f"crdb-certs {n}", []).append(_time(cmd, scratch, env))
                shutil.rmtree(out)
                out.mkdir()
                (out / "run.sh").write_text(scripts.floor(n, os.cpu_count() or 1))
                samples.setdefault(f"floor {n}", []).append(_time(["bash", "run.sh"], out, env))
                shutil.rmtree(out)
            print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in samples.items()}
    print(f"key generation replaced by a copy; medians of {args.rounds} rounds; profile {args.profile}")
    for label in ("python -c pass", "import click, cryptography.x509, jinja2", "crdb-certs --help"):
        print(f"  {label:<40} {1000 * med[label]:7.0f} ms")
    print(f"  {'no-op re-run, cluster 1':<40} {1000 * med['no-op re-run, cluster 1']:7.0f} ms")
    span = args.large - args.small
    for who in ("crdb-certs", "floor"):
        small, large = med[f"{who} {args.small}"], med[f"{who} {args.large}"]
        print(
            f"  {who:<11} fresh cluster {args.small}: {small:5.2f} s, cluster {args.large}: {large:5.2f} s"
            f" -> {1000 * (large - small) / span:5.1f} ms per extra certificate (keygen excluded)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
