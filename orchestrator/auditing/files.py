"""Audit rules on the directory's files as files: what CockroachDB ignores or may block on, and who can
write the directory and its certificates."""

from __future__ import annotations

import pwd
import stat

from orchestrator.auditing import keys
from orchestrator.auditing.findings import Check
from orchestrator.files import NotRegular

CODES: dict[str, str] = {
    "file-ignored": "a file or folder CockroachDB ignores",
    "file-not-regular": "a FIFO, socket or device: whatever reads the directory may block on it",
    "dir-permissions": "a certs directory others can write in: they can swap its certificates and keys",
    "cert-permissions": "a certificate file others can write: they can swap it (and the CA it trusts)",
    "cert-owner": "a certificate file owned by another user than the directory's owner (or root)",
}


def subdirectories(check: Check) -> None:
    for sub in check.dir.subdirs:
        check.add(
            "info",
            "file-ignored",
            sub,
            "a sub-directory: CockroachDB does not look into it",
            "move it out of the certs directory if it is not needed there",
        )


def other_files(check: Check) -> None:
    """What the loader skips: a key there is judged by keys.stray, anything else is a note."""
    known = keys.known_keys(check)
    for name in check.dir.other_files:
        try:
            found, unreadable = keys.private_keys_in(check.dir.path / name)
        except NotRegular:
            check.add(
                "warning",
                "file-not-regular",
                name,
                "not a regular file (a FIFO, socket or device): a program that reads every file here"
                " blocks on it or reads it forever",
                f"move {name} out of the certs directory",
            )
            continue
        if not keys.stray(check, name, found, unreadable, known):
            check.add(
                "info",
                "file-ignored",
                name,
                "CockroachDB ignores it (it reads only *.crt files and their keys)",
                "keep CSRs, configs, openssl's <serial>.pem copies and CA databases out of the certs"
                " directory",
            )


def permissions(check: Check) -> None:
    """Who can change what a node trusts. CockroachDB checks only the keys' modes (cockroach-certs.md
    §5.3), but whoever can write ca.crt, or rename files in the directory, picks the CA the node trusts
    and can swap node.crt and node.key: as bad as a key others can read, so an error (`cockroach
    cert` makes the directory 0700 and certificates 0644). A certificate owned by another user (not
    root, who can do anything anyway) is a warning: that user can rewrite it, which is only as safe as
    that account; CockroachDB trusts a key's owner only, and root for its group (§5.3)."""
    try:
        folder = check.dir.path.stat()
    except OSError:
        return
    mode = stat.S_IMODE(folder.st_mode)
    if mode & 0o022:
        sticky = bool(folder.st_mode & stat.S_ISVTX)  # others may add files, not replace or remove
        check.add(
            "warning" if sticky else "error",
            "dir-permissions",
            None,
            f"the directory is writable by {_whom(mode)} (mode {mode:04o}): they can "
            + ("add a certificate where none is" if sticky else "replace ca.crt, node.crt or a key"),
            f"chmod 700 {check.dir.path} (and check that nothing in it was replaced)",
        )
    for cert in check.dir.certs:
        try:
            info = (check.dir.path / cert.name).stat()
        except OSError:
            continue
        bits = stat.S_IMODE(info.st_mode)
        what = "the CA this directory trusts" if cert.usage.is_ca else "this certificate"
        if bits & 0o022:
            check.add(
                "error",
                "cert-permissions",
                cert.name,
                f"writable by {_whom(bits)} (mode {bits:04o}): they can replace {what}",
                f"chmod 644 {check.path(cert.name)} (and check that it is the certificate you issued)",
            )
        elif info.st_uid not in (folder.st_uid, 0):
            check.add(
                "warning",
                "cert-owner",
                cert.name,
                f"owned by {_user(info.st_uid)}, not by the directory's owner {_user(folder.st_uid)}:"
                f" that user can replace {what}",
                f"chown {_user(folder.st_uid)} {check.path(cert.name)}",
            )


def _whom(mode: int) -> str:
    return " and ".join(w for w, bit in (("its group", 0o020), ("others", 0o002)) if mode & bit)


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
