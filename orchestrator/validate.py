"""Validation of every name that can reach an openssl config or a file name.

Each function returns the canonical form of a value or raises SpecError naming the field and the value.
Nothing is rendered or run before these checks pass (openssl-traps.md §4.1).
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata

from orchestrator.errors import SpecError

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_NODE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_MAX_USER_BYTES = 63  # CockroachDB: "username is too long"


def host(field: str, value: object) -> str:
    """A SAN value: an IP address (v4 or v6, canonical form) or a DNS name (A-label form, lower case).

    A wildcard is allowed only as the whole left-most label (`*.example.com`), as TLS clients match it.
    """
    if not isinstance(value, str) or not value:
        raise SpecError(field, value, "is not a host name or IP address")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if value != value.strip() or any(not c.isprintable() for c in value):
        raise SpecError(field, value, "contains white space or control characters")
    name = value.lower().removesuffix(".")
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError:
        raise SpecError(field, value, "is not a valid DNS name or IP address") from None
    if ascii_name != name and ascii_name.encode("ascii").decode("idna") != name:
        # Python's IDNA 2003 codec maps some characters (ß -> ss); refuse rather than change the name.
        raise SpecError(field, value, "does not survive IDNA encoding unchanged; give its xn-- form")
    labels = ascii_name.split(".")
    if len(ascii_name) > 253:
        raise SpecError(field, value, "is longer than 253 characters")
    for i, label in enumerate(labels):
        if label == "*" and i == 0 and len(labels) > 2:
            continue
        if not _LABEL.match(label):
            raise SpecError(field, value, "is not a valid DNS name or IP address")
    if all(label.isdigit() for label in labels):
        raise SpecError(field, value, "looks like an IP address but is not a valid one")
    return ascii_name


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


def days(field: str, value: object, low: int = 1, high: int = 36600) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SpecError(field, value, f"is not a whole number of days from {low} to {high}")
    return value


def key_bits(field: str, value: object) -> int:
    if isinstance(value, bool) or value not in (2048, 3072, 4096):
        raise SpecError(field, value, "is not a supported RSA key size (2048, 3072 or 4096)")
    assert isinstance(value, int)
    return value


def choice(field: str, value: object, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise SpecError(field, value, "is not one of " + ", ".join(allowed))
    assert isinstance(value, str)
    return value
