"""Audit rules on private keys: what CockroachDB's loader refuses in a certificate and its key (an
unreadable certificate, a key missing, too open or not the certificate's), the environment variable that
turns the permission check off, and keys that do not belong in a certs directory (a CA's, an orphan)."""

from __future__ import annotations

import fnmatch
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import load_der_private_key

from orchestrator import certsdir, names
from orchestrator.auditing.findings import Check
from orchestrator.certcheck import is_ca, parse_key, public_bytes
from orchestrator.certsdir import CertFile
from orchestrator.files import NotRegular

CODES: dict[str, str] = {
    "cert-unreadable": "a certificate file CockroachDB cannot parse",
    "key-missing": "a certificate without its key file",
    "key-not-regular": "a key that is not a regular file",
    "key-permissions": "a key file more open than CockroachDB allows",
    "key-permissions-skipped": "a key more open than allowed, accepted only because the check is off",
    "key-check-env": "COCKROACH_SKIP_KEY_PERMISSION_CHECK is set",
    "key-unreadable": "a key file that cannot be read or parsed",
    "key-mismatch": "a key that is not the certificate's key",
    "ca-key": "a CA private key in the certs directory",
    "key-orphan": "a private key no certificate here uses",
}


def environment(check: Check) -> None:
    var = certsdir.SKIP_PERMISSION_ENV
    if check.dir.env_error is not None:
        check.add(
            "error",
            "key-check-env",
            None,
            f"{var}={check.dir.env_error!r} is not a Go boolean: current CockroachDB versions refuse to"
            " start with it (older ones ignore it and check key permissions)",
            f"set {var} to true or false, or unset it",
        )
    elif check.dir.skip_permission_check:
        check.add(
            "info",
            "key-check-env",
            None,
            f"{var} is true here: CockroachDB started with this environment does not check key"
            " permissions (keys that are too open are reported as warnings)",
            f"unset {var} unless the keys' permissions are managed elsewhere",
        )


def loaded(check: Check, cert: CertFile) -> None:
    """What the loader (certsdir.py) refused in `cert` or its key, or let through only because the
    permission check is off."""
    if cert.error is None:
        if (
            check.dir.skip_permission_check
            and cert.key_mode is not None
            and cert.key_max is not None
            and cert.key_mode & ~cert.key_max
        ):
            check.add(
                "warning",
                "key-permissions-skipped",
                cert.key_name,
                f"has permissions {certsdir.go_mode(cert.key_mode)}, exceeds"
                f" {certsdir.go_mode(cert.key_max)}: accepted only because"
                f" {certsdir.SKIP_PERMISSION_ENV} is true",
                f"chmod 600 {check.path(cert.key_name or '')}",
            )
        return
    key, kind = cert.key_name, cert.error_kind
    if kind == "cert":
        check.add(
            "error",
            "cert-unreadable",
            cert.name,
            cert.error,
            f"replace {cert.name} with the PEM certificate(s) it should hold",
        )
    elif kind == "key-missing":
        check.add(
            "error",
            "key-missing",
            key,
            f"{cert.name} has no key: {cert.error}",
            f"put {cert.name}'s private key beside it as {key}, or remove {cert.name}",
        )
    elif kind == "key-not-regular":
        check.add(
            "error",
            "key-not-regular",
            key,
            cert.error,
            f"replace {key} with the key itself (a regular file or a symlink to one)",
        )
    elif kind == "key-permissions":
        check.add("error", "key-permissions", key, cert.error, f"chmod 600 {check.path(key or '')}")
    else:
        check.add(
            "error",
            "key-unreadable",
            key,
            cert.error,
            f"replace {key} with {cert.name}'s unencrypted PEM private key, readable by CockroachDB",
        )


def matches(check: Check, cert: CertFile) -> None:
    if cert.key is None or cert.leaf is None:
        return
    if public_bytes(cert.key) != public_bytes(cert.leaf):
        check.add(
            "error",
            "key-mismatch",
            cert.key_name,
            f"is not the key of {cert.name} (tls: private key does not match public key)",
            f"put {cert.name}'s own key in {cert.key_name}, or reissue {cert.name} for this key",
        )


@dataclass(frozen=True)
class KnownKeys:
    """What a key found in a file the loader skips is compared with."""

    ca_public: set[bytes]  # public keys of every CA certificate here, under a usable name or not
    leaf_keys: set[str]  # names of the certificates' own key files


def known_keys(check: Check) -> KnownKeys:
    ca_public = {public_bytes(c) for f in check.dir.certs if f.usage.is_ca for c in f.certs}
    ca_public |= _bad_name_ca_keys(check)
    return KnownKeys(ca_public, {c.key_name for c in check.dir.certs if c.key_name})


def stray(check: Check, name: str, keys: list[PrivateKeyTypes], unreadable: bool, known: KnownKeys) -> bool:
    """A file the loader skips, as a key: a CA key (by name or by content) is an error, a private key no
    certificate uses a warning. False when `name` is not a key at all."""
    if fnmatch.fnmatch(name, names.CA_KEY_GLOB) or any(public_bytes(k) in known.ca_public for k in keys):
        check.add(
            "error",
            "ca-key",
            name,
            "is a CA's private key: whoever reads this directory can issue certificates for any user or node",
            f"move {name} to the CA machine (crdb-certs keeps it in {names.SAFE_DIR}/) and never"
            " copy it to a node or client",
        )
    elif name in known.leaf_keys:
        pass  # the key of a certificate here: checked with it
    elif name.startswith("client.") and name.removesuffix(".pk8") in known.leaf_keys - {name}:
        # client.<user>.key.pk8: that key for Java (DER PKCS#8), which CockroachDB documents as
        # its own file (`cockroach cert create-client --also-generate-pkcs8-key`).
        pk8(check, name, name.removesuffix(".pk8"))
    elif keys or unreadable or name.endswith(names.KEY_SUFFIX):
        check.add(
            "warning",
            "key-orphan",
            name,
            "a private key that no certificate in this directory uses"
            + (" (encrypted or unreadable)" if not keys else ""),
            f"remove {name} from the certs directory, or put the certificate it belongs to beside it",
        )
    else:
        return False
    return True


def pk8(check: Check, name: str, key_name: str) -> None:
    """A .pk8 is the private key again: private like it (CockroachDB never reads it, so nothing else
    would say so), and the same key (a copy of an earlier key is not what its client should use)."""
    path = check.dir.path / name
    bits = stat.S_IMODE(path.stat().st_mode)
    if bits & 0o077:
        check.add(
            "error",
            "key-permissions",
            name,
            f"a private key open to its group or others (mode {bits:04o}): it is its owner's alone",
            f"chmod 600 {check.path(name)}",
        )
    try:
        held = load_der_private_key(certsdir.read_limited(path), password=None)
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm):
        check.add("error", "key-unreadable", name, "not a DER PKCS#8 private key", f"remove {name}")
        return
    key = next((c.key for c in check.dir.certs if c.key_name == key_name and c.key is not None), None)
    if key is not None and public_bytes(held) != public_bytes(key):
        check.add(
            "error",
            "key-mismatch",
            name,
            f"holds another key than {key_name}: a copy of an earlier key",
            f"remove {name}; `crdb-certs issue` makes it again from {key_name} (pkcs8 = true)",
        )


def private_keys_in(path: Path) -> tuple[list[PrivateKeyTypes], bool]:
    """The private keys in a file, and whether it holds one that cannot be read (encrypted, damaged);
    NotRegular for a FIFO, socket or device."""
    try:
        data = certsdir.read_limited(path)
    except NotRegular:
        raise
    except OSError:
        return [], path.name.endswith(names.KEY_SUFFIX)
    keys: list[PrivateKeyTypes] = []
    unreadable = False
    for block in certsdir.pem_blocks(data):
        if not block.is_private_key:
            continue
        try:
            keys.append(parse_key(block.text))
        except (ValueError, TypeError, UnsupportedAlgorithm):
            unreadable = True
    return keys, unreadable


def _bad_name_ca_keys(check: Check) -> set[bytes]:
    """Public keys of CA certificates in files the loader skips (ca.old.crt): CA keys all the same."""
    found: set[bytes] = set()
    for bad in check.dir.bad_names:
        try:
            data = certsdir.read_limited(check.dir.path / bad.name)
        except OSError:
            continue
        for block in certsdir.pem_blocks(data):
            if block.kind != "CERTIFICATE":
                continue
            try:
                cert = x509.load_der_x509_certificate(block.der)
            except ValueError:
                continue
            if is_ca(cert):
                found.add(public_bytes(cert))
    return found
