"""A plan printed as a bash script: the docs' commands, configs as here-documents.

`bash` on the output in an empty folder makes an equivalent PKI; the runner's transcript is the same
text for the steps it ran.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from orchestrator import names
from orchestrator.steps import (
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
    writes,
)


def script(
    plan: Plan,
    tasks: Iterable[Task] | None = None,
    title: str = "crdb-certs plan",
    folder: Path | None = None,
    preamble: Sequence[str] = (),
    empty: bool = True,
    transcript: bool = False,
) -> str:
    """The plan (or only `tasks` of it) as bash: `script_lines`, joined."""
    return "".join(script_lines(plan, tasks, title, folder, preamble, empty, transcript))


def script_lines(
    plan: Plan,
    tasks: Iterable[Task] | None = None,
    title: str = "crdb-certs plan",
    folder: Path | None = None,
    preamble: Sequence[str] = (),
    empty: bool = True,
    transcript: bool = False,
) -> Iterator[str]:
    """The plan (or only `tasks` of it) as bash, line by line (each ending with a newline): a transcript of
    10,000 nodes is written as it is made, never held whole in memory (issue 16).

    The one printer of scripts, so that every value in one
    (a path in a command or in a comment) goes through `quote`.

    `folder`: the script makes it if missing and works there (else: where it is run); `preamble`: lines
    run there before the tasks (already quoted by the caller, with `quote`); `empty`: the script makes a
    new PKI, so it must run in an empty folder (else it adds to or replaces files of an existing one);
    `transcript`: what a run did, so a step crdb-certs does itself is shown as that (shell(..., ran=True)).
    """
    spec = plan.spec
    chosen = [t for t in (plan.tasks if tasks is None else tasks) if t.steps]
    if folder is None:
        where = "Run it in an empty folder" if empty else "Run it in the output folder"
    else:
        where = f"It works in {quote(folder)} (made if missing)"
    made = {p for t in chosen for s in t.steps for p in writes(s)}
    lines = [
        "#!/usr/bin/env bash",
        f"# {title if title.isprintable() else quote(title)}",
        f"# Made by crdb-certs (profile {spec.profile}, layout {spec.layout}). {where}: it "
        + ("creates" if empty else "adds to or changes"),
        "# certs/ (CA certificate, client certificates),",
    ]
    if any(p.startswith(names.SAFE_DIR + "/") for p in made):
        lines.append("# my-safe-directory/ (the CA key: keep it off the nodes),")
    lines += [
        "# and nodes/<name>/ (one certs directory per node).",
        "set -euo pipefail",
        "umask 077",
    ]
    if folder is not None:
        operand = quote(f"./{folder}" if str(folder).startswith("-") else folder)  # not an option
        lines += [f"mkdir -p {operand}", f"cd {operand}"]
    lines += preamble
    yield from (line + "\n" for line in lines)
    for task in chosen:
        yield f"\n# --- {task.title}\n"
        yield from (shell(step, ran=transcript) + "\n" for step in task.steps)


def quote(value: str | Path) -> str:
    """A value as one bash word that never spans lines, so it is safe in a command and in a comment:
    shlex quoting, or, for a value with a newline or another control character, `$'...'` with every
    byte that is not printable ASCII written as \\xHH (the path's own bytes, whatever the locale)."""
    text = str(value)
    if text.isprintable():
        return shlex.quote(text)
    raw = os.fsencode(text)
    return "$'" + "".join(_ansi_c(byte) for byte in raw) + "'"


def join(words: Iterable[str]) -> str:
    return " ".join(quote(word) for word in words)


def _ansi_c(byte: int) -> str:
    char = chr(byte)
    return char if 0x20 <= byte < 0x7F and char not in "\\'" else f"\\x{byte:02x}"


# What crdb-certs does in-process where the script runs a command (shell(..., ran=True)): the same 128 bits
# from the operating system's CSPRNG, written as Python's secrets module writes them.
_DRAWN = "python3 -c 'import secrets; print(secrets.token_hex(16))' > {path}  # drawn by crdb-certs itself"


def shell(step: Step, ran: bool = False) -> str:
    """A step as one bash command. With `ran` (a transcript), a step crdb-certs did in-process is shown
    as what it did, not as a command that did not run."""
    match step:
        case RandomSerial(path=path) if ran:
            return _DRAWN.format(path=quote(path))
        case Verify(expect=expect) if ran:
            return (
                f"# crdb-certs read {quote(expect.cert)} back (cryptography): subject, SANs, usages, key, CA"
            )
        case Run(argv=argv):
            return join(argv)
        case MakeDirs(paths=paths):
            return join(("mkdir", "-p", *paths))
        case Write(path=path, text=""):
            return join(("touch", path))
        case Write(path=path, text=text) if "\n" not in text.rstrip("\n") and len(text) < 40:
            line = text.rstrip("\n")  # the docs write `echo '01' > serial.txt`
            quoted = f"'{line}'" if "'" not in line else quote(line)
            return f"echo {quoted} > {quote(path)}"
        case Write(path=path, text=text):
            return _heredoc(path, text)
        case Chmod(mode=mode, path=path):
            return f"chmod {mode:o} {quote(path)}"
        case Remove(patterns=patterns):
            return "rm -f " + " ".join(_glob_quote(p) for p in patterns)
        case Copy(src=src, dst=dst, mode=None):
            return join(("cp", "-p", src, dst))
        case Copy(src=src, dst=dst, mode=int(mode)):
            return f"install -m {mode:o} {quote(src)} {quote(dst)}"
        case Append(src=src, dst=dst):
            return f"cat {quote(src)} >> {quote(dst)}"
        case RandomSerial(path=path):
            return join(("openssl", "rand", "-out", path, "-hex", "16"))
        case Verify(expect=expect):
            return join(
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
    return f"cat > {quote(path)} <<'{marker}'\n{body}{marker}"


def _glob_quote(pattern: str) -> str:
    # Quote everything but the `*`, so the shell expands exactly that and nothing else.
    return "*".join(quote(part) if part else "" for part in pattern.split("*"))
