"""A plan printed as a bash script: the docs' commands, configs as here-documents.

`bash` on the output in an empty folder makes an equivalent PKI; the runner's transcript is the same
text for the steps it ran.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable

from orchestrator.plan import (
    Append,
    Chmod,
    Copy,
    MakeDirs,
    Plan,
    RandomSerial,
    Remove,
    Run,
    Step,
    Task,
    Verify,
    Write,
)

_HEADER = """\
#!/usr/bin/env bash
# {title}
# Made by crdb-certs (profile {profile}, layout {layout}). Run it in an empty folder: it creates
# certs/ (CA certificate, client certificates), my-safe-directory/ (the CA key: keep it off the nodes)
# and nodes/<name>/ (one certs directory per node).
set -euo pipefail
umask 077
"""


def script(plan: Plan, tasks: Iterable[Task] | None = None, title: str = "crdb-certs plan") -> str:
    spec = plan.spec
    lines = [_HEADER.format(title=title, profile=spec.profile, layout=spec.layout)]
    for task in plan.tasks if tasks is None else tasks:
        if task.steps:
            lines.append(f"\n# --- {task.title}")
            lines.extend(shell(step) for step in task.steps)
    return "\n".join(lines) + "\n"


def shell(step: Step) -> str:
    match step:
        case Run(argv=argv):
            return shlex.join(argv)
        case MakeDirs(paths=paths):
            return shlex.join(("mkdir", "-p", *paths))
        case Write(path=path, text=""):
            return shlex.join(("touch", path))
        case Write(path=path, text=text) if "\n" not in text.rstrip("\n") and len(text) < 40:
            line = text.rstrip("\n")  # the docs write `echo '01' > serial.txt`
            quoted = f"'{line}'" if "'" not in line else shlex.quote(line)
            return f"echo {quoted} > {shlex.quote(path)}"
        case Write(path=path, text=text):
            return _heredoc(path, text)
        case Chmod(mode=mode, path=path):
            return f"chmod {mode:o} {shlex.quote(path)}"
        case Remove(patterns=patterns):
            return "rm -f " + " ".join(_glob_quote(p) for p in patterns)
        case Copy(src=src, dst=dst, mode=None):
            return shlex.join(("cp", "-p", src, dst))
        case Copy(src=src, dst=dst, mode=int(mode)):
            return f"install -m {mode:o} {shlex.quote(src)} {shlex.quote(dst)}"
        case Append(src=src, dst=dst):
            return f"cat {shlex.quote(src)} >> {shlex.quote(dst)}"
        case RandomSerial(path=path):
            return shlex.join(("openssl", "rand", "-out", path, "-hex", "16"))
        case Verify(expect=expect):
            return shlex.join(
                (
                    "openssl",
                    "x509",
                    "-in",
                    expect.cert,
                    "-noout",
                    "-subject",
                    "-ext",
                    "subjectAltName,extendedKeyUsage",
                )
            )
    raise TypeError(f"unknown step {step!r}")


def _heredoc(path: str, text: str) -> str:
    marker = "EOF"
    while marker in text.splitlines():
        marker += "_"
    body = text if text.endswith("\n") else text + "\n"
    return f"cat > {shlex.quote(path)} <<'{marker}'\n{body}{marker}"


def _glob_quote(pattern: str) -> str:
    # Quote everything but the `*`, so the shell expands exactly that and nothing else.
    return "*".join(shlex.quote(part) if part else "" for part in pattern.split("*"))
