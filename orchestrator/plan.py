"""The plan: a pure function from a spec (and what already exists) to an ordered list of steps.

The runner executes it, the script module prints it as bash, the audit checks against its expectations:
one plan, so doing, printing and auditing cannot drift apart. Paths are relative to the output folder.
The order is the docs' order: CA, CA database, then per certificate: config, key, CSR, signature.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field

from orchestrator import names
from orchestrator.certcheck import Expect
from orchestrator.profiles import PROFILES, Profile
from orchestrator.render import render
from orchestrator.spec import Spec

# ---------------------------------------------------------------------------------------------- steps


@dataclass(frozen=True)
class Run:
    """An openssl command, argv as the docs write it."""

    argv: tuple[str, ...]
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    keygen: bool = False  # independent of every other step but mkdir: may run in parallel


@dataclass(frozen=True)
class MakeDirs:
    paths: tuple[str, ...]


@dataclass(frozen=True)
class Write:
    """A file with known content: a config (here-document), `touch index.txt`, `echo '01' > serial.txt`."""

    path: str
    text: str


@dataclass(frozen=True)
class Chmod:
    mode: int
    path: str


@dataclass(frozen=True)
class Remove:
    patterns: tuple[str, ...]  # `rm -f`; a pattern may hold a `*`


@dataclass(frozen=True)
class Copy:
    src: str
    dst: str


@dataclass(frozen=True)
class Verify:
    """Read the certificate back and compare it with what was asked for."""

    expect: Expect


Step = Run | MakeDirs | Write | Chmod | Remove | Copy | Verify


@dataclass(frozen=True)
class Task:
    """The steps that make one artefact; the unit that is skipped when the artefact is up to date."""

    id: str
    title: str
    steps: tuple[Step, ...]
    expect: Expect | None = None  # the certificate it makes; fresh when that is present and right
    signer: str | None = None  # the id of the CA task whose key signs it (or whose database this is)
    creates: tuple[str, ...] = ()  # without expect: needed when one of these files is missing


@dataclass(frozen=True)
class Plan:
    spec: Spec
    tasks: tuple[Task, ...]
    # Each certs directory to hand out: folder -> files it must hold.
    bundles: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def steps(self) -> Iterator[Step]:
        for task in self.tasks:
            yield from task.steps

    def configs(self) -> dict[str, str]:
        return {s.path: s.text for s in self.steps if isinstance(s, Write) and s.path.endswith(".cnf")}

    def expectations(self) -> list[Expect]:
        return [t.expect for t in self.tasks if t.expect is not None]


@dataclass(frozen=True)
class State:
    """What already exists in the output folder, as the planner needs to know it."""

    fresh: frozenset[str] = frozenset()  # ids of tasks whose artefact is present and right
    present: frozenset[str] = frozenset()  # relative paths of files that exist


# ------------------------------------------------------------------------------------------------ CAs


@dataclass(frozen=True)
class CA:
    name: str  # ca | ca-client
    common_name: str

    @property
    def task_id(self) -> str:
        return self.name

    @property
    def cnf(self) -> str:
        return f"{self.name}.cnf"

    @property
    def key(self) -> str:
        return names.ca_key(self.name)

    @property
    def cert(self) -> str:
        return f"{names.CERTS_DIR}/{self.name}.crt"

    @property
    def database(self) -> str:  # the docs' names for the main CA; a prefix for any other
        return "index.txt" if self.name == "ca" else f"{self.name}.index.txt"

    @property
    def serial(self) -> str:
        return "serial.txt" if self.name == "ca" else f"{self.name}.serial.txt"


NODE_CA = CA("ca", "Cockroach CA")
CLIENT_CA = CA("ca-client", "Cockroach Client CA")


def build(spec: Spec, state: State | None = None) -> Plan:
    """The plan for `spec`; with `state`, only what is missing or wrong (and whatever depends on it)."""
    state = state or State()
    profile = PROFILES[spec.profile]
    client_ca = CLIENT_CA if spec.layout == "split-ca" else NODE_CA
    cas = [NODE_CA] + ([CLIENT_CA] if client_ca is not NODE_CA else [])
    cert_days = spec.cert_days or profile.cert_days
    ca_days = spec.ca_days or profile.ca_days

    tasks: list[Task] = [Task("dirs", "directories", (MakeDirs(_dirs(spec)),))]
    for ca in cas:
        tasks.append(_ca_task(ca, profile, ca_days, cert_days, spec.key_bits, state))
        tasks.append(_database_task(ca, profile))
    for node in spec.nodes:
        tasks.append(_node_task(node.name, node.hosts, spec, profile, cert_days))
    for i, client in enumerate(spec.clients):
        key = f"{names.CERTS_DIR}/{names.client_key(client.user)}"
        cert = f"{names.CERTS_DIR}/{names.client_cert(client.user)}"
        first = i == 0
        tasks.append(
            _client_task(
                f"client:{client.user}",
                client.user,
                key,
                cert,
                client_ca,
                profile,
                cert_days,
                spec.key_bits,
                first_user=first,
            )
        )
    if spec.layout != "standard":
        for node in spec.nodes:
            where = names.node_dir(node.name)
            tasks.append(
                _client_task(
                    f"client-node:{node.name}",
                    "node",
                    f"{where}/client.node.key",
                    f"{where}/client.node.crt",
                    client_ca,
                    profile,
                    cert_days,
                    spec.key_bits,
                    first_user=False,
                    request_name=f"client-node.{node.name}",
                )
            )
    # openssl ca -outdir certs/ leaves a <serial>.pem copy of every certificate: the docs remove them.
    tasks.append(Task("cleanup", "remove openssl's .pem copies", (Remove((f"{names.CERTS_DIR}/*.pem",)),)))
    bundles = _bundles(spec, [ca.name for ca in cas])
    tasks.append(_bundle_task(bundles))
    return Plan(spec, tuple(_keep_needed(tasks, state)), bundles)


def _keep_needed(tasks: list[Task], state: State) -> Iterator[Task]:
    """Drop the tasks whose artefact is fresh, unless the CA that signs it is being made again.

    A fresh task keeps only its config steps: configs are always rendered, so the folder shows the spec.
    """
    redone: set[str] = set()
    for task in tasks:
        if task.expect is not None:
            needed = task.id not in state.fresh or task.signer in redone
        elif task.creates:
            needed = task.signer in redone or any(p not in state.present for p in task.creates)
        else:
            needed = True
        if needed:
            redone.add(task.id)
            yield task
        else:
            configs = tuple(s for s in task.steps if isinstance(s, Write) and s.path.endswith(".cnf"))
            yield Task(task.id, task.title, configs)


def _dirs(spec: Spec) -> tuple[str, ...]:
    return (
        names.CERTS_DIR,
        names.SAFE_DIR,
        names.REQUESTS_DIR,
        *(names.node_dir(n.name) for n in spec.nodes),
    )


def _ca_task(ca: CA, profile: Profile, ca_days: int, cert_days: int, bits: int, state: State) -> Task:
    cnf_text = render(
        "ca.cnf.j2", profile=profile.name, ca=ca, cert_days=ca_days if profile.days_on_sign else cert_days
    )
    steps: list[Step] = [Write(ca.cnf, cnf_text)]
    if ca.key not in state.present:  # an existing CA key is never replaced
        steps += _keygen(ca.key, bits)
    steps.append(
        Run(
            (
                "openssl",
                "req",
                "-new",
                "-x509",
                "-config",
                ca.cnf,
                "-key",
                ca.key,
                "-out",
                ca.cert,
                "-days",
                str(ca_days),
                "-batch",
            ),
            reads=(ca.cnf, ca.key),
            writes=(ca.cert,),
        )
    )
    expect = Expect(
        cert=ca.cert,
        key=ca.key,
        issuer=None,
        subject=(("O", "Cockroach"), ("CN", ca.common_name)),
        is_ca=True,
    )
    steps.append(Verify(expect))
    return Task(ca.task_id, f"CA {ca.cert}", tuple(steps), expect)


def _database_task(ca: CA, profile: Profile) -> Task:
    """The docs' reset of the CA database; also the ca.cnf text needs it before any `openssl ca`."""
    steps: list[Step] = [Remove((ca.database, ca.serial)), Write(ca.database, "")]
    if not profile.random_serials:
        steps.append(Write(ca.serial, "01\n"))
    creates = (ca.database,) if profile.random_serials else (ca.database, ca.serial)
    return Task(
        f"{ca.name}-database", f"CA database {ca.database}", tuple(steps), signer=ca.task_id, creates=creates
    )


def _node_task(name: str, hosts: tuple[str, ...], spec: Spec, profile: Profile, cert_days: int) -> Task:
    where = names.node_dir(name)
    key, cert = f"{where}/{names.NODE_KEY}", f"{where}/{names.NODE_CERT}"
    cnf, csr = f"{names.REQUESTS_DIR}/node.{name}.cnf", f"{names.REQUESTS_DIR}/node.{name}.csr"
    dns = tuple(h for h in hosts if not _is_ip(h))
    ips = tuple(h for h in hosts if _is_ip(h))
    # In the split layouts node.crt only serves; client.node.crt is what a node presents when it dials.
    eku = ("serverAuth",) if spec.layout != "standard" and profile.extfile else ("serverAuth", "clientAuth")
    cnf_text = render(
        "node.cnf.j2",
        profile=profile.name,
        common_name=profile.node_cn,
        sans=[("DNS", h) for h in dns] + [("IP", ip) for ip in ips],
        section="node_certificate",
        eku=",".join(eku),
    )
    sign = _sign(NODE_CA, profile, "signing_node_req", csr, cert, cnf, cert_days)
    subject = (("O", "Cockroach"),) + ((("CN", profile.node_cn),) if profile.node_cn else ())
    expect = Expect(cert=cert, key=key, issuer=NODE_CA.cert, subject=subject, dns=dns, ips=ips, eku=eku)
    steps = (
        Write(cnf, cnf_text),
        *_keygen(key, spec.key_bits),
        _request(cnf, key, csr, ascii_only=True),
        *sign,
        Verify(expect),
    )
    return Task(f"node:{name}", f"node {name}", steps, expect, signer=NODE_CA.task_id)


def _client_task(
    task_id: str,
    user: str,
    key: str,
    cert: str,
    ca: CA,
    profile: Profile,
    cert_days: int,
    bits: int,
    first_user: bool,
    request_name: str | None = None,
) -> Task:
    request_name = request_name or f"client.{user}"
    cnf, csr = f"{names.REQUESTS_DIR}/{request_name}.cnf", f"{names.REQUESTS_DIR}/{request_name}.csr"
    root_san = first_user and profile.first_user_root_san
    cnf_text = render(
        "client.cnf.j2", profile=profile.name, common_name=user, root_san=root_san, first_user=first_user
    )
    sign = _sign(ca, profile, "signing_client_req", csr, cert, None, cert_days)
    expect = Expect(
        cert=cert,
        key=key,
        issuer=ca.cert,
        subject=(("O", "Cockroach"), ("CN", user)),
        dns=("root",) if root_san else (),
        eku=("clientAuth",),
    )
    steps = (
        Write(cnf, cnf_text),
        *_keygen(key, bits),
        _request(cnf, key, csr, ascii_only=user.isascii()),
        *sign,
        Verify(expect),
    )
    return Task(task_id, f"client {user}" if user != "node" else f"{cert}", steps, expect, signer=ca.task_id)


def _keygen(key: str, bits: int) -> tuple[Step, ...]:
    return (
        Run(("openssl", "genrsa", "-out", key, str(bits)), writes=(key,), keygen=True),
        Chmod(names.KEY_MODE, key),
    )


def _request(cnf: str, key: str, csr: str, ascii_only: bool) -> Run:
    # -utf8 only when a value needs it, so that ASCII requests stay the docs' command exactly.
    utf8 = () if ascii_only else ("-utf8",)
    return Run(
        ("openssl", "req", "-new", *utf8, "-config", cnf, "-key", key, "-out", csr, "-batch"),
        reads=(cnf, key),
        writes=(csr,),
    )


def _sign(
    ca: CA, profile: Profile, section: str, csr: str, cert: str, extfile: str | None, cert_days: int
) -> tuple[Step, ...]:
    steps: list[Step] = []
    if profile.random_serials:
        # 128 random bits per certificate, as `cockroach cert` does: no serial is ever issued twice.
        steps.append(Run(("openssl", "rand", "-out", ca.serial, "-hex", "16"), writes=(ca.serial,)))
    argv = [
        "openssl",
        "ca",
        "-config",
        ca.cnf,
        "-keyfile",
        ca.key,
        "-cert",
        ca.cert,
        "-policy",
        "signing_policy",
        "-extensions",
        section,
    ]
    reads = [ca.cnf, ca.key, ca.cert, csr, ca.database, ca.serial]
    if profile.extfile and extfile:
        argv[-2:] = ["-extfile", extfile, "-extensions", "node_certificate"]
        reads.append(extfile)
    argv += ["-out", cert, "-outdir", f"{names.CERTS_DIR}/", "-in", csr]
    if profile.days_on_sign:
        argv += ["-days", str(cert_days)]
    if profile.notext:
        argv.append("-notext")
    argv.append("-batch")
    steps.append(Run(tuple(argv), reads=tuple(reads), writes=(cert, ca.database, ca.serial)))
    return tuple(steps)


def _bundles(spec: Spec, ca_names: list[str]) -> dict[str, tuple[str, ...]]:
    ca_files = tuple(f"{ca}.crt" for ca in ca_names)
    node_files: tuple[str, ...] = (names.NODE_CERT, names.NODE_KEY)
    if spec.layout != "standard":
        node_files += ("client.node.crt", "client.node.key")
    client_files = tuple(
        f for c in spec.clients for f in (names.client_cert(c.user), names.client_key(c.user))
    )
    bundles = {names.node_dir(n.name): ca_files + node_files for n in spec.nodes}
    # One node: certs/ is also that node's certs dir, as in the docs (cockroach start-single-node).
    single = node_files if len(spec.nodes) == 1 else ()
    bundles[names.CERTS_DIR] = ca_files + single + client_files
    return bundles


def _bundle_task(bundles: dict[str, tuple[str, ...]]) -> Task:
    """Copy the CA certificates into each node's folder (and the only node's files into certs/)."""
    steps: list[Step] = []
    for folder, files in bundles.items():
        if folder == names.CERTS_DIR:
            node_folder = next((f for f in bundles if f != names.CERTS_DIR), None)
            steps += [
                Copy(f"{node_folder}/{f}", f"{folder}/{f}")
                for f in files
                if node_folder and f.startswith(("node.", "client.node."))
            ]
        else:
            steps += [Copy(f"{names.CERTS_DIR}/{f}", f"{folder}/{f}") for f in files if f.startswith("ca")]
    return Task("bundles", "assemble the certs directories", tuple(steps))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
