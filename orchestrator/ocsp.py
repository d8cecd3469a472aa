"""`ocsp serve` and `ocsp check`: the OCSP responder CockroachDB asks (security.ocsp.mode), and the
preflight before anyone sets `strict`.

The responder is OpenSSL's own (`openssl ocsp -index`), run once per request: OpenSSL 3.0's
`openssl ocsp -port N` listens on every interface, so a small HTTP listener binds where it is told and
hands each request to `openssl ocsp -reqin REQ -respout RESP`. Every answer is computed by openssl from
the CA database as it is at that moment (a revocation counts at once, no restart), and signed by the
responder certificate the CA delegated to (revocation.responder_plan): the CA key is never read here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import signal
import socket
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509 import ocsp

from orchestrator import names
from orchestrator.cas import CA
from orchestrator.certcheck import load_certs, ocsp_urls_of, signed_by
from orchestrator.certsdir import read as read_dir
from orchestrator.errors import RunError, UserError
from orchestrator.openssl import OpenSSL

_MAX_REQUEST = 64 * 1024  # an OCSP request is a few hundred bytes
# OCSPResponse { responseStatus malformedRequest(1) }: the answer to what is not an OCSP request.
_MALFORMED = bytes.fromhex("3003 0a01 01")
_NEXT_UPDATE_MINUTES = "5"  # nextUpdate: a client may keep an answer this long; CockroachDB does not


@dataclass(frozen=True)
class Authority:
    """A CA of the folder as the responder needs it: the CA database, the CA certificate, the delegated
    responder's certificate and key (absolute paths)."""

    name: str
    index: Path
    cert: Path
    rsigner: Path
    rkey: Path

    def issues(self, asked: CertID) -> bool:
        """Whether `asked` is about a certificate of this CA (issuer name and key hashes)."""
        for ca in load_certs(self.cert):
            name = hashlib.new(asked.digest, ca.subject.public_bytes()).digest()
            key = hashlib.new(asked.digest, _key_bits(ca)).digest()
            if name == asked.name_hash and key == asked.key_hash:
                return True
        return False


@dataclass(frozen=True)
class CertID:
    """What an OCSP request asks about (RFC 6960 4.1.1): which CA (hashes of its name and key), which
    serial. Read here because `cryptography` refuses a request that asks about more than one."""

    digest: str  # hashlib's name
    name_hash: bytes
    key_hash: bytes
    serial: int


_DIGESTS = {  # AlgorithmIdentifier OIDs (contents) of the hashes a CertID may use
    bytes.fromhex("2b0e03021a"): "sha1",
    bytes.fromhex("608648016503040201"): "sha256",
    bytes.fromhex("608648016503040202"): "sha384",
    bytes.fromhex("608648016503040203"): "sha512",
}


def cert_ids(der: bytes) -> list[CertID]:
    """The CertIDs of a DER OCSPRequest; ValueError when it is not one."""
    try:
        (request,) = _children(der)  # OCSPRequest ::= SEQUENCE { tbsRequest, [0] optionalSignature }
        tbs = _children(request[1])[0][1]
        # TBSRequest ::= SEQUENCE { [0] version, [1] requestorName, requestList SEQUENCE OF Request, ... }
        request_list = next(contents for tag, contents in _children(tbs) if tag == _SEQUENCE)
        found = []
        for _, one in _children(request_list):
            cert_id = _children(one)[0][1]  # Request ::= SEQUENCE { reqCert CertID, [0] extensions }
            algorithm, name_hash, key_hash, serial = (c for _, c in _children(cert_id)[:4])
            oid = _children(algorithm)[0][1]
            found.append(CertID(_DIGESTS[oid], name_hash, key_hash, int.from_bytes(serial, "big")))
    except (IndexError, KeyError, StopIteration, ValueError) as e:
        raise ValueError(f"not an OCSP request ({e.__class__.__name__})") from None
    if not found:
        raise ValueError("an OCSP request that asks about nothing")
    return found


def authorities(out: Path, cas: list[CA]) -> list[Authority]:
    """Every CA of the folder, with the responder it delegates to (revocation.responder_plan)."""
    out = out.resolve()
    return [
        Authority(
            ca.name,
            out / ca.database,
            out / ca.cert,
            out / names.responder_cert(ca.name),
            out / names.key_for(names.responder_cert(ca.name)),
        )
        for ca in cas
    ]


class Responder:
    """Answers OCSP requests with `openssl ocsp -index`, for every CA of the folder."""

    def __init__(self, openssl: OpenSSL, known: list[Authority]) -> None:
        self.openssl = openssl
        self.known = known

    def answer(self, der: bytes) -> tuple[bytes, str]:
        """The DER response to a DER request, and what it said (for the log line)."""
        try:
            asked = cert_ids(der)
        except ValueError:
            return _MALFORMED, "malformed request"
        # A CA of the folder, or the first one: openssl then answers `unknown` for a stranger's certificate.
        authority = next((a for a in self.known if a.issues(asked[0])), self.known[0])
        with tempfile.TemporaryDirectory(prefix="crdb-certs-ocsp-") as work:
            Path(work, "request.der").write_bytes(der)
            argv = (
                "openssl",
                "ocsp",
                "-index",
                str(authority.index),
                "-CA",
                str(authority.cert),
                "-rsigner",
                str(authority.rsigner),
                "-rkey",
                str(authority.rkey),
                "-reqin",
                "request.der",
                "-respout",
                "response.der",
                "-nmin",
                _NEXT_UPDATE_MINUTES,
            )
            self.openssl.run(argv, Path(work))
            response = Path(work, "response.der").read_bytes()
        if len(asked) == 1:
            return response, f"{authority.name} serial {asked[0].serial:X}: {_status(response)}"
        return response, f"{authority.name}, {len(asked)} serials: {_status(response)}"


def _status(response: bytes) -> str:
    try:
        parsed = ocsp.load_der_ocsp_response(response)
    except ValueError:
        return "unreadable response"
    if parsed.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        return parsed.response_status.name.lower()
    statuses = [r.certificate_status.name.lower() for r in parsed.responses]
    if len(statuses) == 1:
        return statuses[0]
    counts = Counter(statuses)
    return ", ".join(f"{n} {status}" for status, n in counts.items())


def _key_bits(cert: x509.Certificate) -> bytes:
    """The subjectPublicKey BIT STRING's contents, which an OCSP CertID hashes (RFC 6960 4.1.1)."""
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    # SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING }
    bit_string = _children(_children(spki)[0][1])[1][1]
    return bit_string[1:]  # its first byte counts the unused bits (0)


_SEQUENCE = 0x30


def _children(der: bytes) -> list[tuple[int, bytes]]:
    """The DER elements that follow each other in `der`: (tag, contents) each."""
    found = []
    offset = 0
    while offset < len(der):
        tag, first = der[offset], der[offset + 1]
        if first < 0x80:
            length, start = first, offset + 2
        else:
            count = first & 0x7F
            length, start = int.from_bytes(der[offset + 2 : offset + 2 + count], "big"), offset + 2 + count
        if start + length > len(der):
            raise ValueError("truncated")
        found.append((tag, der[start : start + length]))
        offset = start + length
    return found


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    responder: Responder


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"

    def do_POST(self) -> None:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            length = -1
        if not 0 < length <= _MAX_REQUEST:
            self._reply(400, b"", "no Content-Length or too long")
            return
        self._answer(self.rfile.read(length))

    def do_GET(self) -> None:
        # RFC 6960 A.1: GET {url}/{url-encoding of base-64 encoding of the DER request}. The URL's own
        # path may come first, and base64 has `/` in its alphabet: drop leading segments until it parses.
        path = unquote(self.path.split("?", 1)[0]).lstrip("/")
        segments = path.split("/")
        for i in range(len(segments)):
            try:
                der = base64.b64decode("/".join(segments[i:]), validate=True)
                cert_ids(der)
            except (binascii.Error, ValueError):
                continue
            self._answer(der)
            return
        self._answer(b"")

    def _answer(self, der: bytes) -> None:
        try:
            response, said = self.server.responder.answer(der)
        except RunError as e:
            self._reply(500, b"", f"openssl failed: {str(e).splitlines()[-1]}")
            return
        self._reply(200, response, said)

    def _reply(self, code: int, body: bytes, said: str) -> None:
        # The log line first: once the client has its answer it may stop the server (SIGTERM), and a
        # line still to be written by this thread would be lost with it.
        when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        print(f"{when} {self.client_address[0]} {self.command} {code} {said}", file=sys.stderr, flush=True)
        self.send_response(code)
        self.send_header("Content-Type", "application/ocsp-response")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per request, written by _reply


def serve(responder: Responder, host: str, port: int) -> None:
    """Answer on host:port until SIGTERM or Ctrl-C."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET

    class Server(_Server):
        address_family = family

    try:
        server = Server((host, port), _Handler)
    except OSError as e:
        raise UserError(f"--host/--port: cannot listen on {host}:{port}: {e.strerror}") from None
    server.responder = responder
    bound = server.server_address[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    print(f"OCSP responder listening on http://{shown}:{bound}/ (Ctrl-C stops it)", flush=True)

    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
    print("OCSP responder stopped", flush=True)


# -------------------------------------------------------------------------------------------- check


@dataclass(frozen=True)
class Leaf:
    path: str  # relative to the output folder
    cert: x509.Certificate
    issuer: Path | None  # the CA file of the folder that signed it


def leaves(out: Path) -> Iterator[Leaf]:
    """Every leaf certificate in every certs directory of the folder."""
    ca_files = sorted((out / names.CERTS_DIR).glob("ca*.crt"))
    for folder in [out / names.CERTS_DIR, *sorted((out / names.NODES_DIR).glob("*/"))]:
        for found in read_dir(folder).certs:
            if found.usage.is_ca or found.leaf is None:
                continue
            issuer = next((f for f in ca_files if any(signed_by(found.leaf, c) for c in load_certs(f))), None)
            yield Leaf((folder / found.name).relative_to(out).as_posix(), found.leaf, issuer)


def check(out: Path, openssl: OpenSSL, url: str | None, timeout: int = 5) -> tuple[list[str], int]:
    """Ask the responder about every leaf of the folder with `openssl ocsp` as the client. Returns one
    line per problem and how many certificates were asked about. Good means: status good, the response
    signed by the CA or a responder it delegated to (openssl verifies it against the CA file), its nonce
    ours and its times valid now."""
    found: list[Leaf] = list(leaves(out))
    if not found:
        raise UserError(f"{out}: no certificates found in certs/ or nodes/*/")
    problems: list[str] = []
    asked: dict[tuple[str, Path, int], list[Leaf]] = {}  # (url, CA file, serial) -> the files holding it
    for leaf in found:
        urls = ocsp_urls_of(leaf.cert)
        if not urls:
            problems.append(
                f"{leaf.path}: no OCSP URL (authorityInfoAccess): CockroachDB cannot ask about it; set"
                " [ocsp] url in the spec and `crdb-certs issue --reissue`"
            )
        if leaf.issuer is None:
            problems.append(f"{leaf.path}: not signed by a CA of {out / names.CERTS_DIR}")
            continue
        for where in [url] if url else urls:
            asked.setdefault((where, leaf.issuer, leaf.cert.serial_number), []).append(leaf)
    unreachable: set[str] = set()
    groups: dict[tuple[str, Path], list[list[Leaf]]] = {}
    for (where, issuer, _), holders in asked.items():
        groups.setdefault((where, issuer), []).append(holders)
    with tempfile.TemporaryDirectory(prefix="crdb-certs-ocsp-") as work:
        for (where, issuer), batch in groups.items():
            for start in range(0, len(batch), 50):
                chunk = batch[start : start + 50]
                problems += _ask(out, openssl, where, issuer, chunk, Path(work), timeout, unreachable)
    return problems, len(found)


def _ask(
    out: Path,
    openssl: OpenSSL,
    url: str,
    issuer: Path,
    chunk: list[list[Leaf]],
    work: Path,
    timeout: int,
    unreachable: set[str],
) -> list[str]:
    if url in unreachable:
        return []
    # -issuer takes one certificate: the CA (the first of a rotation bundle) that signed these leaves.
    first = chunk[0][0]
    ca = next(c for c in load_certs(issuer) if signed_by(first.cert, c))
    issuer_pem = work / f"issuer-{abs(hash((str(issuer), ca.serial_number)))}.pem"
    issuer_pem.write_bytes(ca.public_bytes(Encoding.PEM))
    argv = ["openssl", "ocsp", "-issuer", str(issuer_pem), "-CAfile", str(issuer.resolve()), "-url", url]
    argv += ["-timeout", str(timeout)]
    for holders in chunk:
        argv += ["-cert", str((out / holders[0].path).resolve())]
    try:
        said = openssl.run(tuple(argv), work)
        verified = True
    except RunError as e:
        message = str(e)
        if re.search(r"connect|Connection refused|timed out|Name or service|resolve|timeout", message, re.I):
            unreachable.add(url)
            return [f"{url}: the OCSP responder is unreachable ({message.splitlines()[-1].strip()})"]
        said, verified = message, False
    problems = []
    statuses = dict(re.findall(r"^(.*): (good|revoked|unknown)$", said, re.M))
    if "WARNING: Status times invalid" in said:
        problems.append(f"{url}: an answer is not fresh (thisUpdate/nextUpdate do not hold now)")
    for holders in chunk:
        path = str((out / holders[0].path).resolve())
        status = statuses.get(path)
        serial = f"{holders[0].cert.serial_number:X}"
        if not verified:
            last = said.strip().splitlines()[-1] if said.strip() else "no answer"
            problems.append(
                f"{holders[0].path}: the answer from {url} is not signed by {issuer.name} or a responder it"
                f" vouches for ({last})"
            )
        elif status == "revoked":
            problems += [
                f"{h.path}: revoked (serial {serial}) but still in a certs directory: `crdb-certs revoke"
                f" --serial {serial}` takes it out, `crdb-certs issue` makes a new one"
                for h in holders
            ]
        elif status != "good":
            problems.append(f"{holders[0].path}: {url} answers {status or 'nothing'} (serial {serial})")
    return problems
