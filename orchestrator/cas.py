"""Which CA signs what: the node CA, the client CA of the split-ca layout, the DB Console's CA, and where
each keeps its certificate, key and database."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from orchestrator import names
from orchestrator.spec import ExternalCA, Layout, Spec


@dataclass(frozen=True)
class CA:
    name: str  # ca | ca-client | ca-ui: the certificate is certs/<name>.crt
    common_name: str
    external: ExternalCA | None = None  # the user's own CA: its key stays where it is

    @property
    def task_id(self) -> str:
        return self.name

    # cnf, key and cert: made once, then shared by the steps of every certificate the CA signs, not one copy
    # each (~0.4 KB a node: issue 16, peak memory).
    @cached_property
    def cnf(self) -> str:
        return f"{self.name}.cnf"

    @cached_property
    def key(self) -> str:
        return str(self.external.key) if self.external else names.ca_key(self.name)

    @cached_property
    def cert(self) -> str:
        return f"{names.CERTS_DIR}/{self.name}.crt"

    def openssl_ca(self) -> list[str]:
        """`openssl ca` with this CA's config, key and certificate: how every signature, revocation and
        CRL starts."""
        return ["openssl", "ca", "-config", self.cnf, "-keyfile", self.key, "-cert", self.cert]

    @property
    def database(self) -> str:  # the docs' names for the main CA; a prefix for any other
        return "index.txt" if self.name == "ca" else f"{self.name}.index.txt"

    @property
    def serial(self) -> str:
        return "serial.txt" if self.name == "ca" else f"{self.name}.serial.txt"


@dataclass(frozen=True)
class Signers:
    """Which CA signs what, by layout and [ui]."""

    node: CA
    client: CA  # every client certificate, client.node.crt included
    ui: CA | None  # None: no UI certificate, or an imported one

    @property
    def all(self) -> list[CA]:
        return list(dict.fromkeys(ca for ca in (self.node, self.client, self.ui) if ca))


def signers(spec: Spec) -> Signers:
    node = CA("ca", "Cockroach CA", spec.ca)
    client = CA("ca-client", "Cockroach Client CA") if spec.layout == Layout.SPLIT_CA else node
    ui = None
    if spec.ui and spec.ui.issuer != "import":
        ui = CA("ca-ui", "Cockroach UI CA") if spec.ui.issuer == "ui-ca" else node
    return Signers(node, client, ui)
