"""The spec: a TOML file turned into a validated, immutable model.

Every value is checked here, before anything is rendered or run; unknown keys are refused so that a typo
(`host =` for `hosts =`) is an error rather than a silently missing SAN.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import tomli

from orchestrator import profiles, validate
from orchestrator.errors import SpecError, UserError
from orchestrator.files import read_regular
from orchestrator.profiles import ProfileName
from orchestrator.resources import resource


class Layout(enum.StrEnum):
    STANDARD = "standard"  # ca.crt, node.crt (serves and dials), node.key
    SPLIT_NODE = "split-node"  # node.crt serves only; client.node.crt is what a node presents when it dials
    SPLIT_CA = "split-ca"  # split-node, and a second CA (ca-client.crt) signs every client certificate


# The values (as the TOML and the command line write them): secure, docs, docs-v19; standard, split-node, …
PROFILES = tuple(p.value for p in ProfileName)
LAYOUTS = tuple(layout.value for layout in Layout)
MAX_SPEC = 16 << 20  # 10,000 nodes: a spec of ~0.9 MB, and the record of their folder ~1.1 MB


DEFAULT_CERTS_DIR = "/var/lib/cockroach/certs"
DEFAULT_RELOAD = "pkill -HUP -x cockroach"  # CockroachDB re-reads its certificates on SIGHUP


@dataclass(frozen=True)
class Node:
    name: str
    hosts: tuple[str, ...]
    # Where the node lives, for `export ansible` and `deploy` only (nothing else reads them):
    ssh: str | None = None  # [user@]host[:port], as written (validate.ssh)
    certs_dir: str = DEFAULT_CERTS_DIR  # the folder on the node its certs directory is delivered to
    sql_addr: str | None = None  # host:port where `probe` reaches it (default: its first host, 26257)


@dataclass(frozen=True)
class Client:
    user: str
    pkcs8: bool = False  # also write client.<user>.key.pk8 (DER), for Java/JDBC clients


UI_ISSUERS = ("node-ca", "ui-ca", "import")
DEFAULT_ORGANIZATION = "Cockroach"  # the docs' O=, and `cockroach cert`'s
MAX_CN = 64  # ub-common-name (RFC 5280); user names are shorter (validate.user: at most 63 bytes)


@dataclass(frozen=True)
class UI:
    """The DB Console certificate (ui.crt/ui.key in every node's certs directory)."""

    hosts: tuple[str, ...]
    issuer: str = "node-ca"  # node-ca: signed by ca.crt; ui-ca: by a CA of its own (ca-ui.crt); import
    cert: Path | None = None  # import: a certificate from a public or organizational CA …
    key: Path | None = None  # … and its key; checked (imports.py), then installed with the right modes

    @property
    def common_name(self) -> str:
        """The CN of a UI certificate crdb-certs makes: the first host that fits in a CN (RFC 5280: at most
        64 characters; openssl refuses a longer one). Browsers read only the SANs."""
        return next(h for h in self.hosts if len(h) <= MAX_CN)


@dataclass(frozen=True)
class ExternalCA:
    """Bring your own CA: crdb-certs signs with it and never copies its key anywhere."""

    cert: Path  # the CA's certificate (and its chain up to the root), copied into certs/ca.crt
    key: Path  # read where it lies, never copied


@dataclass(frozen=True)
class Kubernetes:
    """A CockroachDB StatefulSet (Helm chart or operator): one node certificate shared by every pod."""

    release: str  # the StatefulSet's name: the chart's fullname, the operator's cluster name
    namespace: str = "default"
    cluster_domain: str = "cluster.local"
    hosts: tuple[str, ...] = ()  # names added to the StatefulSet's own
    node: str = "node"  # the node (folder nodes/<node>/) that carries the shared certificate

    @property
    def statefulset_hosts(self) -> tuple[str, ...]:
        """The SANs the Helm chart's self-signer and the operator give a node, in their order."""
        r, ns, domain = self.release, self.namespace, self.cluster_domain
        public = f"{r}-public"
        return (
            "localhost",
            "127.0.0.1",
            public,
            f"{public}.{ns}",
            f"{public}.{ns}.svc.{domain}",
            f"*.{r}",
            f"*.{r}.{ns}",
            f"*.{r}.{ns}.svc.{domain}",
        )


@dataclass(frozen=True)
class Spec:
    profile: ProfileName
    layout: Layout
    nodes: tuple[Node, ...]
    clients: tuple[Client, ...]
    ui: UI | None = None
    ca: ExternalCA | None = None
    key_bits: int = 2048  # RSA only
    key_type: str = "rsa"  # rsa | ec (P-256: ~100x faster to make; CockroachDB, Go TLS and libpq accept it)
    # None: the profile's lifetimes (secure: CA 3660 days, leaves 365; docs: 365/365; docs-v19: 3660/1830).
    ca_days: int | None = None
    cert_days: int | None = None
    # [kubernetes]: kept as written (for the record and `export k8s`); its node is in `nodes` too.
    kubernetes: Kubernetes | None = None
    organization: str = DEFAULT_ORGANIZATION  # [subject] organization: the O= of every certificate
    # [ocsp] url: every leaf carries authorityInfoAccess = OCSP;URI:<url>, the responder CockroachDB asks
    # (security.ocsp.mode) about it; `crdb-certs ocsp serve` answers there.
    ocsp_url: str | None = None
    reload: str = DEFAULT_RELOAD  # [deploy] reload: run on each node once its files are in place


KEY_TYPES = ("rsa", "ec")
_TOP_KEYS = {
    "profile",
    "layout",
    "nodes",
    "clients",
    "ui",
    "ca",
    "key_type",
    "key_bits",
    "ca_days",
    "cert_days",
    "kubernetes",
    "subject",
    "ocsp",
    "deploy",
}


def default_spec_path() -> Path:
    return resource("certs.toml")


def load(path: Path | None = None, profile: str | None = None, key_type: str | None = None) -> Spec:
    """Read and validate a spec file (the embedded default when `path` is None)."""
    path = path or default_spec_path()
    try:
        raw = read_regular(path, MAX_SPEC + 1)  # never a FIFO or /dev/zero: they would block or never end
    except OSError as e:
        raise UserError(f"--config: cannot read {str(path)!r}: {e.strerror}") from None
    if len(raw) > MAX_SPEC:
        raise UserError(f"--config: {str(path)!r} is larger than {MAX_SPEC // 1024} KB: not a spec")
    try:
        text = raw.decode("utf-8-sig")  # an editor's byte order mark is not part of the TOML
    except UnicodeDecodeError:
        raise UserError(f"--config: {str(path)!r} is not UTF-8 text") from None
    try:
        data = tomli.loads(text)
    except tomli.TOMLDecodeError as e:
        raise UserError(f"{path}: not valid TOML: {e}") from None
    except RecursionError:  # past 400 levels of nested arrays and tables
        raise UserError(f"{path}: not a spec: arrays or tables nested too deeply") from None
    # Command-line options override the file's values.
    for key, value in (("profile", profile), ("key_type", key_type)):
        if value is not None:
            data[key] = value
    return parse(data, base=path.resolve().parent)


def parse(data: dict[str, Any], base: Path | None = None) -> Spec:
    """Validate a spec given as data; file paths in it are relative to `base` (the spec's folder)."""
    base = base or Path.cwd()
    _no_unknown_keys("spec", data, _TOP_KEYS)
    profile = ProfileName(validate.choice("profile", data.get("profile", ProfileName.SECURE), PROFILES))
    layout = Layout(validate.choice("layout", data.get("layout", Layout.STANDARD), LAYOUTS))
    nodes = tuple(_node(f"nodes[{i}]", n) for i, n in enumerate(_tables("nodes", data.get("nodes", []))))
    clients = tuple(
        _client(f"clients[{i}]", c) for i, c in enumerate(_tables("clients", data.get("clients", [])))
    )
    kubernetes = None
    if "kubernetes" in data:
        # The StatefulSet's node is a node like any other from here on (plan, bundles, audit); named
        # `node`, or after the release beside [[nodes]] of its own.
        kubernetes = _kubernetes(data["kubernetes"], node="node" if not nodes else None)
        nodes += (Node(kubernetes.node, (*kubernetes.statefulset_hosts, *kubernetes.hosts)),)
    if not nodes and not clients:
        raise SpecError("nodes", [], "is empty, and so is clients: there is nothing to issue")
    if kubernetes and any(n.name == kubernetes.node for n in nodes[:-1]):
        raise SpecError(
            "kubernetes.release",
            kubernetes.release,
            "is also the name of a [[nodes]] entry; rename that node",
        )
    _unique("nodes", "name", [n.name for n in nodes])
    _unique("clients", "user", [c.user for c in clients])
    if layout != Layout.STANDARD and any(c.user == "node" for c in clients):
        raise SpecError(
            "clients", "node", f"is made by the {layout} layout itself (client.node.crt); remove it"
        )
    ui = _ui(data["ui"], base) if "ui" in data else None
    ca = _external_ca(data["ca"], base) if "ca" in data else None
    key_type = validate.choice("key_type", data.get("key_type", "rsa"), KEY_TYPES)
    key_bits = validate.key_bits("key_bits", data.get("key_bits", 2048))
    if key_type == "ec" and "key_bits" in data:
        raise SpecError("key_bits", data["key_bits"], 'applies to RSA keys only (key_type = "ec" is P-256)')
    ca_days = _optional_days("ca_days", data.get("ca_days"))
    cert_days = _optional_days("cert_days", data.get("cert_days"))
    lifetimes = profiles.PROFILES[profile]
    leaf, ca_life = cert_days or lifetimes.cert_days, ca_days or lifetimes.ca_days
    if leaf > ca_life:
        # A leaf must not outlive its CA (cockroach cert refuses it too; openssl does not). Blame the value
        # the user wrote.
        if cert_days:
            raise SpecError("cert_days", cert_days, f"is longer than the CA's lifetime ({ca_life} days)")
        raise SpecError(
            "ca_days", ca_days, f"is shorter than the certificates' lifetime ({leaf} days, cert_days)"
        )
    if ca is not None and layout == Layout.SPLIT_CA:
        raise SpecError(
            "layout",
            layout,
            "cannot be combined with [ca], which gives one CA where split-ca needs two: use layout"
            ' "split-node", or have your CA sign both by `crdb-certs csr` and `crdb-certs import`',
        )
    ocsp_url = _ocsp(data["ocsp"]) if "ocsp" in data else None
    organization = _subject(data["subject"]) if "subject" in data else DEFAULT_ORGANIZATION
    reload = _deploy(data["deploy"]) if "deploy" in data else DEFAULT_RELOAD
    return Spec(
        profile,
        layout,
        nodes,
        clients,
        ui,
        ca,
        key_bits,
        key_type,
        ca_days,
        cert_days,
        kubernetes,
        organization,
        ocsp_url,
        reload,
    )


def _ocsp(raw: object) -> str:
    if not isinstance(raw, dict):
        raise SpecError("ocsp", raw, "is not a table")
    _no_unknown_keys("ocsp", raw, {"url"})
    return validate.ocsp_url("ocsp.url", raw.get("url"))


def _node(field: str, raw: dict[str, Any]) -> Node:
    _no_unknown_keys(field, raw, {"name", "hosts", "ssh", "certs_dir", "sql_addr"})
    name = validate.node_name(f"{field}.name", raw.get("name"))
    node = Node(name=name, hosts=_hosts(f"{field}.hosts", raw.get("hosts")))
    if "ssh" in raw:
        node = replace(node, ssh=validate.joined(*validate.ssh(f"{field}.ssh", raw["ssh"])))
    if "certs_dir" in raw:
        node = replace(node, certs_dir=validate.remote_dir(f"{field}.certs_dir", raw["certs_dir"]))
    if "sql_addr" in raw:
        node = replace(
            node, sql_addr=validate.joined(None, *validate.sql_addr(f"{field}.sql_addr", raw["sql_addr"]))
        )
    return node


def _deploy(raw: object) -> str:
    if not isinstance(raw, dict):
        raise SpecError("deploy", raw, "is not a table")
    _no_unknown_keys("deploy", raw, {"reload"})
    return validate.command_line("deploy.reload", raw.get("reload"))


def _kubernetes(raw: object, node: str | None) -> Kubernetes:
    if not isinstance(raw, dict):
        raise SpecError("kubernetes", raw, "is not a table")
    _no_unknown_keys("kubernetes", raw, {"release", "namespace", "cluster_domain", "hosts"})
    if "release" not in raw:
        raise SpecError(
            "kubernetes.release",
            None,
            "is required: the StatefulSet's name (the Helm chart's fullname, the operator's cluster name)",
        )
    # `<release>-public` is a DNS label too, so the release leaves room for "-public".
    release = validate.k8s_label("kubernetes.release", raw.get("release"), max_length=63 - len("-public"))
    namespace = validate.k8s_label("kubernetes.namespace", raw.get("namespace", "default"))
    domain = validate.domain("kubernetes.cluster_domain", raw.get("cluster_domain", "cluster.local"))
    found = Kubernetes(release, namespace, domain, node=node or release)
    for host in found.statefulset_hosts:  # each within DNS' limits (253 characters)
        validate.host("kubernetes.cluster_domain", host)
    if "hosts" in raw:
        hosts = _hosts("kubernetes.hosts", raw["hosts"])
        for i, host in enumerate(hosts):
            if host in found.statefulset_hosts:
                raise SpecError(f"kubernetes.hosts[{i}]", host, "is already one of the StatefulSet's names")
        found = replace(found, hosts=hosts)
    return found


def _client(field: str, raw: dict[str, Any]) -> Client:
    _no_unknown_keys(field, raw, {"user", "pkcs8"})
    pkcs8 = raw.get("pkcs8", False)
    if not isinstance(pkcs8, bool):
        raise SpecError(f"{field}.pkcs8", pkcs8, "is not true or false")
    return Client(user=validate.user(f"{field}.user", raw.get("user")), pkcs8=pkcs8)


def _ui(raw: object, base: Path) -> UI:
    if not isinstance(raw, dict):
        raise SpecError("ui", raw, "is not a table")
    _no_unknown_keys("ui", raw, {"hosts", "issuer", "cert", "key"})
    hosts = _hosts("ui.hosts", raw.get("hosts"))
    issuer = validate.choice("ui.issuer", raw.get("issuer", "node-ca"), UI_ISSUERS)
    if issuer != "import" and all(len(h) > MAX_CN for h in hosts):
        raise SpecError(
            "ui.hosts[0]",
            hosts[0],
            f"is longer than {MAX_CN} characters, the limit of the certificate's CN, and so is every other"
            " ui.hosts entry: list a shorter name or an IP address too",
        )
    if issuer != "import":
        for key in ("cert", "key"):
            if key in raw:
                raise SpecError(f"ui.{key}", raw[key], 'is only used with issuer = "import"')
        return UI(hosts, issuer)
    # The files are checked where they are used (imports.check_files): loading a spec reads no other file.
    return UI(hosts, issuer, _file("ui.cert", raw.get("cert"), base), _file("ui.key", raw.get("key"), base))


def _subject(raw: object) -> str:
    if not isinstance(raw, dict):
        raise SpecError("subject", raw, "is not a table")
    _no_unknown_keys("subject", raw, {"organization"})
    return validate.organization("subject.organization", raw.get("organization"))


def _external_ca(raw: object, base: Path) -> ExternalCA:
    if not isinstance(raw, dict):
        raise SpecError("ca", raw, "is not a table")
    _no_unknown_keys("ca", raw, {"cert", "key"})
    return ExternalCA(_file("ca.cert", raw.get("cert"), base), _file("ca.key", raw.get("key"), base))


def _file(field: str, raw: object, base: Path) -> Path:
    if not isinstance(raw, str) or not raw:
        raise SpecError(field, raw, "must be the path of a file")
    return (base / raw).resolve()  # whether it exists is checked where it is used (imports.check_files)


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
