"""Certificates made by hand with plain openssl, the way an operator fixes or breaks a certs directory:
a CA of one's own, a certificate re-signed with other extensions, dates or digest. Used to build the
broken directories the audit must catch. No crdb-certs code is used here."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

NODE_EXT = """\
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
basicConstraints = critical,CA:FALSE
"""
CLIENT_EXT = """\
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
basicConstraints = critical,CA:FALSE
"""
CA_EXT = """\
keyUsage = critical,digitalSignature,keyEncipherment,keyCertSign
basicConstraints = critical,CA:true,pathlen:1
subjectKeyIdentifier = hash
"""
CA_SUBJECT = "/O=Cockroach/CN=Cockroach CA"


def openssl(*args: str | Path, cwd: Path | None = None) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, cwd=cwd)


def genrsa(path: Path, bits: int = 2048) -> Path:
    openssl("genrsa", "-out", path, str(bits))
    path.chmod(0o400)
    return path


def _config(work: Path, ext: str, md: str) -> Path:
    cnf = work / "openssl.cnf"
    cnf.write_text(
        f"""\
[ ca ]
default_ca = hand
[ hand ]
database = {work}/index.txt
serial = {work}/serial
new_certs_dir = {work}
default_md = {md}
policy = anything
copy_extensions = none
unique_subject = no
[ anything ]
organizationName = optional
commonName = optional
[ req ]
prompt = no
distinguished_name = dn
[ dn ]
[ ext ]
{ext}"""
    )
    return cnf


def make_ca(folder: Path, name: str = "other-ca", days: int = 3660, ext: str = CA_EXT) -> tuple[Path, Path]:
    """A CA of one's own (same subject as the docs' CA, as when someone re-runs the recipe): cert, key."""
    work = _workdir(folder, name)
    key = genrsa(work / f"{name}.key")
    return self_signed(work / f"{name}.crt", key, days=days, ext=ext), key


def self_signed(out: Path, key: Path, days: int = 3660, ext: str = CA_EXT, subject: str = CA_SUBJECT) -> Path:
    work = _workdir(out.parent, f"req-{out.name}")
    cnf = _config(work, ext, "sha256")
    openssl(
        "req", "-new", "-x509", "-config", cnf, "-extensions", "ext", "-key", key,
        "-subj", subject, "-days", str(days), "-out", out,
    )  # fmt: skip
    shutil.rmtree(work)
    return out


def sign(
    out: Path,
    key: Path,
    ca_cert: Path,
    ca_key: Path,
    subject: str,
    ext: str,
    *,
    days: int | None = 365,
    start: str | None = None,
    end: str | None = None,
    serial: str | None = None,
    md: str = "sha256",
) -> Path:
    """`openssl req` for `key` then `openssl ca` with `ext` as the only extensions; written to `out`."""
    work = _workdir(out.parent, f"sign-{out.name}")
    (work / "index.txt").write_text("")
    (work / "serial").write_text((serial or secrets.token_hex(16)) + "\n")
    cnf = _config(work, ext, md)
    openssl("req", "-new", "-config", cnf, "-key", key, "-subj", subject, "-out", work / "req.csr")
    dates: list[str] = []
    if start:
        dates += ["-startdate", start]
    if end:
        dates += ["-enddate", end]
    if days and not end:
        dates += ["-days", str(days)]
    out.unlink(missing_ok=True)
    openssl(
        "ca", "-batch", "-config", cnf, "-extensions", "ext", "-cert", ca_cert, "-keyfile", ca_key,
        "-in", work / "req.csr", "-out", out, "-notext", *dates,
    )  # fmt: skip
    shutil.rmtree(work)
    return out


def _workdir(folder: Path, name: str) -> Path:
    """Scratch space beside (never inside) the certs directory under test."""
    work = folder.parent / f".hand-{folder.name}-{name}"
    work.mkdir(parents=True)
    return work
