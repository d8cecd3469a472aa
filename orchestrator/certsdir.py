"""A certs directory as CockroachDB reads it (pkg/security/certificate_loader.go, `CertificateLoader.Load`).

`read()` does what the loader does — which names it recognises, which it skips, which make the whole load
fail, which key it looks for beside a certificate and whether the key's permissions pass — and records each
error where CockroachDB records it (in the certificate's `error`, shown by `cockroach cert list`). It also
keeps what the loader skips, so that the audit can say something about every file. Reads only.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from orchestrator import names
from orchestrator.certcheck import load_key, parse_der
from orchestrator.errors import UserError
from orchestrator.files import read_regular

SKIP_PERMISSION_ENV = "COCKROACH_SKIP_KEY_PERMISSION_CHECK"


class Usage(Enum):
    """CockroachDB's PemUsage: value = what `cockroach cert list` prints in its Usage column."""

    CA = "CA"
    CLIENT_CA = "Client CA"
    TENANT_CA = "Tenant Client CA"
    UI_CA = "UI CA"
    NODE = "Node"
    UI = "UI"
    CLIENT = "Client"
    TENANT = "Tenant Client"
    TENANT_SIGNING = "Tenant Signing"

    @property
    def is_ca(self) -> bool:
        return self in (Usage.CA, Usage.CLIENT_CA, Usage.TENANT_CA, Usage.UI_CA)


@dataclass(frozen=True)
class _Pattern:
    usage: Usage
    named: bool  # client.<name>.crt: the middle parts are a name; else exactly <prefix>.crt
    what: str  # for the loader's "... filename should match ..." message
    form: str


# The loader's table of names (CertInfoFromFilename), as data.
_PATTERNS: dict[str, _Pattern] = {
    names.CA_CERT.removesuffix(".crt"): _Pattern(Usage.CA, False, "CA certificate", names.CA_CERT),
    names.CLIENT_CA_CERT.removesuffix(".crt"): _Pattern(
        Usage.CLIENT_CA, False, "client CA certificate", names.CLIENT_CA_CERT
    ),
    names.TENANT_CA_CERT.removesuffix(".crt"): _Pattern(
        Usage.TENANT_CA, False, "tenant CA certificate", names.TENANT_CA_CERT
    ),
    names.UI_CA_CERT.removesuffix(".crt"): _Pattern(
        Usage.UI_CA, False, "UI CA certificate", names.UI_CA_CERT
    ),
    names.NODE_CERT.removesuffix(".crt"): _Pattern(Usage.NODE, False, "node certificate", names.NODE_CERT),
    names.UI_CERT.removesuffix(".crt"): _Pattern(Usage.UI, False, "UI certificate", names.UI_CERT),
    names.CLIENT_PREFIX: _Pattern(Usage.CLIENT, True, "client certificate", "client.<user>.crt"),
    names.TENANT_CLIENT_PREFIX: _Pattern(
        Usage.TENANT, True, "tenant certificate", "client-tenant.<tenantid>.crt"
    ),
    names.TENANT_SIGNING_PREFIX: _Pattern(
        Usage.TENANT_SIGNING, True, "tenant signing certificate", "tenant-signing.<tenantid>.crt"
    ),
}
# The order `cockroach cert list` prints its rows in (clients last).
USAGE_ORDER = tuple(Usage)


@dataclass
class CertFile:
    """One recognised certificate file and what the loader made of it."""

    name: str  # file name in the directory
    usage: Usage
    suffix: str  # the user name / tenant id of a named certificate; "" otherwise
    certs: list[x509.Certificate] = field(default_factory=list)  # [] when it could not be parsed
    key_name: str | None = None  # None for CA usages (no key is looked for)
    key: PrivateKeyTypes | None = None
    error: str | None = None  # CockroachDB's stored error (cert list's Error column)
    error_kind: str | None = None  # which check failed: cert | key-missing | key-not-regular | ...
    key_mode: int | None = None  # permission bits of the key file
    key_max: int | None = None  # the most CockroachDB allows for it (0700, or 0740 for root's group)

    @property
    def leaf(self) -> x509.Certificate | None:
        return self.certs[0] if self.certs else None


@dataclass(frozen=True)
class BadName:
    """A `.crt` file the loader does not accept."""

    name: str
    reason: str  # the loader's own message
    fatal: bool = False  # a non-numeric tenant id fails the whole load


@dataclass
class CertsDir:
    path: Path
    certs: list[CertFile]
    bad_names: list[BadName]
    other_files: list[str]  # regular files (and symlinks) that are not .crt: skipped by the loader
    subdirs: list[str]
    skip_permission_check: bool
    env_error: str | None  # COCKROACH_SKIP_KEY_PERMISSION_CHECK set to something Go cannot parse
    # certs by name, made on the first `get` after `read` has added them: the audit asks for ca.crt once
    # per certificate, and certs/ may hold thousands of clients' (issue 16)
    _by_name: dict[str, CertFile] = field(default_factory=dict, init=False, repr=False, compare=False)

    def get(self, name: str) -> CertFile | None:
        if len(self._by_name) != len(self.certs):
            self._by_name = {c.name: c for c in reversed(self.certs)}  # the first of a name, as before
        return self._by_name.get(name)

    def by_usage(self, usage: Usage) -> list[CertFile]:
        return [c for c in self.certs if c.usage is usage]

    @property
    def fatal(self) -> str | None:
        return next((b.reason for b in self.bad_names if b.fatal), None)


def parse_bool(value: str) -> bool:
    """Go's strconv.ParseBool: exactly these spellings, anything else is an error."""
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(value)


def classify(filename: str) -> tuple[_Pattern, str] | BadName:
    """CertInfoFromFilename: the usage and name of a `.crt` file, or why the loader skips it."""
    parts = filename.split(".")
    if len(parts) < 2:
        return BadName(filename, f"not enough parts found in {filename!r}")
    pattern = _PATTERNS.get(parts[0])
    if pattern is None:
        return BadName(filename, f"unknown prefix {parts[0]!r}")
    if not pattern.named:
        if len(parts) != 2:
            return BadName(filename, f"{pattern.what} filename should match {pattern.form}")
        return pattern, ""
    name = ".".join(parts[1:-1])
    if not name:
        return BadName(filename, f"{pattern.what} filename should match {pattern.form}")
    if pattern.usage in (Usage.TENANT, Usage.TENANT_SIGNING) and not _is_uint64(name):
        return BadName(filename, f"invalid tenant id {name}", fatal=True)
    return pattern, name


def go_mode(mode: int) -> str:
    """A permission mode as Go's os.FileMode prints it for a regular file: 0o644 -> -rw-r--r--."""
    return "-" + "".join(c if mode & (1 << (8 - i)) else "-" for i, c in enumerate("rwxrwxrwx"))


def max_key_mode(st: os.stat_result, process_gid: int) -> int:
    """pkg/security/permission_check.go: 0740 for a key owned by root and the process's group, else 0700."""
    if st.st_uid == 0 and st.st_gid == process_gid:
        return names.KEY_MODE_MAX_ROOT
    return names.KEY_MODE_MAX


def read(
    path: Path, env: Mapping[str, str] | None = None, process_gid: int | None = None, keys: bool = True
) -> CertsDir:
    """Read `path` as CockroachDB would. A missing directory is a usage error here (CockroachDB would
    quietly load nothing and fail later with `problem with CA certificate: not found`). Without `keys`
    only the certificates are read (`check` of 10,000 certs directories needs no key: issue 16)."""
    env = os.environ if env is None else env
    gid = os.getgid() if process_gid is None else process_gid
    if not path.exists():
        raise UserError(f"{path}: no such directory")
    if not path.is_dir():
        raise UserError(f"{path}: not a directory")
    skip, env_error = False, None
    if SKIP_PERMISSION_ENV in env:
        try:
            skip = parse_bool(env[SKIP_PERMISSION_ENV])
        except ValueError:
            env_error = env[SKIP_PERMISSION_ENV]
    try:
        entries = sorted(path.iterdir(), key=lambda p: p.name)
    except OSError as e:
        raise UserError(f"{path}: cannot list the directory: {e.strerror}") from None
    found = CertsDir(path, [], [], [], [], skip, env_error)
    for entry in entries:
        if entry.is_dir():
            found.subdirs.append(entry.name)
            continue
        if not entry.name.endswith(names.CERT_SUFFIX):
            found.other_files.append(entry.name)
            continue
        kind = classify(entry.name)
        if isinstance(kind, BadName):
            found.bad_names.append(kind)
            continue
        pattern, suffix = kind
        cert = CertFile(entry.name, pattern.usage, suffix)
        if not pattern.usage.is_ca:
            cert.key_name = names.key_for(entry.name)
        _load_cert(entry, cert)
        if cert.error is None and not pattern.usage.is_ca and keys:
            _find_key(path, cert, skip, gid)
        found.certs.append(cert)
    found.certs.sort(key=lambda c: (USAGE_ORDER.index(c.usage), c.name))
    return found


def read_limited(path: Path) -> bytes:
    """The start of a file (never a FIFO or a device: files.py)."""
    return read_regular(path)


_PEM = re.compile(rb"-----BEGIN ([^\r\n-]*)-----\r?\n(.*?)-----END \1-----", re.DOTALL)


@dataclass(frozen=True)
class PemBlock:
    kind: str  # CERTIFICATE, PRIVATE KEY, RSA PRIVATE KEY, ...
    der: bytes
    text: bytes  # the block as written, BEGIN and END lines included

    @property
    def is_private_key(self) -> bool:
        return self.kind.endswith("PRIVATE KEY")


def pem_blocks(data: bytes) -> list[PemBlock]:
    """Each PEM block in `data`; text around them is skipped, as Go's pem.Decode skips it."""
    blocks = []
    for m in _PEM.finditer(data):
        body = b"".join(line for line in m.group(2).splitlines() if b":" not in line)  # no headers
        try:
            der = base64.b64decode(body, validate=False)
        except (binascii.Error, ValueError):
            der = b""
        blocks.append(PemBlock(m.group(1).decode("ascii", "replace"), der, m.group(0)))
    return blocks


def _load_cert(path: Path, cert: CertFile) -> None:
    """parseCertificate: every PEM block must be a CERTIFICATE, at least one, each must parse."""
    try:
        data = read_limited(path)
    except OSError as e:
        cert.error, cert.error_kind = f"could not read certificate file {path}: {e.strerror}", "cert"
        return
    if not data:
        cert.error, cert.error_kind = f"empty certificate file: {cert.name}", "cert"
        return
    parsed: list[x509.Certificate] = []
    for i, block in enumerate(pem_blocks(data)):
        if block.kind != "CERTIFICATE":
            cert.error, cert.error_kind = f"block #{i} is of type {block.kind}, not CERTIFICATE", "cert"
            return
        try:
            parsed.append(parse_der(block.der))
        except ValueError as e:
            cert.error, cert.error_kind = f"x509: cannot parse certificate #{i}: {e}", "cert"
            return
    if not parsed:
        cert.error, cert.error_kind = f"no certificates found in {cert.name}", "cert"
        return
    cert.certs = parsed


def _find_key(folder: Path, cert: CertFile, skip_permissions: bool, gid: int) -> None:
    """findKey: stat (following symlinks), regular file, permissions, read."""
    key_path = folder / names.key_for(cert.name)
    try:
        st = key_path.stat()
    except OSError as e:
        cert.error = f"could not stat key file {key_path}: {e.strerror}"
        cert.error_kind = "key-missing"
        return
    if not stat.S_ISREG(st.st_mode):
        cert.error, cert.error_kind = f"key file {key_path} is not a regular file", "key-not-regular"
        return
    mode = stat.S_IMODE(st.st_mode) & 0o777
    allowed = max_key_mode(st, gid)
    cert.key_mode, cert.key_max = mode, allowed
    if not skip_permissions and mode & ~allowed:
        cert.error = f"key file {key_path} has permissions {go_mode(mode)}, exceeds {go_mode(allowed)}"
        cert.error_kind = "key-permissions"
        return
    try:
        cert.key = load_key(key_path)
    except OSError as e:
        cert.error, cert.error_kind = f"could not read key file {key_path}: {e.strerror}", "key-unreadable"
    except (ValueError, TypeError) as e:
        # The loader only reads the bytes; tls.X509KeyPair fails on them when the certificate is used.
        cert.error = f"tls: failed to parse private key {key_path}: {e.__class__.__name__}"
        cert.error_kind = "key-unreadable"


def _is_uint64(text: str) -> bool:
    # strconv.ParseUint(text, 10, 64)
    return text.isascii() and text.isdigit() and int(text) < 1 << 64
