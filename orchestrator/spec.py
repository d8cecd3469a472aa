"""The spec: a TOML file turned into a validated, immutable model.

Every value is checked here, before anything is rendered or run; unknown keys are refused so that a typo
(`host =` for `hosts =`) is an error rather than a silently missing SAN.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator import validate
from orchestrator.errors import SpecError, UserError
from orchestrator.resources import resource

PROFILES = ("secure", "docs", "docs-v19")
LAYOUTS = ("standard", "split-node", "split-ca")


@dataclass(frozen=True)
class Node:
    name: str
    hosts: tuple[str, ...]


@dataclass(frozen=True)
class Client:
    user: str


@dataclass(frozen=True)
class UI:
    hosts: tuple[str, ...]


@dataclass(frozen=True)
class Spec:
    profile: str
    layout: str
    nodes: tuple[Node, ...]
    clients: tuple[Client, ...]
    ui: UI | None = None
    key_bits: int = 2048
    # None: the profile's lifetimes (secure: CA 3660 days, leaves 365; docs: 365/365; docs-v19: 3660/1830).
    ca_days: int | None = None
    cert_days: int | None = None


_TOP_KEYS = {"profile", "layout", "nodes", "clients", "ui", "key_bits", "ca_days", "cert_days"}


def default_spec_path() -> Path:
    return resource("certs.toml")


def load(path: Path | None = None, profile: str | None = None) -> Spec:
    """Read and validate a spec file (the embedded default when `path` is None)."""
    path = path or default_spec_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise UserError(f"--config: cannot read {str(path)!r}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"--config: {str(path)!r} is not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: not valid TOML: {e}") from None
    if profile is not None:
        data["profile"] = profile
    return parse(data)


def parse(data: dict[str, Any]) -> Spec:
    _no_unknown_keys("spec", data, _TOP_KEYS)
    profile = validate.choice("profile", data.get("profile", "secure"), PROFILES)
    layout = validate.choice("layout", data.get("layout", "standard"), LAYOUTS)
    nodes = tuple(_node(f"nodes[{i}]", n) for i, n in enumerate(_tables("nodes", data.get("nodes", []))))
    clients = tuple(
        _client(f"clients[{i}]", c) for i, c in enumerate(_tables("clients", data.get("clients", [])))
    )
    if not nodes and not clients:
        raise SpecError("nodes", [], "is empty, and so is clients: there is nothing to issue")
    _unique("nodes", "name", [n.name for n in nodes])
    _unique("clients", "user", [c.user for c in clients])
    if layout != "standard" and any(c.user == "node" for c in clients):
        raise SpecError(
            "clients", "node", f"is made by the {layout} layout itself (client.node.crt); remove it"
        )
    ui = None
    if "ui" in data:
        raw = data["ui"]
        if not isinstance(raw, dict):
            raise SpecError("ui", raw, "is not a table")
        _no_unknown_keys("ui", raw, {"hosts"})
        ui = UI(hosts=_hosts("ui.hosts", raw.get("hosts")))
    key_bits = validate.key_bits("key_bits", data.get("key_bits", 2048))
    ca_days = _optional_days("ca_days", data.get("ca_days"))
    cert_days = _optional_days("cert_days", data.get("cert_days"))
    return Spec(profile, layout, nodes, clients, ui, key_bits, ca_days, cert_days)


def _node(field: str, raw: dict[str, Any]) -> Node:
    _no_unknown_keys(field, raw, {"name", "hosts"})
    name = validate.node_name(f"{field}.name", raw.get("name"))
    return Node(name=name, hosts=_hosts(f"{field}.hosts", raw.get("hosts")))


def _client(field: str, raw: dict[str, Any]) -> Client:
    _no_unknown_keys(field, raw, {"user"})
    return Client(user=validate.user(f"{field}.user", raw.get("user")))


def _hosts(field: str, raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        raise SpecError(field, raw, "must be a non-empty list of host names and IP addresses")
    hosts = tuple(validate.host(f"{field}[{i}]", h) for i, h in enumerate(raw))
    _unique(field, None, list(hosts))
    return hosts


def _tables(field: str, raw: object) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        raise SpecError(field, raw, f"must be an array of tables ([[{field}]])")
    return raw


def _no_unknown_keys(field: str, raw: dict[str, Any], known: set[str]) -> None:
    for key in raw:
        if key not in known:
            where = key if field == "spec" else f"{field}.{key}"
            raise SpecError(where, raw[key], "is not a known key (known: " + ", ".join(sorted(known)) + ")")


def _unique(field: str, key: str | None, values: list[str]) -> None:
    seen: set[str] = set()
    for i, v in enumerate(values):
        if v in seen:
            where = f"{field}[{i}].{key}" if key else f"{field}[{i}]"
            raise SpecError(where, v, "appears twice")
        seen.add(v)


def _optional_days(field: str, raw: object) -> int | None:
    return None if raw is None else validate.days(field, raw)
