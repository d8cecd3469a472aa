"""What an output folder is: the spec it was made from and whose CA signs it, kept beside its CA database.

Every later command given `--out DIR` and no `--config` reads this record instead of guessing: a forgotten
`--config` must not fall back to the embedded default and re-issue a node with fewer SANs. The file is a
plan step (plan.build writes it), so it is staged and committed with the run that changes the folder, and
`plan` prints it like every other file.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import tomli
import tomli_w

from orchestrator import names
from orchestrator.errors import SpecError, UserError
from orchestrator.files import read_regular
from orchestrator.spec import (
    DEFAULT_CERTS_DIR,
    DEFAULT_ORGANIZATION,
    DEFAULT_RELOAD,
    MAX_SPEC,
    Node,
    Spec,
    parse,
)


class Provenance(StrEnum):
    """Whose CA signs the folder's certificates."""

    MADE_HERE = "made-here"  # crdb-certs made the CA: its key is in my-safe-directory/
    OWN_CA = "own-ca"  # the spec's [ca]: the organization's CA, its key read where it lies
    SIGNED_ELSEWHERE = "signed-elsewhere"  # `csr` + `import`: a CA crdb-certs never touches

    def about(self) -> str:
        return {
            Provenance.MADE_HERE: "a CA crdb-certs made here",
            Provenance.OWN_CA: "your own CA, named by the spec's [ca]",
            Provenance.SIGNED_ELSEWHERE: "a CA elsewhere, through `crdb-certs csr` and `crdb-certs import`",
        }[self]


FORMAT = 1
_HEADER = """\
# What this folder is, written by crdb-certs with every run that changes it. Commands given
# --out (or --from) this folder and no --config use the spec below. To change the spec, copy the
# [spec] table into a file of its own (without the "spec." prefix), edit it and pass --config.
"""


def of(spec: Spec, provenance: Provenance | None = None) -> str:
    """The record's text for `spec` (provenance: from the spec unless a command says otherwise)."""
    data = {"format": FORMAT, "ca": _provenance(spec, provenance).value, "spec": spec_data(spec)}
    return _HEADER + tomli_w.dumps(data)


def _provenance(spec: Spec, provenance: Provenance | None) -> Provenance:
    if provenance is not None:
        return provenance
    return Provenance.OWN_CA if spec.ca else Provenance.MADE_HERE


@dataclass(frozen=True)
class Settings:
    """What a later run compares of the record with its spec (changes.guard): whose CA signs the folder,
    and the settings that, changed, would re-issue every certificate."""

    provenance: Provenance
    profile: str
    layout: str
    ca_cert: str | None  # the spec's [ca] file

    @classmethod
    def of(cls, spec: Spec, provenance: Provenance | None = None) -> Settings:
        """The settings of `of(spec, provenance)`, without writing or reading it back."""
        ca = str(spec.ca.cert) if spec.ca is not None else None
        return cls(_provenance(spec, provenance), spec.profile, spec.layout, ca)

    def held(self) -> list[str | None]:
        """As the stamp holds them (JSON)."""
        return [self.provenance.value, self.profile, self.layout, self.ca_cert]

    @classmethod
    def from_held(cls, held: object) -> Settings | None:
        """The settings a stamp holds; None for anything `held` would not make (an edited stamp)."""
        if not isinstance(held, list) or len(held) != 4 or not all(isinstance(x, str) for x in held[:3]):
            return None
        if held[3] is not None and not isinstance(held[3], str):
            return None
        try:
            provenance = Provenance(held[0])
        except ValueError:
            return None
        try:  # as reading the record gives it: resolved now (spec._file), a link made since followed
            ca_cert = str(Path(held[3]).resolve()) if held[3] is not None else None
        except (OSError, ValueError, RuntimeError):  # a loop of links; a NUL
            return None
        return cls(provenance, held[1], held[2], ca_cert)


def spec_data(spec: Spec) -> dict[str, Any]:
    """The spec as the TOML data `spec.parse` reads back into the same Spec (file paths absolute)."""
    data: dict[str, Any] = {"profile": spec.profile, "layout": spec.layout, "key_type": spec.key_type}
    if spec.key_type == "rsa":
        data["key_bits"] = spec.key_bits
    for key in ("ca_days", "cert_days"):
        if getattr(spec, key) is not None:
            data[key] = getattr(spec, key)
    if spec.organization != DEFAULT_ORGANIZATION:
        data["subject"] = {"organization": spec.organization}
    if spec.ui is not None:
        data["ui"] = {"hosts": list(spec.ui.hosts), "issuer": spec.ui.issuer}
        if spec.ui.cert is not None and spec.ui.key is not None:
            data["ui"] |= {"cert": str(spec.ui.cert), "key": str(spec.ui.key)}
    if spec.ca is not None:
        data["ca"] = {"cert": str(spec.ca.cert), "key": str(spec.ca.key)}
    if spec.ocsp_url is not None:
        data["ocsp"] = {"url": spec.ocsp_url}
    k8s = spec.kubernetes
    if k8s is not None:  # written as the section it was; its node comes back from it
        data["kubernetes"] = {"release": k8s.release, "namespace": k8s.namespace}
        data["kubernetes"]["cluster_domain"] = k8s.cluster_domain
        if k8s.hosts:
            data["kubernetes"]["hosts"] = list(k8s.hosts)
    nodes = [n for n in spec.nodes if k8s is None or n.name != k8s.node]
    data["nodes"] = [_node_data(n) for n in nodes]
    if spec.reload != DEFAULT_RELOAD:
        data["deploy"] = {"reload": spec.reload}
    data["clients"] = [{"user": c.user, **({"pkcs8": True} if c.pkcs8 else {})} for c in spec.clients]
    return data


def _node_data(node: Node) -> dict[str, Any]:
    data: dict[str, Any] = {"name": node.name, "hosts": list(node.hosts)}
    if node.ssh is not None:
        data["ssh"] = node.ssh
    if node.certs_dir != DEFAULT_CERTS_DIR:
        data["certs_dir"] = node.certs_dir
    if node.sql_addr is not None:
        data["sql_addr"] = node.sql_addr
    return data


class Record:
    """A folder's record as read back."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data
        made_by = data.get("format")
        if not isinstance(made_by, int) or isinstance(made_by, bool) or made_by < 1:
            raise UserError(f"{path}: format = {made_by!r} is not one crdb-certs writes")
        if made_by > FORMAT:  # read as ours, it would be rewritten as ours by the next run
            raise UserError(
                f"{path}: format {made_by} was made by a newer crdb-certs (this one reads format {FORMAT}):"
                " run that one, or pass --config with the folder's spec and a new --out"
            )
        try:
            self.provenance = Provenance(str(data.get("ca")))
        except ValueError:
            raise UserError(f"{path}: ca = {data.get('ca')!r} is not one crdb-certs writes") from None
        if not isinstance(data.get("spec"), dict):
            raise UserError(f"{path}: has no [spec] table; pass --config with the folder's spec")

    def settings(self) -> Settings:
        """What the guard compares with the spec (Settings)."""
        return Settings.of(self.spec(), self.provenance)

    def spec(self, profile: str | None = None, key_type: str | None = None) -> Spec:
        """The recorded spec, parsed (defaults filled in: compare this, not `data`), with the command
        line's overrides. A value it refuses is named as the record's: the user edits the record."""
        data = dict(self.data["spec"])
        for key, value in (("profile", profile), ("key_type", key_type)):
            if value is not None:
                data[key] = value
        if key_type == "ec":
            data.pop("key_bits", None)
        try:
            return parse(data, base=self.path.parent)
        except SpecError as e:
            raise SpecError(f"{self.path}: spec.{e.field}", e.value, e.reason) from None


def read(out: Path) -> Record | None:
    """The record of `out`, or None when it has none."""
    path = out / names.RECORD
    try:
        raw = read_regular(path, MAX_SPEC + 1)  # never a FIFO (it would block) or a device
    except FileNotFoundError:
        return None
    except OSError as e:
        raise UserError(f"{path}: cannot be read ({e.strerror})") from None
    if len(raw) > MAX_SPEC:
        raise UserError(f"{path}: larger than {MAX_SPEC // 1024} KB: not a record crdb-certs writes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text; pass --config with the folder's spec") from None
    try:
        return Record(path, _loads(text))
    except tomli.TOMLDecodeError as e:
        raise UserError(f"{path}: not valid TOML ({e}); pass --config with the folder's spec") from None


@functools.lru_cache(maxsize=1)
def _loads(text: str) -> dict[str, Any]:
    """The record's TOML, parsed once for the state inspection and the guard that both read it (15 ms a
    read at 2,000 nodes, issue 16). Nothing changes the data a Record holds."""
    return tomli.loads(text)


def holds_a_pki(out: Path) -> bool:
    """Whether `out` already holds certificates or a CA (made by anything: an earlier crdb-certs,
    `cockroach cert`, the docs' recipe by hand)."""
    markers = (
        f"{names.CERTS_DIR}/{names.CA_CERT}",
        "index.txt",
        names.ca_key("ca"),
        names.NODES_DIR,
    )
    # A certs directory itself (`cockroach cert`'s, a node's): certificates or keys at its top.
    return any((out / m).exists() for m in markers) or any(out.glob("*.crt")) or any(out.glob("*.key"))


def folder_above(out: Path) -> Path | None:
    """The output folder of which `out` is a certs directory (its certs/ or nodes/<name>/), or None."""
    here = Path(os.path.abspath(out))
    above = here.parent.parent if here.parent.name == names.NODES_DIR else here.parent
    if here.name != names.CERTS_DIR and above == here.parent:
        return None
    return above if (above / names.RECORD).is_file() else None
