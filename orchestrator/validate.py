"""Validation of every name that can reach an openssl config or a file name.

Each function returns the canonical form of a value or raises SpecError naming the field and the value.
Nothing is rendered or run before these checks pass (openssl-traps.md §4.1).
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import unicodedata

from orchestrator.errors import SpecError

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_NODE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_HEX_NUMBER = re.compile(r"^0x[0-9a-f]*$")
# Scripts whose letters look alike (Cyrillic a and o, Greek omicron, ...): a label mixing them is almost
# surely a look-alike pasted by mistake (or on purpose), never the operator's real host name.
_CONFUSABLE_SCRIPTS = frozenset({"LATIN", "CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE", "COPTIC"})
# The two shapes nearly every host has, already in their canonical form: a dotted-quad IPv4 address (no
# leading zeros) and a lower-case LDH name with no A-label (xn--) and no trailing dot. `host` returns them
# as they are, as its general checks would, without those checks' ~40 µs (issue 16: 30,000 hosts).
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_PLAIN_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
_PLAIN_LABEL = r"(?!xn--)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_PLAIN_NAME = re.compile(rf"{_PLAIN_LABEL}(?:\.{_PLAIN_LABEL})*")
_MAX_USER_BYTES = 63  # CockroachDB: "username is too long"


def host(field: str, value: object) -> str:
    """A SAN value: an IP address (v4 or v6, canonical form) or a DNS name (A-label form, lower case).

    A wildcard is allowed only as the whole left-most label, with at least one label after it, as TLS
    clients match it: `*.example.com`, and `*.cockroachdb` as CockroachDB's Kubernetes docs and Helm chart
    write it (Go's TLS and libpq match it; OpenSSL's host check does not: audit notes that).
    """
    if isinstance(value, str) and len(value) <= 253:
        if _PLAIN_IPV4.fullmatch(value):
            return value
        if _PLAIN_NAME.fullmatch(value):
            last = value.rpartition(".")[2]
            if not last.isdigit() and not _HEX_NUMBER.match(last):
                return value
    return checked_host(field, value)


def is_plain_ipv4(value: str) -> bool:
    """Whether `value` is a dotted-quad IPv4 address in its canonical form (no leading zeros)."""
    return _PLAIN_IPV4.fullmatch(value) is not None


def checked_host(field: str, value: object) -> str:
    """`host` by its general checks alone (the refusals and their messages, every canonical form)."""
    if not isinstance(value, str) or not value:
        raise SpecError(field, value, "is not a host name or IP address")
    if any(c.isspace() or not c.isprintable() for c in value):
        raise SpecError(field, value, "contains white space or control characters")
    if "%" in value:
        # ipaddress accepts `fe80::1%eth0` (and anything after the %); a certificate holds only the address.
        raise SpecError(field, value, "has an IPv6 zone index (%...), which a certificate cannot carry")
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        mapped = getattr(ip, "ipv4_mapped", None)
        if mapped is not None:
            # A 16-byte SAN never matches a client that dials the IPv4 address: ask for that address.
            raise SpecError(field, value, f"is an IPv4-mapped IPv6 address; list {mapped} instead")
        return str(ip)
    name = value.lower().removesuffix(".")
    labels = [_a_label(field, value, label, wildcard=(i == 0)) for i, label in enumerate(name.split("."))]
    ascii_name = ".".join(labels)
    if len(ascii_name) > 253:
        raise SpecError(field, value, "is longer than 253 characters")
    if labels[0] == "*" and len(labels) < 2:
        raise SpecError(field, value, "is a wildcard with no label after it; write *.<domain>")
    # A name ending in a number is read as an IPv4 address by URL parsers and inet_aton (`0x7f.1`, `127.1`,
    # `555.1.1.1`); no top-level domain is numeric, so refuse it rather than guess which the user meant.
    if labels[-1].isdigit() or _HEX_NUMBER.match(labels[-1]):
        raise SpecError(field, value, "looks like an IP address but is not a valid one")
    return ascii_name


def _a_label(field: str, value: str, label: str, wildcard: bool) -> str:
    """One label of a DNS name in its ASCII form, refused unless it is LDH and round-trips through IDNA."""
    if label == "*" and wildcard:
        return label
    if "*" in label:
        raise SpecError(field, value, "has a wildcard that is not the whole left-most label")
    if not label:
        raise SpecError(field, value, "has an empty label (two dots in a row, or a leading dot)")
    try:
        ascii_label = label if label.isascii() else label.encode("idna").decode("ascii")
        unicode_label = ascii_label.encode("ascii").decode("idna")
    except UnicodeError:
        raise SpecError(field, value, "is not a valid DNS name or IP address") from None
    if len(ascii_label) > 63:
        raise SpecError(field, value, "has a label longer than 63 characters")
    if not _LABEL.match(ascii_label):
        raise SpecError(field, value, "is not a valid DNS name or IP address")
    if not label.isascii() and unicode_label != label:
        # Python's IDNA 2003 codec maps some characters (ß -> ss, fullwidth -> ASCII); refuse rather than
        # put a different name in the certificate.
        raise SpecError(field, value, "does not survive IDNA encoding unchanged; give its xn-- form")
    scripts = sorted({_script(c) for c in unicode_label if c.isalpha()} & _CONFUSABLE_SCRIPTS)
    if len(scripts) > 1:
        raise SpecError(
            field,
            value,
            f"mixes {' and '.join(s.title() for s in scripts)} letters in one label (a look-alike?)",
        )
    return ascii_label


def _script(c: str) -> str:
    return unicodedata.name(c, "UNKNOWN").split(" ")[0]


def user(field: str, value: object) -> str:
    """A SQL user name, normalized as CockroachDB does (lower case, NFC) and checked against its rule.

    The normalized form is what CockroachDB looks up, so it is what the CN and the file name carry.
    """
    if not isinstance(value, str):
        raise SpecError(field, value, "is not a user name")
    # lexbase.NormalizeName: Unicode lower-casing, with dotted/dotless I folded to ASCII i, then NFC.
    lowered = "".join("i" if c in "\u0130\u0131" else c.lower() for c in value)
    name = unicodedata.normalize("NFC", lowered)
    if not name:
        raise SpecError(field, value, "is empty")
    if len(name.encode("utf-8")) > _MAX_USER_BYTES:
        raise SpecError(field, value, f"is longer than {_MAX_USER_BYTES} bytes")
    if not all(_user_char_ok(c, first=(i == 0)) for i, c in enumerate(name)):
        raise SpecError(
            field,
            value,
            "is not a valid CockroachDB user name (letters, digits and _ first; then also - and .)",
        )
    return name


def _user_char_ok(c: str, first: bool) -> bool:
    if c in "0123456789_" or unicodedata.category(c) == "Ll":
        return True
    return not first and c in "-."


def node_name(field: str, value: object) -> str:
    """A node's name is a folder name under nodes/: lower-case letters, digits, `.`, `_`, `-`."""
    if not isinstance(value, str) or not _NODE_NAME.match(value) or value in {".", ".."}:
        raise SpecError(
            field, value, "is not a valid node name (lower-case letters, digits, '.', '_', '-'; at most 63)"
        )
    return value


def k8s_label(field: str, value: object, max_length: int = 63) -> str:
    """A Kubernetes name that is also a DNS label (RFC 1123): a namespace, a StatefulSet's name."""
    if not isinstance(value, str) or not _LABEL.match(value):
        raise SpecError(field, value, "is not a DNS-1123 label (lower-case letters, digits and '-')")
    if len(value) > max_length:
        raise SpecError(field, value, f"is longer than {max_length} characters")
    return value


def domain(field: str, value: object) -> str:
    """A DNS domain such as a Kubernetes cluster domain (`cluster.local`): no wildcard, no IP address."""
    if not isinstance(value, str) or "*" in value:
        raise SpecError(field, value, "is not a DNS domain")
    name = host(field, value)
    if ":" in name or name.replace(".", "").isdigit():
        raise SpecError(field, value, "is an IP address, not a DNS domain")
    if name != value.lower().removesuffix(".") or not all(_LABEL.match(label) for label in name.split(".")):
        raise SpecError(field, value, "is not a DNS domain (lower-case ASCII letters, digits, '-' and '.')")
    return name


def organization(field: str, value: object) -> str:
    """The O= of every certificate: printable ASCII (openssl writes it as given without -utf8), at most
    64 characters (ub-organization-name, RFC 5280), no white space around it (a config value is trimmed)."""
    if not isinstance(value, str) or not value:
        raise SpecError(field, value, "is not an organization name")
    if not (value.isascii() and value.isprintable()):
        raise SpecError(field, value, "is not printable ASCII")
    if value != value.strip():
        raise SpecError(field, value, "starts or ends with white space")
    if len(value) > 64:
        raise SpecError(field, value, "is longer than 64 characters")
    return value


def days(field: str, value: object, low: int = 1, high: int = 36600) -> int:
    if type(value) is not int or not low <= value <= high:
        raise SpecError(field, value, f"is not a whole number of days from {low} to {high}")
    return value


def key_bits(field: str, value: object) -> int:
    # type() and not isinstance: True is an int, and 2048.0 == 2048.
    if type(value) is not int or value not in (2048, 3072, 4096):
        raise SpecError(field, value, "is not a supported RSA key size (2048, 3072 or 4096)")
    return value


_URL_PATH = re.compile(r"^(/[A-Za-z0-9._~%-]*)*$")


def ocsp_url(field: str, value: object) -> str:
    """An OCSP responder URL for `authorityInfoAccess = OCSP;URI:<url>`: http (OCSP is signed, not
    encrypted, and CockroachDB asks over plain HTTP), a host, an optional port and path; nothing that
    could split the extension's value (a comma) or a config line (quotes, white space). Returned in its
    canonical form (host lower case, as `host` gives it)."""
    if not isinstance(value, str) or not value:
        raise SpecError(field, value, "is not a URL")
    if any(c.isspace() or not c.isprintable() for c in value):
        raise SpecError(field, value, "contains white space or control characters")
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() != "http":
        raise SpecError(field, value, "is not an http:// URL (OCSP responders are asked over plain HTTP)")
    authority, slash, path = rest.partition("/")
    path = slash + path
    if not _URL_PATH.match(path):
        raise SpecError(field, value, "has a path with characters other than letters, digits and / . _ ~ % -")
    if "@" in authority:
        raise SpecError(field, value, "has a user name or password, which a certificate must not carry")
    if authority.startswith("["):
        name, bracket, port = authority[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            raise SpecError(field, value, "has an IPv6 address not closed by ]")
        port = port.removeprefix(":")
    else:
        name, _, port = authority.partition(":")
    if port and (not port.isdigit() or not 1 <= int(port) <= 65535):
        raise SpecError(field, value, "has a port that is not a number from 1 to 65535")
    canonical = host(field, name)
    shown = f"[{canonical}]" if ":" in canonical else canonical
    return f"http://{shown}{':' + str(int(port)) if port else ''}{path}"


def choice(field: str, value: object, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise SpecError(field, value, "is not one of " + ", ".join(allowed))
    return value


# ------------------------------------------------------------------------------ where nodes live

# A login name as useradd allows it (and ssh passes on): never starting with '-', which ssh would read as
# an option, and nothing a shell or ssh_config would expand (%, $, ~, quotes, white space).
_LOGIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
# A folder on a node: an absolute path of plain characters. Ansible receives it as data, never through a
# shell; still nothing that a shell, Jinja or YAML would read differently ({, $, ~, *, quotes, space).
_REMOTE_PATH = re.compile(r"^(/[A-Za-z0-9._@+=,-]+)+/?$")


def port(field: str, value: object, text: str) -> int:
    """A TCP port written after a colon in `text`."""
    if not isinstance(value, str) or not value.isdigit() or not value.isascii() or not 0 < int(value) < 65536:
        raise SpecError(field, text, "has a port that is not a number from 1 to 65535")
    return int(value)


def _host_and_port(field: str, text: str) -> tuple[str, str | None]:
    """`host`, `host:port`, `[IPv6]` or `[IPv6]:port`, split (the port as written, or None)."""
    if text.startswith("["):
        inner, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")) or ":" not in inner:
            raise SpecError(field, text, "is not [IPv6 address] or [IPv6 address]:PORT")
        return inner, (rest[1:] if rest else None)
    if text.count(":") > 1:
        raise SpecError(field, text, "has an IPv6 address not in brackets (write [::1]:22)")
    host_part, colon, port_part = text.partition(":")
    return host_part, (port_part if colon else None)


def _reach_host(field: str, text: str, value: str) -> str:
    if "*" in value:
        raise SpecError(field, text, "is a wildcard, not one host")
    try:
        return host(field, value)
    except SpecError as e:
        raise SpecError(field, text, e.reason) from None


def ssh(field: str, value: object) -> tuple[str | None, str, int | None]:
    """`[user@]host[:port]`: how Ansible reaches a node over SSH (user and port: else ssh config's),
    as (user, host in its canonical form, port); `joined` writes it back."""
    if not isinstance(value, str) or not value:
        raise SpecError(field, value, "is not user@host[:port]")
    if any(c.isspace() or not c.isprintable() for c in value):
        raise SpecError(field, value, "contains white space or control characters")
    login, at, rest = value.rpartition("@")
    if at and not _LOGIN.match(login):
        raise SpecError(field, value, "has a user that is not a login name (letters, digits, _ . -)")
    host_part, port_part = _host_and_port(field, rest)
    name = _reach_host(field, value, host_part)
    return (login or None), name, (None if port_part is None else port(field, port_part, value))


def joined(user: str | None, name: str, number: int | None) -> str:
    """`[user@]host[:port]` again (IPv6 in brackets), which `ssh` reads back the same."""
    shown = f"[{name}]" if ":" in name else name
    return (f"{user}@" if user else "") + shown + (f":{number}" if number is not None else "")


def sql_addr(field: str, value: object) -> tuple[str, int]:
    """`host:port` where `probe` reaches a node's SQL port ([IPv6]:port)."""
    if not isinstance(value, str) or not value:
        raise SpecError(field, value, "is not host:port")
    if any(c.isspace() or not c.isprintable() for c in value):
        raise SpecError(field, value, "contains white space or control characters")
    host_part, port_part = _host_and_port(field, value)
    if port_part is None:
        raise SpecError(field, value, "has no port (host:port, e.g. node1.example.com:26257)")
    return _reach_host(field, value, host_part), port(field, port_part, value)


def remote_dir(field: str, value: object) -> str:
    """An absolute folder on a node, of plain characters; never `/` itself (it is replaced whole)."""
    if not isinstance(value, str) or not _REMOTE_PATH.match(value):
        raise SpecError(
            field, value, "is not an absolute path of letters, digits and . _ @ + = , - (no spaces)"
        )
    parts = value.strip("/").split("/")
    if any(p in {".", ".."} for p in parts):
        raise SpecError(field, value, "has a . or .. component")
    return "/" + "/".join(parts)


def command_line(field: str, value: object) -> str:
    """A command line the operator writes (`pkill -HUP -x cockroach`): kept as written, and split as a
    POSIX shell splits it (shlex) into the one argv that runs on the node, with no shell in between. So
    that the argv is exactly what a shell would have run, nothing a shell would expand or interpret is
    accepted outside single quotes ($, `, ;, |, &, <, >, (, ), globs, ~): wrap those in `sh -c '...'`."""
    if not isinstance(value, str) or not value.strip():
        raise SpecError(field, value, "is not a command line")
    if not value.isprintable():
        raise SpecError(field, value, "contains control characters (a newline, a tab)")
    quote = ""  # the quote we are inside: '' (none), "'" or '"'
    for c in value:
        if quote == "'":
            quote = "" if c == "'" else quote
        elif c == quote:
            quote = ""
        elif c in "'\"" and not quote:
            quote = c
        elif c in _SHELL_EXPANDS or (not quote and c in _SHELL_OPERATORS):
            raise SpecError(
                field,
                value,
                f"has {c!r}, which a shell would interpret: it runs without one (write sh -c '...' for that)",
            )
    try:
        argv = shlex.split(value)
    except ValueError as e:
        raise SpecError(field, value, f"cannot be split into words ({e})") from None
    if not argv or argv[0].startswith("-"):
        raise SpecError(field, value, "does not start with a command")
    return value


_SHELL_EXPANDS = "$`\\"  # interpreted outside single quotes, double quotes included
_SHELL_OPERATORS = ";|&<>()*?[]~{}#!"
