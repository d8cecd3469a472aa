"""`crdb-certs probe`: what a running node serves, judged from the outside.

crdb-certs knows what every node should serve; this reads what it does serve. On the SQL port it speaks as
any PostgreSQL client does (an SSLRequest, then TLS: the path CockroachDB and PostgreSQL share; pgwire.py),
on the DB Console port (--http) plain TLS. The handshake verifies nothing (CERT_NONE), so a server nobody
would trust is still read and reported; the judging is done here, with `cryptography`, against the folder:
does the chain reach a CA of its CA file, is the host name among the SANs, is it in date, is it the
certificate the folder issued for that node (same serial; a node that never reloaded after `renew` or
`rotate-ca` serves the old one), which principal CockroachDB reads from it. With a user, a second
connection presents client.<user>.crt and sends a StartupMessage, and says what the server answered.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from cryptography import x509

from orchestrator import audit, duration, names, pgwire
from orchestrator.certcheck import key_kind_of, load_cert, load_certs, sans_of, signed_by
from orchestrator.errors import ExitStatus, SpecError, UserError
from orchestrator.spec import Spec

SQL_PORT = 26257
HTTP_PORT = 8080
DEFAULT_TIMEOUT = 5.0
SOON = timedelta(days=30)
SCHEMA_VERSION = 1
_MAX_CHAIN = 8
_MAX_THREADS = 16

# Every finding, with what it means (the JSON schema's enum; a test keeps them equal).
CODES: dict[str, str] = {
    "untrusted": "the served chain reaches no CA of the folder's CA file",
    "hostname": "the host name probed is not among the certificate's SANs",
    "expired": "the certificate is not valid now (expired, or not yet valid)",
    "expires-soon": "the certificate expires within the window (--within)",
    "stale": "the node serves another certificate than the one the folder issued for it",
    "client-refused": "the server refused the user's client certificate (--user)",
}


# ------------------------------------------------------------------------------------------ targets


@dataclass(frozen=True)
class Target:
    host: str
    port: int

    @property
    def ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        return _ip(self.host)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_target(text: str, default_port: int) -> Target:
    """HOST, HOST:PORT, [IPv6]:PORT, [IPv6] or a bare IPv6 address."""
    host, port = text, ""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")) or _ip(host) is None:
            raise SpecError("HOST", text, "is not [IPv6 address] or [IPv6 address]:PORT")
        port = rest[1:]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    elif text.count(":") > 1 and _ip(text) is None:
        raise SpecError("HOST", text, "is not HOST:PORT (write an IPv6 address as [::1]:26257)")
    if not host or any(c.isspace() or not c.isprintable() for c in host):
        raise SpecError("HOST", text, "has no host name, or one with white space or control characters")
    if not port:
        return Target(host, default_port)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise SpecError("HOST", text, "has a port that is not a number from 1 to 65535")
    return Target(host, int(port))


def address(host: str, port: int = SQL_PORT) -> str:
    """How a probe names a host: host:port, [IPv6]:port."""
    return str(Target(host, port))


# ------------------------------------------------------------------------------ what was issued


@dataclass(frozen=True)
class Issued:
    node: str  # the node's name in the spec ("" for a certs directory given as such)
    cert: Path  # the certificate the folder gave it to serve
    serial: int
    hosts: tuple[str, ...]  # the names it is reached by


@dataclass(frozen=True)
class Folder:
    """What a probe compares with: the CA file, the certificates issued to the nodes, and where the
    client certificates are. Empty: only the host name and the dates are judged."""

    ca_file: Path | None = None
    cas: tuple[x509.Certificate, ...] = ()
    clients: Path | None = None
    issued: tuple[Issued, ...] = ()


def from_output(spec: Spec, out: Path, http: bool) -> Folder:
    """An output folder: certs/ca.crt (ca-ui.crt for the DB Console of a ui-ca layout), and each node's
    node.crt (ui.crt with --http, when the spec has one) found by the node's hosts."""
    certs = out / names.CERTS_DIR
    served = names.UI_CERT if http and spec.ui is not None else names.NODE_CERT
    issued = [_issued(node.name, out / names.node_dir(node.name) / served, node.hosts) for node in spec.nodes]
    imported_ui = http and spec.ui is not None and spec.ui.issuer == "import"
    ca_file = None if imported_ui else _ca_file(certs, http)  # an imported one's CA is not here
    return _folder(ca_file, certs, tuple(i for i in issued if i is not None))


def from_certs_dir(certs: Path, http: bool) -> Folder:
    """A certs directory: its ca.crt, and its node.crt (ui.crt with --http) reached by its own SANs."""
    served = certs / (names.UI_CERT if http and (certs / names.UI_CERT).is_file() else names.NODE_CERT)
    issued = None
    if served.is_file():
        try:
            dns, ips = sans_of(load_cert(served))
        except (OSError, ValueError):
            dns, ips = [], []
        issued = _issued("", served, tuple(dns + ips))
    return _folder(_ca_file(certs, http), certs, (issued,) if issued else ())


def _ca_file(certs: Path, http: bool) -> Path:
    ui = certs / names.UI_CA_CERT
    return ui if http and ui.is_file() else certs / names.CA_CERT


def _folder(ca_file: Path | None, clients: Path, issued: tuple[Issued, ...]) -> Folder:
    cas: list[x509.Certificate] = []
    if ca_file is not None:
        try:
            cas = load_certs(ca_file)
        except OSError as e:
            reason = e.strerror or e.__class__.__name__
            raise UserError(f"{ca_file}: cannot be read ({reason}); `crdb-certs issue` makes it") from None
        except ValueError:
            raise UserError(f"{ca_file}: not a PEM certificate file") from None
    return Folder(ca_file, tuple(cas), clients, issued)


def _issued(node: str, cert: Path, hosts: tuple[str, ...]) -> Issued | None:
    try:
        return Issued(node, cert, load_cert(cert).serial_number, hosts)
    except (OSError, ValueError):
        return None  # not issued (yet): nothing to compare with


# --------------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Options:
    http: bool = False
    timeout: float = DEFAULT_TIMEOUT
    within: timedelta = SOON
    principal_map: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    database: str = "defaultdb"
    client: ssl.SSLContext | None = None  # with client.<user>.crt loaded (client_context)


def client_context(folder: Folder, user: str) -> ssl.SSLContext:
    """A TLS context presenting `user`'s client certificate (UserError when the folder has none)."""
    if folder.clients is None:
        raise UserError("--user: needs --out or --certs-dir (where client.<user>.crt is)")
    cert, key = folder.clients / names.client_cert(user), folder.clients / names.client_key(user)
    context = _context()
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        reason = getattr(e, "strerror", None) or getattr(e, "reason", None) or e.__class__.__name__
        raise SpecError("--user", user, f"has no usable {cert} and {key} ({reason})") from None
    return context


def _context() -> ssl.SSLContext:
    # Nothing verified in the handshake: the chain is judged afterwards, so an untrusted one is reported.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # CockroachDB's minimum
    return context


# ---------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Finding:
    code: str
    message: str


@dataclass
class Probe:
    """What one host served, and every way it differs from what should be."""

    target: Target
    http: bool
    unreachable: str | None = None
    chain: tuple[x509.Certificate, ...] = ()
    trust: str = ""
    trusted: bool | None = None
    hostname_ok: bool | None = None
    days_left: int | None = None
    node: Issued | None = None
    issued: bool | None = None
    about_issued: str = ""
    principals: tuple[str, ...] = ()
    user: str | None = None
    login: pgwire.Answer | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def status(self) -> ExitStatus:
        if self.unreachable is not None:
            return ExitStatus.USAGE
        return ExitStatus.FINDINGS if self.findings else ExitStatus.OK

    def lines(self) -> list[str]:
        if self.unreachable is not None:
            return [f"{self.target}: unreachable: {self.unreachable}"]
        leaf = self.chain[0]
        dns, ips = sans_of(leaf)
        after = leaf.not_valid_after_utc
        lines = [
            f"{self.target} ({'DB Console' if self.http else 'SQL'})",
            f"  subject     {_dn(leaf.subject)}",
            f"  SANs        {_sans(dns, ips)}",
            f"  serial      {_hex(leaf.serial_number)}",
            f"  issuer      {_dn(leaf.issuer)}",
            f"  valid       {_day(leaf.not_valid_before_utc)} to {_day(after)} ({self.days_left} days left)",
            f"  key         {key_kind_of(leaf)}",
        ]
        lines += [f"  served too  {_dn(c.subject)} (issuer {_dn(c.issuer)})" for c in self.chain[1:]]
        among = "among its SANs" if self.hostname_ok else "NOT among its SANs"
        lines += [
            f"  chain       {self.trust}",
            f"  host name   {self.target.host}: {among}",
            f"  issued      {self.about_issued}",
            f"  principals  {', '.join(self.principals) or '(none)'}",
        ]
        if self.login is not None:
            lines.append(f"  user {self.user}: {self.login.text}")
        lines += [f"{self.target}: {f.code}: {f.message}" for f in self.findings]
        return lines

    def as_json(self) -> dict[str, Any]:
        return {
            "target": str(self.target),
            "host": self.target.host,
            "port": self.target.port,
            "port_kind": "http" if self.http else "sql",
            "ok": self.status == ExitStatus.OK,
            "unreachable": self.unreachable,
            "chain": [_cert_json(c) for c in self.chain],
            "trusted": self.trusted,
            "trust": self.trust or None,
            "hostname_ok": self.hostname_ok,
            "days_left": self.days_left,
            "node": None if self.node is None else self.node.node or None,
            "issued_cert": None if self.node is None else str(self.node.cert),
            "issued_serial": None if self.node is None else _hex(self.node.serial),
            "issued": self.issued,
            "principals": list(self.principals),
            "login": None
            if self.login is None
            else {"user": self.user, "authenticated": self.login.authenticated, "answer": self.login.text},
            "findings": [{"code": f.code, "message": f.message} for f in self.findings],
        }


def status(probes: list[Probe]) -> ExitStatus:
    return max((p.status for p in probes), default=ExitStatus.OK)


def text(probes: list[Probe]) -> str:
    return "\n".join(line for p in probes for line in p.lines())


def as_json(probes: list[Probe]) -> dict[str, Any]:
    return {
        "version": SCHEMA_VERSION,
        "ok": status(probes) == ExitStatus.OK,
        "status": int(status(probes)),
        "probes": [p.as_json() for p in probes],
    }


def schema() -> dict[str, Any]:
    """The JSON schema of `probe --format json` (orchestrator/probe.schema.json)."""
    text = resources.files("orchestrator").joinpath("probe.schema.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


# -------------------------------------------------------------------------------------- probing


def probe_all(targets: list[Target], folder: Folder, options: Options) -> list[Probe]:
    """Every target at once (threads: each one mostly waits on its socket), in the order given."""
    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=min(_MAX_THREADS, len(targets))) as pool:
        return list(pool.map(lambda t: probe(t, folder, options), targets))


def probe(target: Target, folder: Folder, options: Options, now: datetime | None = None) -> Probe:
    try:
        chain = served_chain(target, options)
    except Unreachable as e:
        return Probe(target, options.http, unreachable=e.reason)
    found = judge(target, chain, folder, options, now or datetime.now(UTC))
    if options.user is not None and options.client is not None:
        found.user, found.login = options.user, login(target, options)
        if not found.login.authenticated:
            found.findings.append(Finding("client-refused", f"{options.user}: {found.login.text}"))
    return found


def judge(
    target: Target, chain: list[x509.Certificate], folder: Folder, options: Options, now: datetime
) -> Probe:
    """Everything that can be said about a served chain without talking to the server again."""
    leaf = chain[0]
    found = Probe(target, options.http, chain=tuple(chain))
    if folder.ca_file is None:
        found.trust = "not checked (no --out or --certs-dir)"
    else:
        anchor = _anchor(chain, folder.cas)
        found.trusted = anchor is not None
        if anchor is not None:
            found.trust = f"trusted: reaches {_dn(anchor.subject)} of {folder.ca_file}"
        else:
            found.trust = f"UNTRUSTED by {folder.ca_file}"
            found.findings.append(
                Finding(
                    "untrusted",
                    f"issued by {_dn(leaf.issuer)}, which is none of the {len(folder.cas)} CA(s) in"
                    f" {folder.ca_file}: nodes and clients that trust that file refuse it",
                )
            )
    dns, ips = sans_of(leaf)
    found.hostname_ok = reaches(target.host, dns, ips)
    if not found.hostname_ok:
        found.findings.append(Finding("hostname", f"{target.host} is not among its SANs ({_sans(dns, ips)})"))
    before, after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    found.days_left = duration.whole_days(after - now)
    if now > after:
        found.findings.append(Finding("expired", f"expired {_day(after)} ({-found.days_left} days ago)"))
    elif now < before:
        found.findings.append(Finding("expired", f"not valid before {_day(before)}"))
    elif after - now <= options.within:
        found.findings.append(
            Finding(
                "expires-soon",
                f"expires {_day(after)}, in {found.days_left} days (within {duration.show(options.within)})",
            )
        )
    found.node, found.issued = issued_for(target.host, leaf.serial_number, folder.issued)
    if found.node is None:
        found.about_issued = (
            "not checked (no --out or --certs-dir)"
            if folder.ca_file is None and not folder.issued
            else "not known: no node of the folder is reached by this name or was issued this serial"
        )
    else:
        whose = f"{found.node.node}'s " if found.node.node else ""
        found.about_issued = f"{'yes' if found.issued else 'NO'}: {whose}{found.node.cert}"
    if found.node is not None and not found.issued:
        found.findings.append(
            Finding(
                "stale",
                f"serves serial {_hex(leaf.serial_number)}, the folder issued {_hex(found.node.serial)}"
                f" ({found.node.cert}): the node has not loaded it (copy it there, then SIGHUP or restart"
                " the node)",
            )
        )
    found.principals = tuple(audit.principals(leaf, options.principal_map))
    return found


def issued_for(host: str, serial: int, issued: tuple[Issued, ...]) -> tuple[Issued | None, bool | None]:
    """The node a served certificate belongs to, and whether it is the one the folder issued: the node
    that was issued this serial, else the first node reached by `host` (which then serves another)."""
    if not issued:
        return None, None
    same = next((i for i in issued if i.serial == serial), None)
    if same is not None:
        return same, True
    named = next((i for i in issued if reaches(host, *_split(i.hosts))), None)
    return named, (False if named is not None else None)


def reaches(host: str, dns: list[str], ips: list[str]) -> bool:
    """Whether a certificate with these SANs is valid for `host`, as Go's crypto/tls decides it: an IP
    address against the IP SANs, a name against the DNS SANs (case-insensitive; `*.` stands for exactly
    one leftmost label). The CN is never looked at."""
    ip = _ip(host)
    if ip is not None:
        return any(_ip(x) == ip for x in ips)
    name = host.lower().rstrip(".")
    for pattern in (d.lower().rstrip(".") for d in dns):
        if pattern == name:
            return True
        if pattern.startswith("*.") and "." in name and name.split(".", 1)[1] == pattern[2:]:
            return True
    return False


def _anchor(chain: list[x509.Certificate], cas: tuple[x509.Certificate, ...]) -> x509.Certificate | None:
    """The CA of the file that the served chain reaches (from the leaf, through the intermediates the
    server sent), or None."""
    current = chain[0]
    for _ in range(_MAX_CHAIN):
        anchor = next((ca for ca in cas if signed_by(current, ca)), None)
        if anchor is not None:
            return anchor
        parent = next((c for c in chain[1:] if c is not current and signed_by(current, c)), None)
        if parent is None:
            return None
        current = parent
    return None


# ------------------------------------------------------------------------------------- the wire


class Unreachable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def served_chain(target: Target, options: Options) -> list[x509.Certificate]:
    """The certificates the server presents (leaf first). Unreachable when there is no TLS server."""
    deadline = time.monotonic() + options.timeout
    try:
        tls = _tls(target, options, _context(), deadline)
    except ssl.SSLError as e:
        raise Unreachable(_handshake_failed(e)) from None
    except TimeoutError:
        raise Unreachable(f"timeout: no TLS handshake within {options.timeout:g}s") from None
    except OSError as e:
        raise Unreachable(f"the connection failed during the TLS handshake ({_os_reason(e)})") from None
    with tls:
        return _chain_of(tls)


def login(target: Target, options: Options) -> pgwire.Answer:
    """Mutual TLS with the user's client certificate, a StartupMessage as that user, the server's answer."""
    assert options.user is not None and options.client is not None
    deadline = time.monotonic() + options.timeout
    try:
        with _tls(target, options, options.client, deadline) as tls:
            tls.sendall(pgwire.startup(options.user, options.database))
            answer = pgwire.read_answer(lambda n: _recv(tls, n, deadline))
            if answer.authenticated:
                tls.sendall(pgwire.TERMINATE)
            return answer
    except Unreachable as e:
        return pgwire.Answer(False, e.reason)
    except ssl.SSLError as e:
        # TLS 1.3 delivers the server's verdict on a client certificate after the handshake, at the read.
        return pgwire.Answer(False, f"the server refused the TLS connection: {_ssl_reason(e)}")
    except TimeoutError:
        return pgwire.Answer(False, f"timeout: no answer within {options.timeout:g}s")
    except (ConnectionResetError, BrokenPipeError) as e:
        # The same verdict when the server closes before its alert is read (seen under load, Python 3.13).
        return pgwire.Answer(False, f"the server refused the TLS connection: {_os_reason(e)}")
    except OSError as e:
        return pgwire.Answer(False, f"the connection failed ({_os_reason(e)})")


def _tls(target: Target, options: Options, context: ssl.SSLContext, deadline: float) -> ssl.SSLSocket:
    raw = _connect(target, options.timeout)
    try:
        if not options.http:
            raw.settimeout(_left(deadline))
            raw.sendall(pgwire.SSL_REQUEST)
            answer = _recv(raw, 1, deadline)
            if answer != b"S":
                raise Unreachable(_not_tls(answer))
        raw.settimeout(_left(deadline))
        # SNI carries a name, never an address (RFC 6066); ssl leaves it out for an IP itself.
        tls = context.wrap_socket(raw, server_hostname=None if target.ip else target.host)
        tls.settimeout(_left(deadline))
        return tls
    except BaseException:
        raw.close()
        raise


def _connect(target: Target, timeout: float) -> socket.socket:
    try:
        return socket.create_connection((target.host, target.port), timeout=timeout)
    except ConnectionRefusedError:
        raise Unreachable("connection refused") from None
    except TimeoutError:
        raise Unreachable(f"timeout: no connection within {timeout:g}s") from None
    except socket.gaierror as e:
        raise Unreachable(f"{target.host}: cannot be resolved ({e.strerror})") from None
    except OSError as e:
        raise Unreachable(_os_reason(e)) from None


def _recv(sock: socket.socket, n: int, deadline: float) -> bytes:
    """Exactly n bytes, or fewer when the peer closed; TimeoutError at the deadline."""
    data = b""
    while len(data) < n:
        sock.settimeout(_left(deadline))
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _not_tls(answer: bytes) -> str:
    if answer == b"N":
        return "not TLS: the server answered 'N' to the SSLRequest (it runs without TLS, --insecure)"
    if not answer:
        return "not TLS: the server closed the connection on the SSLRequest"
    return f"not TLS: the server answered {answer!r} to the SSLRequest (not a SQL port?)"


def _handshake_failed(e: ssl.SSLError) -> str:
    reason = _ssl_reason(e)
    if isinstance(e, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return "not TLS: the server closed the connection during the TLS handshake"
    if "wrong version number" in reason or "record layer" in reason or "packet length" in reason:
        return f"not TLS: the server's answer is not a TLS handshake ({reason})"
    return f"TLS handshake failed: {reason}"


def _ssl_reason(e: ssl.SSLError) -> str:
    return (e.reason or str(e)).lower().replace("_", " ")


def _os_reason(e: OSError) -> str:
    return (e.strerror or e.__class__.__name__).lower()


def _chain_of(tls: ssl.SSLSocket) -> list[x509.Certificate]:
    # Python 3.13 has SSLSocket.get_unverified_chain() (DER bytes); 3.10-3.12 only on the internal
    # object (Certificate objects). Without either: the leaf alone.
    getter = getattr(tls, "get_unverified_chain", None) or getattr(
        getattr(tls, "_sslobj", None), "get_unverified_chain", None
    )
    found = getter() if getter is not None else None
    if found:
        ders = [c if isinstance(c, bytes) else c.public_bytes(2) for c in found]  # 2: _ssl.ENCODING_DER
    else:
        leaf = tls.getpeercert(binary_form=True)
        if not leaf:
            raise Unreachable("the server presented no certificate")
        ders = [leaf]
    return [x509.load_der_x509_certificate(der) for der in ders]


# ------------------------------------------------------------------------------------------ text


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _split(hosts: tuple[str, ...]) -> tuple[list[str], list[str]]:
    return [h for h in hosts if _ip(h) is None], [h for h in hosts if _ip(h) is not None]


def _dn(name: x509.Name) -> str:
    return name.rfc4514_string() or "(empty)"


def _sans(dns: list[str], ips: list[str]) -> str:
    return ", ".join([f"DNS:{d}" for d in dns] + [f"IP:{i}" for i in ips]) or "(none)"


def _hex(serial: int) -> str:
    """As `openssl x509 -serial` prints it: upper-case hex, an even number of digits."""
    digits = f"{serial:X}"
    return digits.zfill(len(digits) + len(digits) % 2)


def _day(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M UTC")


def _cert_json(cert: x509.Certificate) -> dict[str, Any]:
    dns, ips = sans_of(cert)
    return {
        "subject": _dn(cert.subject),
        "dns": dns,
        "ips": ips,
        "serial": _hex(cert.serial_number),
        "issuer": _dn(cert.issuer),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "key": key_kind_of(cert),
    }
