"""The plan: a pure function from a spec (and what already exists) to an ordered list of steps.

The runner executes it, the script module prints it as bash, the audit checks against its expectations:
one plan, so doing, printing and auditing cannot drift apart. Paths are relative to the output folder.
The order is the docs' order: CA, CA database, then per certificate: config, key, CSR, signature.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import PurePosixPath

from orchestrator import names, record
from orchestrator.certcheck import Expect
from orchestrator.errors import UserError
from orchestrator.profiles import PROFILES, Profile
from orchestrator.record import Provenance
from orchestrator.render import render
from orchestrator.spec import UI, ExternalCA, Spec

UI_TASK = "ui"  # the id of the DB Console certificate's task (`renew --ui` names it)

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
    """`cp -p`; with a mode (keys), the copy is made private first and then given that mode."""

    src: str  # relative to the output folder, or absolute for a file given in the spec (an import)
    dst: str
    mode: int | None = None


@dataclass(frozen=True)
class Append:
    """`cat src >> dst`: how a CA file becomes a rotation bundle (the new CA first, the old one after it)."""

    src: str
    dst: str


@dataclass(frozen=True)
class Verify:
    """Read the certificate back and compare it with what was asked for."""

    expect: Expect


@dataclass(frozen=True)
class RandomSerial:
    """128 random bits (hex) into a CA's serial file before a signature, as `cockroach cert` draws them:
    no serial is ever issued twice. The script prints `openssl rand -out F -hex 16`; the runner draws
    the same from Python's CSPRNG, saving a process per certificate."""

    path: str


Step = Run | MakeDirs | Write | Chmod | Remove | Copy | Append | Verify | RandomSerial


def reads(step: Step) -> tuple[str, ...]:
    """The files a step reads (relative to the output folder, or absolute for a file named in the spec)."""
    match step:
        case Run(reads=paths):
            return paths
        case Copy(src=src):
            return (src,)
        case Append(src=src, dst=dst):
            return (src, dst)
        case Verify(expect=e):
            return tuple(p for p in (e.cert, e.key, e.issuer) if p)
    return ()


def writes(step: Step) -> tuple[str, ...]:
    match step:
        case Run(writes=paths):
            return paths
        case Write(path=path) | Copy(dst=path) | Append(dst=path) | RandomSerial(path=path):
            return (path,)
    return ()


def is_config(step: Step) -> bool:
    """A file rendered from the spec alone (an openssl config, the folder's record): written first, and
    only where it differs."""
    return isinstance(step, Write) and (step.path.endswith(".cnf") or step.path == names.RECORD)


@dataclass(frozen=True)
class Task:
    """The steps that make one artefact; the unit that is skipped when the artefact is up to date."""

    id: str
    title: str
    steps: tuple[Step, ...]
    expect: Expect | None = None  # the certificate it makes; fresh when that is present and right
    signer: str | None = None  # the id of the CA task whose key signs it (or whose database this is)
    creates: tuple[str, ...] = ()  # without expect: needed when one of these files is missing
    # A CA database whose loss a reset cannot repair: with counted serials (docs profiles) a reset would
    # number the next certificate 01 again under the same CA, reusing an issuer+serial pair.
    irreplaceable: bool = False


@dataclass(frozen=True)
class Plan:
    spec: Spec
    tasks: tuple[Task, ...]
    # Each certs directory to hand out: folder -> files it must hold.
    bundles: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Files and folders the run takes away (after keeping them in the backup): a node's files in certs/
    # once certs/ is no longer that node's folder, and what `issue --prune` removes.
    drop: tuple[str, ...] = ()

    @property
    def steps(self) -> Iterator[Step]:
        for task in self.tasks:
            yield from task.steps

    def configs(self) -> dict[str, str]:
        return {s.path: s.text for s in self.steps if isinstance(s, Write) and s.path.endswith(".cnf")}

    def expectations(self) -> list[Expect]:
        return [t.expect for t in self.tasks if t.expect is not None]

    def leaves(self) -> list[Task]:
        """The certificates crdb-certs signs (node, client, client.node, UI): not the CAs."""
        return [t for t in self.tasks if t.expect is not None and t.signer is not None]

    def work(self) -> list[Task]:
        """The tasks that make a certificate (not only render its config)."""
        return [t for t in self.tasks if t.expect is not None and not all(is_config(s) for s in t.steps)]

    def other_writes(self) -> list[str]:
        """The files the plan writes outside `work()`: configs that differ from the spec, copies into the
        certs directories, CA databases (what `issue --check` reports besides certificates)."""
        making = {t.id for t in self.work()}
        found = (p for t in self.tasks if t.id not in making for s in t.steps for p in writes(s))
        return list(dict.fromkeys(found))


@dataclass(frozen=True)
class State:
    """What already exists in the output folder, as the planner needs to know it."""

    fresh: frozenset[str] = frozenset()  # ids of tasks whose artefact is present and right
    present: frozenset[str] = frozenset()  # relative paths of files that exist
    current: frozenset[str] = frozenset()  # configs whose file holds what would be written: not rewritten
    # rotate-ca: names of the CAs (ca, ca-client, ca-ui) to replace by a new key and certificate; the old
    # certificate stays in the CA file after the new one, so that leaves of either are trusted meanwhile.
    rotate: frozenset[str] = frozenset()
    # rotate-ca again after a run killed once it had put the new CA key in place (and kept the old one):
    # names of the CAs whose new key is there, so their new certificate is made with it.
    resumed: frozenset[str] = frozenset()
    # renew --keep-keys: ids of the certificate tasks that sign a new request made from the existing key.
    keep_keys: frozenset[str] = frozenset()
    # When each existing CA certificate (by task id) expires, and when the folder was looked at: a leaf
    # signed by a CA with less time left than a leaf's lifetime ends with its CA (secure profile).
    ca_ends: dict[str, datetime] = field(default_factory=dict)
    now: datetime | None = None
    # Whose CA signs the folder, as its record says (None: no record). A folder signed elsewhere (csr +
    # import) has no CA crdb-certs could sign with, so no plan makes or signs anything there.
    provenance: Provenance | None = None


# ------------------------------------------------------------------------------------------------ CAs


@dataclass(frozen=True)
class CA:
    name: str  # ca | ca-client | ca-ui: the certificate is certs/<name>.crt
    common_name: str
    external: ExternalCA | None = None  # the user's own CA: its key stays where it is

    @property
    def task_id(self) -> str:
        return self.name

    @property
    def cnf(self) -> str:
        return f"{self.name}.cnf"

    @property
    def key(self) -> str:
        return str(self.external.key) if self.external else names.ca_key(self.name)

    @property
    def cert(self) -> str:
        return f"{names.CERTS_DIR}/{self.name}.crt"

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
    client = CA("ca-client", "Cockroach Client CA") if spec.layout == "split-ca" else node
    ui = None
    if spec.ui and spec.ui.issuer != "import":
        ui = CA("ca-ui", "Cockroach UI CA") if spec.ui.issuer == "ui-ca" else node
    return Signers(node, client, ui)


def build(spec: Spec, state: State | None = None) -> Plan:
    """The plan for `spec`; with `state`, only what is missing or wrong (and whatever depends on it)."""
    state = state or State()
    profile = PROFILES[spec.profile]
    cas = signers(spec)
    days = _lifetimes(spec, profile, cas, state)

    elsewhere = state.provenance is Provenance.SIGNED_ELSEWHERE
    tasks: list[Task] = [Task("dirs", "directories", (MakeDirs(_dirs(spec)),))]
    for ca in [] if elsewhere else cas.all:
        tasks.append(_ca_task(ca, profile, days, spec, state))
        database = _database_task(ca, profile)
        if ca.name in state.rotate:
            # The new CA keeps the database, so its serials go on from the old CA's: the docs' serials
            # count 01, 02, … and a second 01 under the same CA name is a reused issuer and serial
            # (which browsers refuse on the DB Console). Only a missing database is made anew.
            database = replace(database, signer=None)
        tasks.append(database)
    for node in spec.nodes:
        task_id = f"node:{node.name}"
        new_key = task_id not in state.keep_keys
        tasks.append(_node_task(node.name, node.hosts, spec, profile, cas.node, days, new_key))
    for i, client in enumerate(spec.clients):
        cert = f"{names.CERTS_DIR}/{names.client_cert(client.user)}"
        request = Request(f"client.{client.user}", client.user, cert, first_user=i == 0, pkcs8=client.pkcs8)
        task_id = f"client:{client.user}"
        new_key = task_id not in state.keep_keys
        tasks.append(_client_task(task_id, request, cas.client, profile, days, spec, new_key))
    if spec.layout != "standard":
        for node in spec.nodes:
            cert = f"{names.node_dir(node.name)}/client.node.crt"
            request = Request(f"client-node.{node.name}", "node", cert)
            task_id = f"client-node:{node.name}"
            new_key = task_id not in state.keep_keys
            tasks.append(_client_task(task_id, request, cas.client, profile, days, spec, new_key))
    if spec.ui:
        tasks.append(_ui_task(spec.ui, cas.ui, profile, days, spec, UI_TASK not in state.keep_keys))
    # openssl ca -outdir certs/ leaves a <serial>.pem copy of every certificate: the docs remove them.
    tasks.append(Task("cleanup", "remove openssl's .pem copies", (Remove((f"{names.CERTS_DIR}/*.pem",)),)))
    bundles = _bundles(spec, cas)
    tasks.append(_bundle_task(bundles, ui_home(spec)))
    tasks.append(_record_task(spec, state.provenance if elsewhere else None))
    return Plan(spec, tuple(_keep_needed(tasks, state)), bundles)


def _record_task(spec: Spec, provenance: Provenance | None) -> Task:
    return Task("record", "the folder's record", (Write(names.RECORD, record.of(spec, provenance)),))


def build_finish(spec: Spec, state: State, cas: frozenset[str]) -> Plan:
    """`rotate-ca --finish`: each CA file in `cas` (ca, ca-client, ca-ui) keeps only its first certificate,
    the new CA, and the certs directories get the result. Everything else is planned as by `build`."""
    full, whole = build(spec, state), build(spec)
    finish: list[Task] = []
    for task in whole.tasks:
        if task.id in cas and task.expect is not None:
            only_new = f"{names.REQUESTS_DIR}/{task.id}.new.crt"
            steps: tuple[Step, ...] = (
                Run(
                    ("openssl", "x509", "-in", task.expect.cert, "-out", only_new),
                    reads=(task.expect.cert,),
                    writes=(only_new,),
                ),
                Copy(only_new, task.expect.cert),
                Remove((only_new,)),  # a scratch copy: never left in requests/
                Verify(task.expect),
            )
            finish.append(Task(f"{task.id}:finish", f"{task.expect.cert}: the new CA only", steps))
    # Before the certs directories are assembled: all of them, since every CA file changes.
    at = next(i for i, t in enumerate(full.tasks) if t.id == "bundles")
    bundles = next(t for t in whole.tasks if t.id == "bundles")
    tasks = [*full.tasks[:at], *finish, bundles, *full.tasks[at + 1 :]]
    return Plan(spec, tuple(tasks), full.bundles, full.drop)


def build_requests(spec: Spec, state: State) -> Plan:
    """`crdb-certs csr`: keys, request configs and CSRs for every certificate, for a CA that crdb-certs may
    not touch. A key that already exists is kept (its CSR was sent already)."""
    full = build(spec)
    tasks = [full.tasks[0]]  # the directories
    for task in full.tasks:
        if task.expect is None or task.signer is None or task.expect.key in state.present:
            continue
        steps = tuple(s for s in task.steps if not isinstance(s, Verify) and not _is_signing(s))
        tasks.append(Task(task.id, task.title, steps))
    sheet = Write(names.REQUESTS_SHEET, requests_sheet(full))
    tasks.append(Task("requests-sheet", f"what each request needs ({names.REQUESTS_SHEET})", (sheet,)))
    tasks.append(_record_task(spec, Provenance.SIGNED_ELSEWHERE))
    return Plan(spec, tuple(tasks), {})


def requests_sheet(full: Plan) -> str:
    """What the outside CA must put into each certificate, read from the expectations `import` checks
    the returned certificates against (imports.check_returned): one source for asking and checking."""
    lines = [
        "# What each certificate signing request in this folder needs (made by `crdb-certs csr`).",
        "# Return each certificate under the name shown, in one folder with the CA certificate(s), then run",
        "# `crdb-certs import <that folder>`: it checks every line below before it installs anything.",
    ]
    key_usage = "digitalSignature" + (", keyEncipherment" if full.spec.key_type == "rsa" else "")
    for task in full.tasks:
        expect = task.expect
        if expect is None or task.signer is None:
            continue
        csr = PurePosixPath(request_of(task))
        dns, ips = ", ".join(f"DNS:{d}" for d in expect.dns), ", ".join(f"IP:{ip}" for ip in expect.ips)
        lines += [
            "",
            f"{csr.name}  ->  return as {csr.stem}.crt",
            f"  signed by:          the CA returned as {PurePosixPath(expect.issuer or '').name}",
            "  subject:            " + ", ".join(f"{k}={v}" for k, v in expect.subject),
            "  subjectAltName:     " + (", ".join(n for n in (dns, ips) if n) or "(none)"),
            "  basicConstraints:   critical, CA:FALSE",
            f"  keyUsage:           critical, {key_usage} (never keyCertSign or cRLSign)",
            "  extendedKeyUsage:   " + ", ".join(expect.needed_eku),
        ]
    for ca in signers(full.spec).all:
        lines += [
            "",
            f"the CA certificate to trust  ->  return as {ca.name}.crt (that CA first, then each issuer up",
            "  to the self-signed root: OpenSSL and libpq clients need the root)",
        ]
    return "\n".join(lines) + "\n"


def build_import(spec: Spec, returned: dict[str, str]) -> Plan:
    """`crdb-certs import`: the certificates an outside CA returned (`returned`: CA name or task id ->
    file, checked by imports.check_returned), installed where `issue` would have made them, and the
    certs directories assembled."""
    full = build(spec)
    tasks = [full.tasks[0]]
    for ca in signers(spec).all:
        tasks.append(Task(ca.task_id, f"CA {ca.cert} (yours)", (Copy(returned[ca.name], ca.cert),)))
    for task in full.tasks:
        if task.expect is not None and task.signer is not None:
            tasks.append(Task(task.id, task.title, (Copy(returned[task.id], task.expect.cert),)))
        elif task.id in (UI_TASK, "bundles"):  # an imported UI certificate is installed as `issue` would
            tasks.append(task)
    tasks.append(_record_task(spec, Provenance.SIGNED_ELSEWHERE))
    return Plan(spec, tuple(tasks), full.bundles)


def request_of(task: Task) -> str:
    """The CSR a certificate's task writes (requests/<name>.csr)."""
    return next(s.writes[0] for s in task.steps if isinstance(s, Run) and s.argv[1] == "req")


def _is_signing(step: Step) -> bool:
    return isinstance(step, RandomSerial) or (isinstance(step, Run) and step.argv[1] == "ca")


@dataclass(frozen=True)
class Lifetimes:
    ca: int
    cert: int
    caps: dict[str, str] = field(default_factory=dict)  # CA name -> `openssl ca -enddate` for its leaves


def _lifetimes(spec: Spec, profile: Profile, cas: Signers, state: State) -> Lifetimes:
    """The profile's (or the spec's) lifetimes; in the secure profile a leaf never outlives its CA: under
    a CA that ends sooner than a new leaf would, the leaf ends with the CA (`cockroach cert` refuses
    such a leaf instead; openssl would sign it)."""
    days = Lifetimes(spec.ca_days or profile.ca_days, spec.cert_days or profile.cert_days)
    if not profile.cap_at_ca or state.now is None:
        return days
    caps = {}
    for ca in cas.all:
        end = state.ca_ends.get(ca.task_id)
        kept = ca.task_id in state.fresh and ca.name not in state.rotate
        if kept and end is not None and state.now + timedelta(days=days.cert) > end:
            caps[ca.name] = end.strftime("%Y%m%d%H%M%SZ")
    return Lifetimes(days.ca, days.cert, caps)


@dataclass(frozen=True)
class Request:
    """A client certificate to make: its file stem in requests/, its user, where the certificate goes."""

    name: str
    user: str
    cert: str
    first_user: bool = False
    pkcs8: bool = False

    @property
    def key(self) -> str:
        return names.key_for(self.cert)


def _keep_needed(tasks: list[Task], state: State) -> Iterator[Task]:
    """Drop the tasks whose artefact is fresh, unless the CA that signs it is being made again.

    A fresh task keeps only its config steps whose file differs (State.current): the folder shows the spec.
    Copies into the certs directories are kept only where the file copied is made again, or its copy is
    missing or differs (State.present leaves those out): adding a node copies ca.crt into that node's
    folder, not into the other 200.
    """
    redone: set[str] = set()
    made_by = {path: task.id for task in tasks for step in task.steps for path in writes(step)}
    for task in tasks:
        if any(isinstance(s, Copy) for s in task.steps) and task.expect is None:
            copies = tuple(
                s
                for s in task.steps
                if not isinstance(s, Copy) or made_by.get(s.src) in redone or s.dst not in state.present
            )
            if copies:
                redone.add(task.id)
            yield Task(task.id, task.title, copies)  # kept when empty: build_finish replaces it
            continue
        if task.expect is not None:
            needed = task.id not in state.fresh or task.signer in redone
        elif task.creates:
            missing = [p for p in task.creates if p not in state.present]
            needed = task.signer in redone or bool(missing)
            if missing and task.irreplaceable and task.signer not in redone:
                raise UserError(
                    f"{missing[0]}: missing, but its CA still exists: restore it from a backup (a new one "
                    "would issue serial 01 again under the same CA)"
                )
        else:  # a file rendered from the spec alone (the record): like a config, written where it differs
            needed = not all(is_config(s) for s in task.steps)
        if needed:
            redone.add(task.id)
            yield task
        else:
            configs = tuple(s for s in task.steps if is_config(s) and writes(s)[0] not in state.current)
            yield Task(task.id, task.title, configs)


def _dirs(spec: Spec) -> tuple[str, ...]:
    return (
        names.CERTS_DIR,
        names.SAFE_DIR,
        names.REQUESTS_DIR,
        *(names.node_dir(n.name) for n in spec.nodes),
    )


def _ca_task(ca: CA, profile: Profile, days: Lifetimes, spec: Spec, state: State) -> Task:
    cnf_text = render(
        "ca.cnf.j2", profile=profile.name, ca=ca, cert_days=days.ca if profile.days_on_sign else days.cert
    )
    if ca.external:
        # The user's CA: its certificate is copied in, its key is only ever read where it lies.
        expect = Expect(cert=ca.cert, key=ca.key, issuer=None, subject=ca.external.subject, is_ca=True)
        steps: tuple[Step, ...] = (
            Write(ca.cnf, cnf_text),
            Copy(str(ca.external.cert), ca.cert),
            Verify(expect),
        )
        return Task(ca.task_id, f"CA {ca.cert} (yours)", steps, expect)
    rotate = ca.name in state.rotate
    # An existing CA key is never replaced, but by rotate-ca (the runner keeps the old one in the backup).
    new_key = (rotate and ca.name not in state.resumed) or ca.key not in state.present
    expect = Expect(
        cert=ca.cert,
        key=ca.key,
        issuer=ca.cert,
        subject=(("O", "Cockroach"), ("CN", ca.common_name)),
        is_ca=True,
    )
    # rotate-ca: the old CA certificate is set aside, and appended to the new one once that is made.
    previous = f"{names.REQUESTS_DIR}/{ca.name}.old.crt"
    steps = (
        Write(ca.cnf, cnf_text),
        *((Copy(ca.cert, previous),) if rotate else ()),
        *(_keygen(ca.key, spec) if new_key else ()),
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
                str(days.ca),
                "-batch",
            ),
            reads=(ca.cnf, ca.key),
            writes=(ca.cert,),
        ),
        # (`previous` is a scratch copy: removed once appended, never left in requests/)
        *((Append(previous, ca.cert), Remove((previous,))) if rotate else ()),
        Verify(expect),
    )
    title = f"CA {ca.cert}" + (" (new CA first, the old one after it)" if rotate else "")
    return Task(ca.task_id, title, steps, expect)


def _database_task(ca: CA, profile: Profile) -> Task:
    """The docs' reset of the CA database, done when the CA is new or its database is missing."""
    steps: list[Step] = [Remove((ca.database, ca.serial)), Write(ca.database, "")]
    if not profile.random_serials:
        steps.append(Write(ca.serial, "01\n"))
    creates = (ca.database,) if profile.random_serials else (ca.database, ca.serial)
    return Task(
        f"{ca.name}-database",
        f"CA database {ca.database}",
        tuple(steps),
        signer=ca.task_id,
        creates=creates,
        irreplaceable=not profile.random_serials,
    )


def _node_task(
    name: str, hosts: tuple[str, ...], spec: Spec, profile: Profile, ca: CA, days: Lifetimes, new_key: bool
) -> Task:
    where = names.node_dir(name)
    key, cert = f"{where}/{names.NODE_KEY}", f"{where}/{names.NODE_CERT}"
    cnf, csr = f"{names.REQUESTS_DIR}/node.{name}.cnf", f"{names.REQUESTS_DIR}/node.{name}.csr"
    # In the split layouts node.crt only serves; client.node.crt is what a node presents when it dials.
    # The docs' profiles sign with the docs' ca.cnf, which writes both usages whatever the layout.
    needed = ("serverAuth",) if spec.layout != "standard" else ("serverAuth", "clientAuth")
    eku = needed if profile.extfile else ("serverAuth", "clientAuth")
    dns, ips = split_hosts(hosts)
    cnf_text = render(
        "node.cnf.j2",
        profile=profile.name,
        common_name=profile.node_cn,
        sans=_sans(dns, ips),
        section="node_certificate",
        eku=",".join(eku),
    )
    extfile = (cnf, "node_certificate") if profile.extfile else None
    subject = (("O", "Cockroach"),) + ((("CN", profile.node_cn),) if profile.node_cn else ())
    expect = Expect(
        cert=cert,
        key=key,
        issuer=ca.cert,
        subject=subject,
        dns=dns,
        ips=ips,
        eku=eku,
        role_eku=needed,
        key_kind=_key_kind(spec),
    )
    steps = (
        Write(cnf, cnf_text),
        *(_keygen(key, spec) if new_key else ()),
        _request(cnf, key, csr, ascii_only=True),
        *_sign(ca, profile, "signing_node_req", csr, cert, extfile, days),
        Verify(expect),
    )
    return Task(f"node:{name}", f"node {name}", steps, expect, signer=ca.task_id)


def _client_task(
    task_id: str,
    request: Request,
    ca: CA,
    profile: Profile,
    days: Lifetimes,
    spec: Spec,
    new_key: bool = True,
) -> Task:
    cnf, csr = f"{names.REQUESTS_DIR}/{request.name}.cnf", f"{names.REQUESTS_DIR}/{request.name}.csr"
    root_san = request.first_user and profile.first_user_root_san
    cnf_text = render(
        "client.cnf.j2",
        profile=profile.name,
        common_name=request.user,
        root_san=root_san,
        first_user=request.first_user,
    )
    expect = Expect(
        cert=request.cert,
        key=request.key,
        issuer=ca.cert,
        subject=(("O", "Cockroach"), ("CN", request.user)),
        dns=("root",) if root_san else (),
        eku=("clientAuth",),
        key_kind=_key_kind(spec),
    )
    steps: tuple[Step, ...] = (
        Write(cnf, cnf_text),
        *(_keygen(request.key, spec) if new_key else ()),
        _request(cnf, request.key, csr, ascii_only=request.user.isascii()),
        *_sign(ca, profile, "signing_client_req", csr, request.cert, None, days),
        Verify(expect),
    )
    if request.pkcs8:
        # What `cockroach cert create-client --also-generate-pkcs8-key` writes, for Java/JDBC clients.
        pk8 = request.key + ".pk8"
        steps += (
            Run(
                (
                    "openssl",
                    "pkcs8",
                    "-topk8",
                    "-inform",
                    "PEM",
                    "-outform",
                    "DER",
                    "-in",
                    request.key,
                    "-out",
                    pk8,
                    "-nocrypt",
                ),
                reads=(request.key,),
                writes=(pk8,),
            ),
            Chmod(names.KEY_MODE, pk8),
        )
    title = f"client {request.user}" if request.user != "node" else request.cert
    return Task(task_id, title, steps, expect, signer=ca.task_id)


def _ui_task(
    ui: UI, ca: CA | None, profile: Profile, days: Lifetimes, spec: Spec, new_key: bool = True
) -> Task:
    home = ui_home(spec)
    cert, key = f"{home}/{names.UI_CERT}", f"{home}/{names.UI_KEY}"
    if ca is None:
        assert ui.cert and ui.key  # an import, checked when the spec was loaded (imports.py)
        steps: tuple[Step, ...] = (Copy(str(ui.cert), cert), Copy(str(ui.key), key, mode=names.KEY_MODE))
        return Task(UI_TASK, "DB Console certificate (imported)", steps)
    cnf, csr = f"{names.REQUESTS_DIR}/ui.cnf", f"{names.REQUESTS_DIR}/ui.csr"
    dns, ips = split_hosts(ui.hosts)
    # The docs give no recipe for ui.crt: every profile makes it like `cockroach cert` would (CN = first
    # host that fits in a CN, serverAuth only), with the extensions from our own section.
    cnf_text = render("ui.cnf.j2", common_name=ui.common_name, sans=_sans(dns, ips))
    expect = Expect(
        cert=cert,
        key=key,
        issuer=ca.cert,
        subject=(("O", "Cockroach"), ("CN", ui.common_name)),
        dns=dns,
        ips=ips,
        eku=("serverAuth",),
        key_kind=_key_kind(spec),
    )
    steps = (
        Write(cnf, cnf_text),
        *(_keygen(key, spec) if new_key else ()),
        _request(cnf, key, csr, ascii_only=True),
        *_sign(ca, profile, "signing_node_req", csr, cert, (cnf, "ui_certificate"), days),
        Verify(expect),
    )
    return Task(UI_TASK, "DB Console certificate", steps, expect, signer=ca.task_id)


def _key_kind(spec: Spec) -> str:
    """The key a leaf must have (certcheck.key_kind_of): changing key_type or key_bits is a difference."""
    return "EC P-256" if spec.key_type == "ec" else f"RSA {spec.key_bits}"


def _keygen(key: str, spec: Spec) -> tuple[Step, ...]:
    if spec.key_type == "ec":
        argv: tuple[str, ...] = (
            "openssl",
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            key,
        )
    else:
        argv = ("openssl", "genrsa", "-out", key, str(spec.key_bits))
    return (Run(argv, writes=(key,), keygen=True), Chmod(names.KEY_MODE, key))


def _request(cnf: str, key: str, csr: str, ascii_only: bool) -> Run:
    # -utf8 only when a value needs it, so that ASCII requests stay the docs' command exactly.
    utf8 = () if ascii_only else ("-utf8",)
    return Run(
        ("openssl", "req", "-new", *utf8, "-config", cnf, "-key", key, "-out", csr, "-batch"),
        reads=(cnf, key),
        writes=(csr,),
    )


def _sign(
    ca: CA,
    profile: Profile,
    section: str,
    csr: str,
    cert: str,
    extfile: tuple[str, str] | None,
    days: Lifetimes,
) -> tuple[Step, ...]:
    """`openssl ca` as the docs write it; `extfile` = (file, section) takes the extensions from our own
    rendered section instead of ca.cnf's."""
    steps: list[Step] = []
    if profile.random_serials:
        # 128 random bits per certificate, as `cockroach cert` does: no serial is ever issued twice.
        steps.append(RandomSerial(ca.serial))
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
    ]
    reads = [ca.cnf, ca.key, ca.cert, csr, ca.database, ca.serial]
    if extfile:
        argv += ["-extfile", extfile[0], "-extensions", extfile[1]]
        reads.append(extfile[0])
    else:
        argv += ["-extensions", section]
    argv += ["-out", cert, "-outdir", f"{names.CERTS_DIR}/", "-in", csr]
    if profile.days_on_sign:
        argv += ["-days", str(days.cert)]
    if ca.name in days.caps:
        argv += ["-enddate", days.caps[ca.name]]
    if profile.notext:
        argv.append("-notext")
    argv.append("-batch")
    steps.append(Run(tuple(argv), reads=tuple(reads), writes=(cert, ca.database, ca.serial)))
    return tuple(steps)


# -------------------------------------------------------------------------------------------- bundles

_NODE_OWN = ("node.", "client.node.")  # files made in a node's own folder; the rest are made in certs/
_UI_FILES = (names.UI_CERT, names.UI_KEY)


def ui_home(spec: Spec) -> str:
    """Where the DB Console pair is made: certs/ when that is also the only node's folder; else the first
    node's folder (ui.key is a server's key: in the clients' certs/ it would be handed to every client).
    A spec without nodes (clients only) keeps it in certs/, as before."""
    return names.CERTS_DIR if len(spec.nodes) <= 1 else names.node_dir(spec.nodes[0].name)


def _bundles(spec: Spec, cas: Signers) -> dict[str, tuple[str, ...]]:
    """Each certs directory to hand out and the files it holds."""
    ca_files = tuple(f"{ca.name}.crt" for ca in cas.all)
    node_files: tuple[str, ...] = (names.NODE_CERT, names.NODE_KEY)
    if spec.layout != "standard":
        node_files += ("client.node.crt", "client.node.key")
    if spec.ui:
        node_files += (names.UI_CERT, names.UI_KEY)
    client_files = tuple(
        f for c in spec.clients for f in (names.client_cert(c.user), names.client_key(c.user))
    )
    bundles = {names.node_dir(n.name): ca_files + node_files for n in spec.nodes}
    # One node: certs/ is also that node's certs dir, as in the docs (cockroach start-single-node).
    single = (
        node_files
        if len(spec.nodes) == 1
        else tuple(
            f for f in node_files if not f.startswith(_NODE_OWN) and (f not in _UI_FILES or not spec.nodes)
        )
    )
    bundles[names.CERTS_DIR] = ca_files + single + client_files
    return bundles


def _bundle_task(bundles: dict[str, tuple[str, ...]], ui_from: str) -> Task:
    """Copy into each certs directory what was made elsewhere: CA certificates from certs/ into the nodes'
    folders, the UI pair from `ui_from` (ui_home) into the others, and the only node's files into certs/."""
    nodes = [folder for folder in bundles if folder != names.CERTS_DIR]
    steps: list[Step] = []
    for folder, files in bundles.items():
        for file in files:
            # A SQL user may be called `node` (standard layout): client.node.crt is then made in certs/.
            made_in_node = file.startswith(_NODE_OWN) and bool(nodes) and file in bundles[nodes[0]]
            if file in _UI_FILES:
                if folder == ui_from:
                    continue  # made right there
                source = f"{ui_from}/{file}"
            elif folder == names.CERTS_DIR and made_in_node:
                source = f"{nodes[0]}/{file}"
            elif folder != names.CERTS_DIR and not made_in_node:
                source = f"{names.CERTS_DIR}/{file}"
            else:
                continue  # made right there
            steps.append(
                Copy(source, f"{folder}/{file}", mode=names.KEY_MODE if file.endswith(".key") else None)
            )
    return Task("bundles", "assemble the certs directories", tuple(steps))


def split_hosts(hosts: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """DNS names first, then IP addresses, each in the spec's order (as `cockroach cert list` shows them)."""
    ips = tuple(h for h in hosts if _is_ip(h))
    return tuple(h for h in hosts if h not in ips), ips


def _sans(dns: tuple[str, ...], ips: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple(("DNS", h) for h in dns) + tuple(("IP", ip) for ip in ips)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
