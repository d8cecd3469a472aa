"""The few PostgreSQL wire-protocol messages a probe needs (protocol 3.0, the one CockroachDB speaks on its
SQL port): the SSLRequest that asks to switch to TLS, a StartupMessage, and reading the server's first
answer to it. https://www.postgresql.org/docs/current/protocol-message-formats.html
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

# Int32 length 8, Int32 80877103 (1234 << 16 | 5679): "please switch to TLS"; the answer is one byte.
SSL_REQUEST = struct.pack("!II", 8, 80877103)
PROTOCOL_3_0 = 196608  # 3 << 16
TERMINATE = b"X" + struct.pack("!I", 4)
# A first answer longer than this is not a PostgreSQL server's (an ErrorResponse is a few hundred bytes).
MAX_MESSAGE = 1 << 16

# What comes between AuthenticationOk and ReadyForQuery: ParameterStatus, BackendKeyData, NoticeResponse.
_BEFORE_READY = (b"S", b"K", b"N")
_MAX_MESSAGES = 1000

# AuthenticationRequest codes other than 0 (Ok): the server wants something else than the certificate.
_AUTH_ASKED = {3: "a password", 5: "an MD5 password", 10: "SASL (SCRAM) authentication"}


def startup(user: str, database: str) -> bytes:
    """StartupMessage: length, protocol version, then name/value pairs, each NUL-terminated, and a NUL."""
    pairs = b"".join(f"{k}\0{v}\0".encode() for k, v in (("user", user), ("database", database)))
    body = struct.pack("!I", PROTOCOL_3_0) + pairs + b"\0"
    return struct.pack("!I", len(body) + 4) + body


@dataclass(frozen=True)
class Answer:
    authenticated: bool
    text: str  # "authenticated", or what the server said instead


def read_answer(recv: Callable[[int], bytes]) -> Answer:
    """What the server answers a StartupMessage: logged in is ReadyForQuery after AuthenticationOk (a
    server checks the certificate first, then the role: PostgreSQL sends AuthenticationOk and then
    `role "x" does not exist`); refused is an ErrorResponse (its message and SQLSTATE) or a request for
    something else than the certificate. `recv(n)` returns exactly n bytes, or fewer when the connection
    closed."""
    authenticated = False
    for _ in range(_MAX_MESSAGES):
        header = recv(5)
        if len(header) < 5:
            return Answer(False, "the server closed the connection without an answer")
        kind, length = header[:1], struct.unpack("!I", header[1:])[0]
        if not 4 <= length <= MAX_MESSAGE:
            return Answer(False, f"not a PostgreSQL answer (message {kind!r}, length {length})")
        body = recv(length - 4)
        if kind == b"R" and len(body) >= 4:
            code = struct.unpack("!I", body[:4])[0]
            if code != 0:
                asked = _AUTH_ASKED.get(code, f"authentication method {code}")
                return Answer(False, f"the server asks for {asked}: it did not accept the certificate alone")
            authenticated = True
        elif kind == b"E":
            after = "the certificate was accepted, then: " if authenticated else ""
            return Answer(False, after + error_text(body))
        elif kind == b"Z" and authenticated:
            return Answer(True, "authenticated")
        elif kind not in _BEFORE_READY:
            return Answer(False, f"not a PostgreSQL answer (message {kind!r})")
    return Answer(False, "no ReadyForQuery from the server")


def error_text(body: bytes) -> str:
    """An ErrorResponse's message, its SQLSTATE and detail: fields of one type byte and a NUL-terminated
    string each."""
    fields: dict[str, str] = {}
    for part in body.split(b"\0"):
        if part:
            fields.setdefault(chr(part[0]), part[1:].decode("utf-8", "replace"))
    text = fields.get("M", "an error without a message")
    if "C" in fields:
        text += f" (SQLSTATE {fields['C']})"
    if "D" in fields:
        text += f": {fields['D']}"
    return text
