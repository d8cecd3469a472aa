"""The floor script's openssl commands, run from Python through `sh` (orchestrator/openssl.py) and nothing
else: no configs rendered, no checks, no staging. It answers "what does a tool that runs openssl through
`sh` cost at the least?", the bound under crdb-certs' own time (issue 6, EC target). Scheduled as
crdb-certs does it: each key and the request made from it `--jobs` at a time, each signature in order as
soon as its request is there (with EC keys, requests cost as much as keys: the bash floor's "all keys,
then everything else in series" is no floor there).

Run in an empty folder, as bench.py does with the bash scripts:

    .venv/bin/python bench/sh_floor.py --n 200 --jobs 2 --key-type ec
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import scripts  # bench/ is not a package

from orchestrator import openssl


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--key-type", choices=sorted(scripts.KEYGEN), default="rsa")
    args = parser.parse_args()
    here = Path.cwd()
    tool = openssl.find()
    os.umask(0o077)
    # The folders and the docs' configs, as the bash scripts write them (bash: not openssl, not timed apart).
    # On stdin: at thousands of nodes the script is longer than one argument may be (E2BIG).
    subprocess.run(["bash"], input="\n".join(scripts.prelude(args.n)), text=True, check=True)

    def run(command: str) -> None:
        tool.run(tuple(shlex.split(command)), here)

    def key_and_request(leaf: scripts.Leaf) -> None:
        run(scripts.KEYGEN[args.key_type].format(leaf.key))
        run(scripts.sign(leaf)[0])  # openssl req

    run(scripts.KEYGEN[args.key_type].format(scripts.CA_KEY))
    run(scripts.ca_cert())
    (here / "index.txt").write_text("")
    (here / "serial.txt").write_text("01\n")
    with ThreadPoolExecutor(args.jobs) as pool:
        requests = [(leaf, pool.submit(key_and_request, leaf)) for leaf in scripts.leaves(args.n)]
        for leaf, request in requests:
            request.result()
            run(scripts.sign(leaf)[1])  # openssl ca
    subprocess.run(["bash"], input="\n".join(scripts.bundles(args.n)), text=True, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
