"""`crdb-certs init`: a commented spec to start from, written from templates/spec.toml.j2.

The values come from the command line, are checked as the spec checks them (spec.parse) before anything
is written, and reach the file only through TOML quoting (the template's finalize hook), so what `init`
writes is what `issue` reads.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import tomli_w

from orchestrator import profiles, spec, validate
from orchestrator.errors import SpecError
from orchestrator.resources import resource

DEFAULT_FILE = "certs.toml"
DEFAULT_NODE = ("node1", ("localhost", "127.0.0.1"))
DEFAULT_USER = "root"


def toml_value(value: Any) -> str:
    """A value as TOML writes it (strings quoted and escaped, arrays on one line)."""
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return tomli_w.dumps({"v": value}).removeprefix("v = ").removesuffix("\n")


def parse_node(option: str) -> tuple[str, tuple[str, ...]]:
    """`--node NAME=HOST,HOST`: each part checked as the spec checks it, naming the option."""
    name, sep, hosts = option.partition("=")
    if not sep or not hosts.strip():
        raise SpecError("--node", option, "is not NAME=HOST,HOST (a node's name, then its host names)")
    listed = tuple(validate.host("--node", h.strip()) for h in hosts.split(","))
    return validate.node_name("--node", name.strip()), listed


def spec_text(
    nodes: list[tuple[str, tuple[str, ...]]],
    users: list[str],
    profile: str,
    layout: str,
    kubernetes: tuple[str, str] | None = None,
) -> str:
    """The spec's text. Refused, naming the value, where the spec would refuse it."""
    users = [validate.user("--user", u) for u in users] or [DEFAULT_USER]
    data: dict[str, Any] = {
        "profile": validate.choice("--profile", profile, spec.PROFILES),
        "layout": validate.choice("--layout", layout, spec.LAYOUTS),
        "clients": [{"user": u} for u in users],
    }
    known = False
    if kubernetes is not None:
        release, namespace = kubernetes
        known = _reads_kubernetes(data | {"kubernetes": {"release": release, "namespace": namespace}})
        if known:
            data["kubernetes"] = {"release": release, "namespace": namespace}
    if not nodes and not known:
        nodes = [DEFAULT_NODE]
    data["nodes"] = [{"name": name, "hosts": list(hosts)} for name, hosts in nodes]
    parsed = spec.parse(data)
    lifetimes = profiles.PROFILES[parsed.profile]
    return _template().render(
        profile=parsed.profile,
        layout=parsed.layout,
        ca_days=lifetimes.ca_days,
        cert_days=lifetimes.cert_days,
        nodes=parsed.nodes,
        users=[c.user for c in parsed.clients],
        kubernetes={"release": kubernetes[0], "namespace": kubernetes[1]} if kubernetes else None,
        kubernetes_known=known,
    )


def write(path: Path, text: str, force: bool) -> None:
    """Write the spec; an existing file only with `force` (any other OSError is the command's one line)."""
    try:
        with path.open("w" if force else "x", encoding="utf-8") as f:
            f.write(text)
    except FileExistsError:
        raise SpecError("FILE", str(path), "exists; --force replaces it") from None


def _reads_kubernetes(data: dict[str, Any]) -> bool:
    """Whether this crdb-certs' spec has a [kubernetes] table (a bad value in it is an error all the same)."""
    try:
        spec.parse(data)
    except SpecError as e:
        if e.field == "kubernetes" and e.reason.startswith("is not a known key"):
            return False
        raise
    return True


@cache
def _template() -> jinja2.Template:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resource("templates"))),
        undefined=jinja2.StrictUndefined,
        finalize=toml_value,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - the output is TOML, every value quoted by toml_value
    )
    return environment.get_template("spec.toml.j2")
