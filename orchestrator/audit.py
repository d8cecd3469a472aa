"""`crdb-certs audit`: a certs directory checked against CockroachDB's own rules, whoever made it.

The directory is first read as CockroachDB reads it (certsdir.py); every finding then says how bad it is
(error: CockroachDB refuses it or a connection will fail; warning: works today but is a risk or a date to
watch; info: worth knowing), which file, and a one-line fix. Reads only; never changes a file.

The output of `--format json` is described by audit.schema.json (shipped in the package).
"""

from __future__ import annotations

import fnmatch
import json
import pwd
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import load_der_private_key
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from orchestrator import certsdir, crls, names, validate
from orchestrator.certcheck import (
    ekus_of,
    is_ca,
    ocsp_urls_of,
    parse_key,
    public_bytes,
    sans_of,
    signed_by,
    subject_of,
    unrooted,
)
from orchestrator.certsdir import CertFile, CertsDir, Usage
from orchestrator.errors import ExitStatus, SpecError, UserError, printable
from orchestrator.files import NotRegular

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")
SCHEMA_VERSION = 1
EXPIRY_WARNING = timedelta(days=30)
# The docs' recipe signs leaves a few seconds after making a CA with the same -days: not worth a warning.
OUTLIVE_TOLERANCE = timedelta(days=1)
MIN_RSA_BITS = 2048
MIN_EC_BITS = 256
_WEAK_HASHES = (hashes.SHA1, hashes.MD5)
_MAX_CHAIN = 8
_ANY_EKU = ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE.dotted_string
_DAY_FORMAT = "%Y-%m-%d"

# Every finding code, with what it means: the JSON schema's enum is this list (a test keeps them equal).
CODES: dict[str, str] = {
    "name-ignored": "a .crt file CockroachDB skips: unknown prefix or malformed name",
    "name-tenant-id": "a tenant certificate whose id is not a number: the whole load fails",
    "name-user-case": "client.<user>.crt whose user is not normalized: it can never be used",
    "name-user-invalid": "client.<user>.crt whose user is not a valid CockroachDB user name",
    "file-ignored": "a file or folder CockroachDB ignores",
    "file-not-regular": "a FIFO, socket or device: whatever reads the directory may block on it",
    "cert-unreadable": "a certificate file CockroachDB cannot parse",
    "ca-missing": "no ca.crt",
    "key-missing": "a certificate without its key file",
    "key-not-regular": "a key that is not a regular file",
    "key-permissions": "a key file more open than CockroachDB allows",
    "key-permissions-skipped": "a key more open than allowed, accepted only because the check is off",
    "key-check-env": "COCKROACH_SKIP_KEY_PERMISSION_CHECK is set",
    "key-unreadable": "a key file that cannot be read or parsed",
    "key-mismatch": "a key that is not the certificate's key",
    "ca-key": "a CA private key in the certs directory",
    "key-orphan": "a private key no certificate here uses",
    "chain": "a certificate not signed by the CA CockroachDB verifies it with",
    "ui-external": "ui.crt not signed by ca.crt (and no ca-ui.crt)",
    "layout-client-node": "ca-client.crt without client.node.crt",
    "node-principal": "node.crt without the principal node",
    "client-principal": "a client certificate that does not name its file's user",
    "client-extra-principal": "a client certificate that also names other users",
    "eku": "extended key usage missing what the role needs",
    "san-missing": "a server certificate without DNS/IP subject alternative names",
    "san-wildcard-single-label": "a wildcard followed by one label (*.cockroachdb): OpenSSL-based clients"
    " refuse it",
    "ca-constraints": "a CA certificate that is not allowed to sign",
    "ca-no-root": "a CA file whose chain does not end in a self-signed root (OpenSSL/libpq refuse it)",
    "leaf-is-ca": "a node, UI or client certificate that is a CA",
    "outlives-ca": "a certificate that expires after its CA",
    "expired": "a certificate past its end date",
    "not-yet-valid": "a certificate before its start date",
    "expires-soon": "a certificate that expires within 30 days",
    "weak-key": "an RSA key under 2048 bits (or another weak key)",
    "weak-signature": "a SHA-1 or MD5 signature",
    "serial-reused": "two different certificates with the same issuer and serial number",
    "dir-permissions": "a certs directory others can write in: they can swap its certificates and keys",
    "cert-permissions": "a certificate file others can write: they can swap it (and the CA it trusts)",
    "cert-owner": "a certificate file owned by another user than the directory's owner (or root)",
    "revoked": "a certificate revoked in the folder's CRL (crl/*.crl, or --crl)",
    "ocsp-url-differs": "certificates of one directory that name different OCSP responders (or none)",
}


@dataclass(frozen=True)
class Finding:
    severity: Severity
    code: str
    file: str | None  # a name in the directory; None for the directory as a whole
    message: str
    fix: str

    def as_dict(self) -> dict[str, str | None]:
        return {
            "severity": self.severity,
            "code": self.code,
            "file": self.file,
            "message": self.message,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class Report:
    directory: Path
    findings: tuple[Finding, ...]
    key_permission_check: bool

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def status(self) -> ExitStatus:
        return ExitStatus.FINDINGS if self.errors else ExitStatus.OK

    def as_json(self) -> dict[str, Any]:
        return {
            "version": SCHEMA_VERSION,
            "directory": str(self.directory),
            "ok": not self.errors,
            "key_permission_check": "enforced" if self.key_permission_check else "skipped",
            "summary": {s: self.count(s) for s in SEVERITIES},
            "findings": [f.as_dict() for f in self.findings],
        }

    def summary(self) -> str:
        e, w, i = (self.count(s) for s in SEVERITIES)
        return f"{self.directory}: {_n(e, 'error')}, {_n(w, 'warning')}, {_n(i, 'note')}"

    def text(self, severities: Iterable[Severity] = SEVERITIES) -> str:
        shown = set(severities)
        lines = [self.summary()]
        for f in self.findings:
            if f.severity in shown:
                lines.append(f"{f.severity:<8} {f.file or '.'}: {f.message}")
                lines.append(f"{'':<8} fix: {f.fix}")
        return "\n".join(lines)


class AuditFailed(UserError):
    """`issue` made a certs directory that the audit finds errors in."""

    status = ExitStatus.FINDINGS


def schema() -> dict[str, Any]:
    """The JSON schema of `audit --format json` (orchestrator/audit.schema.json)."""
    text = resources.files("orchestrator").joinpath("audit.schema.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def parse_principal_map(text: str | None) -> dict[str, str]:
    """--cert-principal-map as CockroachDB reads it: `a:b,c:d`, each split on its last colon."""
    mapping: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item:
            continue
        source, sep, target = item.rpartition(":")
        if not sep or not source or not target:
            raise UserError(
                f"--cert-principal-map: invalid <cert-principal>:<db-principal> mapping: {item!r}"
            )
        mapping[source] = target
    return mapping


def principals(leaf: x509.Certificate, principal_map: Mapping[str, str]) -> list[str]:
    """The principals CockroachDB reads from a certificate: CN (the last one, as Go reads it) then every
    DNS SAN, each through --cert-principal-map."""
    cns = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    found = [str(cns[-1].value)] if cns else []
    found += sans_of(leaf)[0]
    return [principal_map.get(p, p) for p in found]


def audit(
    directory: Path,
    env: Mapping[str, str] | None = None,
    now: datetime | None = None,
    principal_map: Mapping[str, str] | None = None,
    process_gid: int | None = None,
    crl: Path | None = None,
) -> Report:
    """Every finding for the certs directory `directory` (UserError when it is not a directory), judged
    against the folder's CRLs (crls.find: `crl`, or the output folder's crl/)."""
    found = certsdir.read(directory, env, process_gid)
    check = _Audit(found, now or datetime.now(UTC), dict(principal_map or {}), crls.find(directory, crl))
    check.run()
    order = {s: i for i, s in enumerate(SEVERITIES)}
    findings = sorted(check.findings, key=lambda f: (order[f.severity], f.file or "", f.code))
    return Report(directory, tuple(findings), not found.skip_permission_check)


@dataclass
class _Audit:
    dir: CertsDir
    now: datetime
    principal_map: dict[str, str]
    crls: list[crls.CRL] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def add(self, severity: Severity, code: str, file: str | None, message: str, fix: str) -> None:
        assert code in CODES, code
        shown = None if file is None else printable(file)  # a name that is not UTF-8 is still reported
        self.findings.append(Finding(severity, code, shown, printable(message), printable(fix)))

    def path(self, name: str) -> str:
        return str(self.dir.path / name)

    # ---------------------------------------------------------------------------------------- driver

    def run(self) -> None:
        self.environment()
        self.file_names()
        self.ca_files()
        usable = [c for c in self.dir.certs if self.name_usable(c)]
        for cert in usable:
            self.loader_error(cert)
            self.key_matches(cert)
        for cert in usable:
            if cert.leaf is not None:
                self.content(cert)
        self.layout()
        self.revocation()
        self.serials()
        self.other_files()
        self.permissions()

    # ------------------------------------------------------------------------------------ environment

    def environment(self) -> None:
        var = certsdir.SKIP_PERMISSION_ENV
        if self.dir.env_error is not None:
            self.add(
                "error",
                "key-check-env",
                None,
                f"{var}={self.dir.env_error!r} is not a Go boolean: current CockroachDB versions refuse to"
                " start with it (older ones ignore it and check key permissions)",
                f"set {var} to true or false, or unset it",
            )
        elif self.dir.skip_permission_check:
            self.add(
                "info",
                "key-check-env",
                None,
                f"{var} is true here: CockroachDB started with this environment does not check key"
                " permissions (keys that are too open are reported as warnings)",
                f"unset {var} unless the keys' permissions are managed elsewhere",
            )

    # ------------------------------------------------------------------------------------- file names

    def file_names(self) -> None:
        for bad in self.dir.bad_names:
            if bad.fatal:
                self.add(
                    "error",
                    "name-tenant-id",
                    bad.name,
                    f"{bad.reason}: CockroachDB refuses to load the whole certs directory",
                    f"rename it to a numeric tenant id, or move {bad.name} out of the directory",
                )
            else:
                self.add(
                    "warning",
                    "name-ignored",
                    bad.name,
                    f"CockroachDB ignores it (bad filename: {bad.reason})",
                    "rename it to ca.crt, ca-client.crt, ca-ui.crt, node.crt, ui.crt or client.<user>.crt,"
                    " or move it out of the directory",
                )
        for sub in self.dir.subdirs:
            self.add(
                "info",
                "file-ignored",
                sub,
                "a sub-directory: CockroachDB does not look into it",
                "move it out of the certs directory if it is not needed there",
            )

    def name_usable(self, cert: CertFile) -> bool:
        """A client.<user>.crt whose user CockroachDB can look up; reports it when it cannot."""
        if cert.usage is not Usage.CLIENT:
            return True
        try:
            normalized = validate.user("user", cert.suffix)
        except SpecError as e:
            if cert.suffix.lower() != cert.suffix:
                return self.not_normalized(cert, cert.suffix.lower())
            self.add(
                "warning",
                "name-user-invalid",
                cert.name,
                f"user {cert.suffix!r} {e.reason}: it works only with a server-side identity map",
                "use a valid user name (lower-case letters, digits, _ first; then also - and .)",
            )
            return True
        if normalized != cert.suffix:
            return self.not_normalized(cert, normalized)
        return True

    def not_normalized(self, cert: CertFile, normalized: str) -> bool:
        self.add(
            "error",
            "name-user-case",
            cert.name,
            f"registers user {cert.suffix!r}, which never matches: CockroachDB looks up the normalized"
            f" name {normalized!r}",
            f"rename it (and its key) to {names.client_cert(normalized)} / {names.client_key(normalized)}",
        )
        return False

    # ---------------------------------------------------------------------------------- CA and loader

    def ca_files(self) -> None:
        if self.dir.get(names.CA_CERT) is None:
            self.add(
                "error",
                "ca-missing",
                names.CA_CERT,
                "no ca.crt: nodes cannot start and clients cannot verify a server"
                " (problem with CA certificate: not found)",
                "copy the cluster's CA certificate into the directory as ca.crt",
            )

    def loader_error(self, cert: CertFile) -> None:
        if cert.error is None:
            if (
                self.dir.skip_permission_check
                and cert.key_mode is not None
                and cert.key_max is not None
                and cert.key_mode & ~cert.key_max
            ):
                self.add(
                    "warning",
                    "key-permissions-skipped",
                    cert.key_name,
                    f"has permissions {certsdir.go_mode(cert.key_mode)}, exceeds"
                    f" {certsdir.go_mode(cert.key_max)}: accepted only because"
                    f" {certsdir.SKIP_PERMISSION_ENV} is true",
                    f"chmod 600 {self.path(cert.key_name or '')}",
                )
            return
        key, kind = cert.key_name, cert.error_kind
        if kind == "cert":
            self.add(
                "error",
                "cert-unreadable",
                cert.name,
                cert.error,
                f"replace {cert.name} with the PEM certificate(s) it should hold",
            )
        elif kind == "key-missing":
            self.add(
                "error",
                "key-missing",
                key,
                f"{cert.name} has no key: {cert.error}",
                f"put {cert.name}'s private key beside it as {key}, or remove {cert.name}",
            )
        elif kind == "key-not-regular":
            self.add(
                "error",
                "key-not-regular",
                key,
                cert.error,
                f"replace {key} with the key itself (a regular file or a symlink to one)",
            )
        elif kind == "key-permissions":
            self.add("error", "key-permissions", key, cert.error, f"chmod 600 {self.path(key or '')}")
        else:
            self.add(
                "error",
                "key-unreadable",
                key,
                cert.error,
                f"replace {key} with {cert.name}'s unencrypted PEM private key, readable by CockroachDB",
            )

    def key_matches(self, cert: CertFile) -> None:
        if cert.key is None or cert.leaf is None:
            return
        if public_bytes(cert.key) != public_bytes(cert.leaf):
            self.add(
                "error",
                "key-mismatch",
                cert.key_name,
                f"is not the key of {cert.name} (tls: private key does not match public key)",
                f"put {cert.name}'s own key in {cert.key_name}, or reissue {cert.name} for this key",
            )

    # ------------------------------------------------------------------------------------------ content

    def content(self, cert: CertFile) -> None:
        if cert.usage.is_ca:
            for i, one in enumerate(cert.certs):
                self.validity(cert.name, one, bundled=i > 0)
                self.strength(cert.name, one)
                self.ca_constraints(cert.name, one, i)
            self.rooted(cert)
            return
        leaf = cert.leaf
        assert leaf is not None
        self.validity(cert.name, leaf, bundled=False)
        self.strength(cert.name, leaf)
        if is_ca(leaf):
            self.add(
                "error",
                "leaf-is-ca",
                cert.name,
                "is a CA certificate (basicConstraints CA:TRUE): whoever has its key may be able to"
                " issue certificates",
                f"reissue {cert.name} with basicConstraints = critical,CA:FALSE",
            )
        self.eku(cert, leaf)
        if cert.usage in (Usage.NODE, Usage.UI):
            self.sans(cert, leaf)
        if cert.usage is Usage.NODE and self.dir.get(names.client_cert(names.NODE_USER)) is None:
            self.node_identity(cert, leaf)
        if cert.usage is Usage.CLIENT:
            self.client_identity(cert, leaf)
        self.chain(cert)

    def validity(self, name: str, cert: x509.Certificate, bundled: bool) -> None:
        start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
        which = f"certificate #{_index_of(cert, self.dir, name)} in {name}" if bundled else name
        if self.now < start:
            self.add(
                "error",
                "not-yet-valid",
                name,
                f"{which} is not valid before {_when(start)}",
                "check this machine's clock, or reissue the certificate",
            )
        elif self.now > end:
            self.add(
                "warning" if bundled else "error",
                "expired",
                name,
                f"{which} expired on {_when(end)}",
                "remove the expired CA from the bundle" if bundled else f"reissue {name}",
            )
        elif end - self.now < EXPIRY_WARNING:
            days = (end - self.now).days
            self.add(
                "warning",
                "expires-soon",
                name,
                f"{which} expires on {_when(end)} (in {_n(days, 'day')})",
                f"renew {name} before {_when(end)}",
            )

    def strength(self, name: str, cert: x509.Certificate) -> None:
        try:
            key = cert.public_key()
        except (ValueError, UnsupportedAlgorithm):
            return
        weak = None
        if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
            weak = f"an RSA key of {key.key_size} bits (at least {MIN_RSA_BITS} needed)"
        elif isinstance(key, dsa.DSAPublicKey):
            weak = "a DSA key (Go's TLS does not accept DSA)"
        elif isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size < MIN_EC_BITS:
            weak = f"an EC key on {key.curve.name}"
        if weak:
            self.add(
                "error", "weak-key", name, f"has {weak}", f"reissue {name} with a 2048-bit (or larger) key"
            )
        if cert.issuer == cert.subject:
            return  # a root's own signature is not checked by anyone
        algorithm = _weak_signature(cert)
        if algorithm:
            self.add(
                "error",
                "weak-signature",
                name,
                f"is signed with {algorithm}: Go (and so CockroachDB) rejects such signatures",
                f"reissue {name} with SHA-256 (openssl: default_md = sha256)",
            )

    def ca_constraints(self, name: str, cert: x509.Certificate, index: int) -> None:
        which = f"certificate #{index} in {name}" if index else name
        if not is_ca(cert):
            self.add(
                "error",
                "ca-constraints",
                name,
                f"{which} is not a CA (basicConstraints CA:TRUE missing): nothing verifies against it",
                "reissue the CA certificate with basicConstraints = critical,CA:true",
            )
            return
        try:
            usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            return
        if not usage.key_cert_sign:
            self.add(
                "error",
                "ca-constraints",
                name,
                f"{which} has keyUsage without keyCertSign: it may not sign certificates",
                "reissue the CA certificate with keyUsage including keyCertSign",
            )

    def rooted(self, cert: CertFile) -> None:
        """An intermediate CA alone in ca.crt: Go (CockroachDB) trusts it, but OpenSSL and libpq clients
        given it as sslrootcert look for its issuer there and fail."""
        missing = unrooted(cert.certs)
        if not missing:
            return
        cn = ",".join(f"{k}={v}" for k, v in subject_of(cert.certs[missing[0]]))
        self.add(
            "error",
            "ca-no-root",
            cert.name,
            f"holds an intermediate CA ({cn}) without its issuer, up to a self-signed root: clients using"
            f" OpenSSL or libpq (sslrootcert={cert.name}) refuse it (unable to get issuer certificate),"
            " though Go accepts it",
            f"append its issuer's certificate to {cert.name}, and so on up to the self-signed root"
            " (the intermediate first, the root last)",
        )

    def eku(self, cert: CertFile, leaf: x509.Certificate) -> None:
        ekus = ekus_of(leaf)
        if not ekus or _ANY_EKU in ekus:
            return  # no EKU extension: Go allows any use
        needed = {
            Usage.NODE: ["serverAuth"],
            Usage.UI: ["serverAuth"],
            Usage.CLIENT: ["clientAuth"],
            Usage.TENANT: ["clientAuth"],
        }.get(cert.usage, [])
        why = ""
        # Without client.node.crt, node.crt is also what the node presents as a client; with ca-client.crt
        # that fails anyway (layout-client-node says so and how to fix it).
        if (
            cert.usage is Usage.NODE
            and self.dir.get(names.client_cert(names.NODE_USER)) is None
            and self.dir.get(names.CLIENT_CA_CERT) is None
        ):
            needed = ["serverAuth", "clientAuth"]
            why = " (without client.node.crt it is also the node's client certificate)"
        missing = [e for e in needed if e not in ekus]
        if missing:
            self.add(
                "error",
                "eku",
                cert.name,
                f"extended key usage {','.join(ekus)} lacks {','.join(missing)}{why}",
                f"reissue {cert.name} with extendedKeyUsage = {','.join(needed)}",
            )

    def sans(self, cert: CertFile, leaf: x509.Certificate) -> None:
        dns, ips = sans_of(leaf)
        if not dns and not ips:
            self.add(
                "error",
                "san-missing",
                cert.name,
                "has no DNS or IP subject alternative names: clients check host names against SANs only",
                f"reissue {cert.name} with subjectAltName listing every host name and IP clients use",
            )
        # Measured: Go's TLS (CockroachDB) and libpq match x.cockroachdb against *.cockroachdb; OpenSSL's
        # X509_check_host (openssl verify -verify_hostname, Python ssl, curl) wants two labels after the *.
        narrow = [d for d in dns if d.startswith("*.") and d.count(".") == 1]
        if narrow:
            example = narrow[0].removeprefix("*.")
            wider = max((d for d in dns if d.startswith(f"*.{example}.")), key=len, default=None)
            fix = (
                f"have OpenSSL-based clients connect as <pod>.{wider[2:]}, which {wider} here covers"
                if wider
                else f"have OpenSSL-based clients connect by a fully qualified name, e.g."
                f" <pod>.{example}.<namespace>.svc.cluster.local, and list *.{example}.<namespace>.svc."
                "cluster.local as a SAN too ([kubernetes] does)"
            )
            self.add(
                "info",
                "san-wildcard-single-label",
                cert.name,
                f"{', '.join(narrow)}: Go's TLS (CockroachDB, cockroach sql) and libpq accept it for"
                f" <pod>.{example}, but OpenSSL's host check (Python ssl, curl, openssl verify) refuses a"
                " wildcard followed by a single label",
                fix,
            )

    def principals(self, leaf: x509.Certificate) -> list[str]:
        return principals(leaf, self.principal_map)

    def node_identity(self, cert: CertFile, leaf: x509.Certificate) -> None:
        found = self.principals(leaf)
        if names.NODE_USER in found or "root" in found:
            return
        dns = sans_of(leaf)[0]
        source = next((d for d in dns if "." in d), dns[0] if dns else "<node-domain>")
        self.add(
            "info",
            "node-principal",
            cert.name,
            f"principals {found} do not include 'node': nodes need --cert-principal-map to accept each"
            " other (and v20.1-v24.1 refuse to start without it)",
            f"start every node with --cert-principal-map={source}:node, or reissue {cert.name} with CN=node",
        )

    def client_identity(self, cert: CertFile, leaf: x509.Certificate) -> None:
        user, found = cert.suffix, self.principals(leaf)
        if user not in found:
            self.add(
                "error",
                "client-principal",
                cert.name,
                f"principals {found} do not include {user!r}: it cannot log in as {user}"
                f" (client certificate has principals {found}, expected {user!r})",
                f"reissue {cert.name} with CN={user}, or name the file after the user it is for",
            )
            return
        extra = sorted({p for p in found if p != user})
        if extra:
            self.add(
                "warning",
                "client-extra-principal",
                cert.name,
                f"also carries principals {extra}: it can log in as {' and '.join(extra)} too",
                f"reissue {cert.name} with CN={user} and no DNS SANs, unless that is intended",
            )

    # -------------------------------------------------------------------------------------------- chains

    def anchor_for(self, usage: Usage) -> list[str]:
        """The CA files CockroachDB verifies a certificate of `usage` with, most specific first."""
        if usage is Usage.NODE:
            return [names.CA_CERT]
        if usage is Usage.UI:
            return [names.UI_CA_CERT, names.CA_CERT]
        if usage is Usage.CLIENT:
            return [names.CLIENT_CA_CERT, names.CA_CERT]
        if usage is Usage.TENANT:
            return [names.TENANT_CA_CERT, names.CLIENT_CA_CERT, names.CA_CERT]
        return []

    def chain(self, cert: CertFile) -> None:
        candidates = self.anchor_for(cert.usage)
        anchor = next((self.dir.get(n) for n in candidates if self.dir.get(n) is not None), None)
        if anchor is None or not anchor.certs:
            return  # no CA to check against: reported as ca-missing or cert-unreadable
        if _weak_signature(cert.certs[0]):
            return  # Go refuses the signature itself: reported as weak-signature
        top = _chain_to(cert.certs, anchor.certs)
        if top is None:
            if cert.usage is Usage.UI and anchor.name == names.CA_CERT:
                self.add(
                    "warning",
                    "ui-external",
                    cert.name,
                    "is not signed by ca.crt: browsers and HTTP clients must trust its issuer themselves",
                    "fine for a public or organizational CA; else reissue ui.crt with ca.crt's key",
                )
                return
            self.add(
                "error",
                "chain",
                cert.name,
                f"is not signed by {anchor.name}, the CA CockroachDB verifies it with"
                " (x509: certificate signed by unknown authority)",
                f"reissue {cert.name} with {anchor.name}'s key, or add its issuer to {anchor.name}",
            )
            return
        leaf = cert.certs[0]
        if leaf.not_valid_after_utc - top.not_valid_after_utc > OUTLIVE_TOLERANCE:
            self.add(
                "warning",
                "outlives-ca",
                cert.name,
                f"expires {_when(leaf.not_valid_after_utc)}, after its CA in {anchor.name}"
                f" ({_when(top.not_valid_after_utc)}): it stops working when the CA expires",
                f"renew {anchor.name} before {_when(top.not_valid_after_utc)}, or reissue {cert.name}"
                " with fewer days",
            )

    def layout(self) -> None:
        client_ca = self.dir.get(names.CLIENT_CA_CERT)
        node = self.dir.get(names.NODE_CERT)
        client_node = names.client_cert(names.NODE_USER)
        if client_ca is not None and node is not None and self.dir.get(client_node) is None:
            self.add(
                "error",
                "layout-client-node",
                client_node,
                "missing while ca-client.crt is here: the node presents node.crt (signed by ca.crt) to"
                " other nodes, which verify client certificates with ca-client.crt only",
                "issue client.node.crt (CN=node, clientAuth) with ca-client.crt's key"
                " (cockroach cert create-client node)",
            )

    def revocation(self) -> None:
        """Certificates revoked in the folder's CRL, and OCSP responders that differ between certificates
        (CockroachDB asks each certificate's own: one wrong URL locks that certificate out in `strict`)."""
        cas = [c for f in self.dir.certs if f.usage.is_ca for c in f.certs]
        urls: dict[str, str] = {}
        for cert in self.dir.certs:
            leaf = cert.leaf
            if cert.usage.is_ca or leaf is None:
                continue
            urls[cert.name] = ",".join(ocsp_urls_of(leaf)) or "none"
            found = crls.revoked(leaf, self.crls, cas)
            if found is not None:
                self.add(
                    "error",
                    "revoked",
                    cert.name,
                    f"revoked {_when(found.when)} ({found.reason}) in {found.crl}: PostgreSQL with"
                    " ssl_crl_file and CockroachDB with security.ocsp.mode refuse it",
                    f"take it out of this directory (`crdb-certs revoke --serial {_hex(leaf.serial_number)}`"
                    " does); `crdb-certs issue` makes a new one",
                )
        if len(set(urls.values())) > 1:
            shown = "; ".join(f"{name}: {url}" for name, url in sorted(urls.items()))
            self.add(
                "warning",
                "ocsp-url-differs",
                None,
                f"the certificates name different OCSP responders ({shown}): with security.ocsp.mode ="
                " strict, one that is wrong or missing locks its certificate out",
                "set one [ocsp] url in the spec and `crdb-certs issue --reissue`",
            )

    def serials(self) -> None:
        # What must be unique is issuer + serial (RFC 5280; a CRL names a serial of its issuer): two CAs
        # (ca.crt and ca-client.crt, each counting from 01 in the docs' recipe) may well use the same one.
        seen: dict[tuple[bytes, int], list[tuple[str, x509.Certificate]]] = {}
        for cert in self.dir.certs:
            for one in cert.certs:
                seen.setdefault((one.issuer.public_bytes(), one.serial_number), []).append((cert.name, one))
        for (_, serial), holders in sorted(seen.items(), key=lambda item: item[0][1]):
            distinct = {c.fingerprint(hashes.SHA256()): (n, c) for n, c in holders}
            if len(distinct) < 2:
                continue
            files = sorted({n for n, _ in distinct.values()})
            self.add(
                "warning",
                "serial-reused",
                files[0],
                f"serial {_hex(serial)} is used by {len(distinct)} different certificates from the same"
                f" issuer ({', '.join(files)}): serials must identify a certificate (revocation, audit logs)",
                "issue with random serials (crdb-certs' secure profile, cockroach cert), not serial.txt = 01",
            )

    # ------------------------------------------------------------------------------------- permissions

    def permissions(self) -> None:
        """Who can change what a node trusts. CockroachDB checks only the keys' modes (cockroach-certs.md
        §5.3), but whoever can write ca.crt, or rename files in the directory, picks the CA the node trusts
        and can swap node.crt and node.key: as bad as a key others can read, so an error (`cockroach
        cert` makes the directory 0700 and certificates 0644). A certificate owned by another user (not
        root, who can do anything anyway) is a warning: that user can rewrite it, which is only as safe as
        that account; CockroachDB trusts a key's owner only, and root for its group (§5.3)."""
        try:
            folder = self.dir.path.stat()
        except OSError:
            return
        mode = stat.S_IMODE(folder.st_mode)
        if mode & 0o022:
            sticky = bool(folder.st_mode & stat.S_ISVTX)  # others may add files, not replace or remove
            self.add(
                "warning" if sticky else "error",
                "dir-permissions",
                None,
                f"the directory is writable by {_whom(mode)} (mode {mode:04o}): they can "
                + ("add a certificate where none is" if sticky else "replace ca.crt, node.crt or a key"),
                f"chmod 700 {self.dir.path} (and check that nothing in it was replaced)",
            )
        for cert in self.dir.certs:
            try:
                info = (self.dir.path / cert.name).stat()
            except OSError:
                continue
            bits = stat.S_IMODE(info.st_mode)
            what = "the CA this directory trusts" if cert.usage.is_ca else "this certificate"
            if bits & 0o022:
                self.add(
                    "error",
                    "cert-permissions",
                    cert.name,
                    f"writable by {_whom(bits)} (mode {bits:04o}): they can replace {what}",
                    f"chmod 644 {self.path(cert.name)} (and check that it is the certificate you issued)",
                )
            elif info.st_uid not in (folder.st_uid, 0):
                self.add(
                    "warning",
                    "cert-owner",
                    cert.name,
                    f"owned by {_user(info.st_uid)}, not by the directory's owner {_user(folder.st_uid)}:"
                    f" that user can replace {what}",
                    f"chown {_user(folder.st_uid)} {self.path(cert.name)}",
                )

    # -------------------------------------------------------------------------------------- private keys

    def other_files(self) -> None:
        """What the loader skips: a CA key anywhere (by name or by content) is an error, a private key no
        certificate uses a warning, anything else a note."""
        ca_public = {public_bytes(c) for f in self.dir.certs if f.usage.is_ca for c in f.certs}
        ca_public |= self._bad_name_ca_keys()
        leaf_keys = {c.key_name for c in self.dir.certs if c.key_name}
        for name in self.dir.other_files:
            try:
                keys, unreadable = _private_keys_in(self.dir.path / name)
            except NotRegular:
                self.add(
                    "warning",
                    "file-not-regular",
                    name,
                    "not a regular file (a FIFO, socket or device): a program that reads every file here"
                    " blocks on it or reads it forever",
                    f"move {name} out of the certs directory",
                )
                continue
            if fnmatch.fnmatch(name, names.CA_KEY_GLOB) or any(public_bytes(k) in ca_public for k in keys):
                self.add(
                    "error",
                    "ca-key",
                    name,
                    "is a CA's private key: whoever reads this directory can issue certificates for any"
                    " user or node",
                    f"move {name} to the CA machine (crdb-certs keeps it in {names.SAFE_DIR}/) and never"
                    " copy it to a node or client",
                )
            elif name in leaf_keys:
                continue  # the key of a certificate here: checked with it
            elif name.startswith("client.") and name.removesuffix(".pk8") in leaf_keys - {name}:
                # client.<user>.key.pk8: that key for Java (DER PKCS#8), which CockroachDB documents as
                # its own file (`cockroach cert create-client --also-generate-pkcs8-key`).
                self._pk8(name, name.removesuffix(".pk8"))
            elif keys or unreadable or name.endswith(names.KEY_SUFFIX):
                self.add(
                    "warning",
                    "key-orphan",
                    name,
                    "a private key that no certificate in this directory uses"
                    + (" (encrypted or unreadable)" if not keys else ""),
                    f"remove {name} from the certs directory, or put the certificate it belongs to beside it",
                )
            else:
                self.add(
                    "info",
                    "file-ignored",
                    name,
                    "CockroachDB ignores it (it reads only *.crt files and their keys)",
                    "keep CSRs, configs, openssl's <serial>.pem copies and CA databases out of the certs"
                    " directory",
                )

    def _pk8(self, name: str, key_name: str) -> None:
        """A .pk8 is the private key again: private like it (CockroachDB never reads it, so nothing else
        would say so), and the same key (a copy of an earlier key is not what its client should use)."""
        path = self.dir.path / name
        bits = stat.S_IMODE(path.stat().st_mode)
        if bits & 0o077:
            self.add(
                "error",
                "key-permissions",
                name,
                f"a private key open to its group or others (mode {bits:04o}): it is its owner's alone",
                f"chmod 600 {self.path(name)}",
            )
        try:
            held = load_der_private_key(certsdir.read_limited(path), password=None)
        except (OSError, ValueError, TypeError, UnsupportedAlgorithm):
            self.add("error", "key-unreadable", name, "not a DER PKCS#8 private key", f"remove {name}")
            return
        key = next((c.key for c in self.dir.certs if c.key_name == key_name and c.key is not None), None)
        if key is not None and public_bytes(held) != public_bytes(key):
            self.add(
                "error",
                "key-mismatch",
                name,
                f"holds another key than {key_name}: a copy of an earlier key",
                f"remove {name}; `crdb-certs issue` makes it again from {key_name} (pkcs8 = true)",
            )

    def _bad_name_ca_keys(self) -> set[bytes]:
        """Public keys of CA certificates in files the loader skips (ca.old.crt): CA keys all the same."""
        found: set[bytes] = set()
        for bad in self.dir.bad_names:
            try:
                data = certsdir.read_limited(self.dir.path / bad.name)
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


def _private_keys_in(path: Path) -> tuple[list[PrivateKeyTypes], bool]:
    """The private keys in a file, and whether it holds one that cannot be read (encrypted, damaged)."""
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


def _weak_signature(cert: x509.Certificate) -> str | None:
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return None
    return algorithm.name.upper() if isinstance(algorithm, _WEAK_HASHES) else None


def _chain_to(certs: list[x509.Certificate], anchors: list[x509.Certificate]) -> x509.Certificate | None:
    """The anchor that `certs[0]` chains to through the intermediates in `certs[1:]`, or None."""
    current = certs[0]
    for _ in range(_MAX_CHAIN):
        top = next((a for a in anchors if signed_by(current, a)), None)
        if top is not None:
            return top
        parent = next((c for c in certs[1:] if c is not current and signed_by(current, c)), None)
        if parent is None:
            return None
        current = parent
    return None


def _index_of(cert: x509.Certificate, found: CertsDir, name: str) -> int:
    holder = found.get(name)
    return holder.certs.index(cert) if holder else 0


def _whom(mode: int) -> str:
    return " and ".join(w for w, bit in (("its group", 0o020), ("others", 0o002)) if mode & bit)


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _hex(serial: int) -> str:
    """As openssl prints a serial: upper-case hex, an even number of digits."""
    text = f"{serial:X}"
    return text.rjust(len(text) + len(text) % 2, "0")


def _when(moment: datetime) -> str:
    return moment.strftime(_DAY_FORMAT)


def _n(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")
