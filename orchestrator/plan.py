"""The plan: a pure function from a spec (and what already exists) to an ordered list of steps.

The runner executes it, the script module prints it as bash, the audit checks against its expectations:
one plan, so doing, printing and auditing cannot drift apart. Paths are relative to the output folder.
The order is the docs' order: CA, CA database, then per certificate: config, key, CSR, signature.
Which commands make each certificate is recipes.py's; which files go where, bundles.py's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from orchestrator import bundles, names, recipes, record, stamp
from orchestrator.cas import Signers, signers
from orchestrator.errors import UserError
from orchestrator.profiles import PROFILES, Profile
from orchestrator.record import Provenance
from orchestrator.spec import Layout, Node, Spec
from orchestrator.steps import (
    Append,
    Chmod,
    Copy,
    Kind,
    MakeDirs,
    Plan,
    Remove,
    Run,
    Step,
    Task,
    Verify,
    Write,
    is_config,
    writes,
)


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
    # The record's settings as the last clean run's stamp holds them (None: the guard reads the record).
    recorded: record.Settings | None = None
    # Every certificate task -> the digest of what it expects (stamp.expect_digest), for the stamp.
    expects: dict[str, str] = field(default_factory=dict)
    # The ids of node tasks the last clean run's stamp vouches for whole (stamp.Vouch.whole): not built
    # at all, so one node added to 10,000 plans one node (issue 16).
    skip: frozenset[str] = frozenset()
    # Certs directories of skipped tasks whose listing is the stamp's (no file added or removed since the
    # last clean run, which left none there that the spec does not make): not listed again (the guard).
    listed: frozenset[str] = frozenset()


def build(spec: Spec, state: State | None = None) -> Plan:
    """The plan for `spec`; with `state`, only what is missing or wrong (and whatever depends on it)."""
    state = state or State()
    profile = PROFILES[spec.profile]
    cas = signers(spec)
    days = _lifetimes(spec, profile, cas, state)

    elsewhere = state.provenance is Provenance.SIGNED_ELSEWHERE
    tasks: list[Task] = [Task("dirs", "directories", (MakeDirs(_dirs(spec)),))]
    for ca in [] if elsewhere else cas.all:
        rotate = ca.name in state.rotate
        # An existing CA key is never replaced, but by rotate-ca (the runner keeps the old one in the backup).
        new_key = (rotate and ca.name not in state.resumed) or ca.key not in state.present
        tasks.append(recipes.ca_task(ca, profile, days, spec, rotate, new_key))
        database = recipes.database_task(ca, profile)
        if ca.name in state.rotate:
            # The new CA keeps the database, so its serials go on from the old CA's: the docs' serials
            # count 01, 02, … and a second 01 under the same CA name is a reused issuer and serial
            # (which browsers refuse on the DB Console). Only a missing database is made anew.
            database = replace(database, signer=None)
        tasks.append(database)
    made = _made.of(spec, days)
    for node in spec.nodes:
        task_id = f"node:{node.name}"
        new_key = task_id not in state.keep_keys
        if task_id in state.skip:
            continue
        task = made.get((task_id, new_key))
        if task is None:
            task = recipes.node_task(node.name, node.hosts, spec, profile, cas.node, days, new_key)
            made[task_id, new_key] = task
        tasks.append(task)
    for i, client in enumerate(spec.clients):
        task_id = f"client:{client.user}"
        new_key = task_id not in state.keep_keys
        task = made.get((task_id, new_key))
        if task is None:
            cert = f"{names.CERTS_DIR}/{names.client_cert(client.user)}"
            request = recipes.Request(
                f"client.{client.user}", client.user, cert, first_user=i == 0, pkcs8=client.pkcs8
            )
            task = recipes.client_task(task_id, request, cas.client, profile, days, spec, new_key)
            made[task_id, new_key] = task
        tasks.append(task)
    if spec.layout != Layout.STANDARD:
        for node in spec.nodes:
            task_id = f"client-node:{node.name}"
            new_key = task_id not in state.keep_keys
            if task_id in state.skip:
                continue
            task = made.get((task_id, new_key))
            if task is None:
                cert = f"{names.node_dir(node.name)}/{names.client_cert(names.NODE_USER)}"
                request = recipes.Request(f"client-node.{node.name}", "node", cert)
                task = recipes.client_task(task_id, request, cas.client, profile, days, spec, new_key)
                made[task_id, new_key] = task
            tasks.append(task)
    if spec.ui:
        tasks.append(
            recipes.ui_task(spec.ui, cas.ui, profile, days, spec, recipes.UI_TASK not in state.keep_keys)
        )
    # openssl ca -outdir certs/ leaves a <serial>.pem copy of every certificate: the docs remove them.
    tasks.append(Task("cleanup", "remove openssl's .pem copies", (Remove((f"{names.CERTS_DIR}/*.pem",)),)))
    contents = bundles.contents(spec, cas)
    tasks.append(bundles.assemble_task(contents, bundles.ui_home(spec), folders_of(state.skip)))
    provenance = state.provenance if elsewhere else None
    record = made.get(("record", provenance))
    if record is None:
        record = made["record", provenance] = record_task(spec, provenance)
    tasks.append(record)
    kept = tuple(_keep_needed(tasks, state))
    return Plan(spec, kept, contents, drop=_stale_pk8(kept, state), expects=state.expects)


def node_inputs(spec: Spec) -> dict[str, str]:
    """The digest of what each node's task (node:<name>, and client-node:<name> in the split layouts)
    is made from, as `build(spec)` makes it: what the stamp holds, to vouch for the task whole."""
    common = _common_inputs(spec, _lifetimes(spec, PROFILES[spec.profile], signers(spec), State()))
    kinds = ("node", "client-node") if spec.layout != Layout.STANDARD else ("node",)
    return {
        f"{kind}:{node.name}": _inputs_digest(common, f"{kind}:{node.name}", node)
        for kind in kinds
        for node in spec.nodes
    }


def _common_inputs(spec: Spec, days: recipes.Lifetimes) -> str:
    """What every node's task is made from besides its node: the spec without its nodes and users
    (node_task reads the rest of it), its lifetimes, crdb-certs' code (recipes, templates), and where
    the DB Console pair each node's folder gets a copy of is made (the first node's folder, or certs/)."""
    rest = replace(spec, nodes=(), clients=())
    return f"{stamp.code()}\0{rest!r}\0{days!r}\0{bundles.ui_home(spec)}"


def _inputs_digest(common: str, task_id: str, node: Node) -> str:
    return hashlib.sha256(f"{common}\0{task_id}\0{node!r}".encode()).hexdigest()[:32]


def files_of(task: Task, copies: dict[str, list[str]]) -> tuple[str, ...]:
    """The files that are a node's task once done: its certificate (first), key, CA certificate, config;
    for node:<name>, also the copies into its folder with their sources (`copies`: copies_into), and
    the folder itself (its listing: no file added or removed)."""
    assert task.expect is not None
    expect = task.expect
    configs = (s.path for s in task.steps if is_config(s) and isinstance(s, Write))
    folder = _node_folder(task.id)
    copied = copies.get(folder, []) if folder is not None else []
    found = (expect.cert, expect.key, expect.issuer, *configs, *copied, folder)
    return tuple(p for p in found if p is not None)


def folders_of(skip: frozenset[str]) -> frozenset[str]:
    """The folders of the nodes whose task is in `skip` (State.skip)."""
    return frozenset(f for f in map(_node_folder, skip) if f is not None)


def _node_folder(task_id: str) -> str | None:
    """The folder of node:<name>'s node; None for any other task (client-node:<name> shares it)."""
    return names.node_dir(task_id.removeprefix("node:")) if task_id.startswith("node:") else None


def copies_into(plan: Plan) -> dict[str, list[str]]:
    """Each certs directory -> the copies the plan makes into it, each as its source and destination."""
    found: dict[str, list[str]] = {}
    for step in plan.steps:
        if isinstance(step, Copy):
            found.setdefault(step.dst.rpartition("/")[0], []).extend((step.src, step.dst))
    return found


class _Made:
    """The certificate tasks (and the record) the last build made, for the next build of the same spec.

    `issue` builds the plan for an empty folder, inspects the folder against it, and builds the plan again
    with what it found (runner.pending); `renew` and `rotate-ca` do the same. A node's task is a pure
    function of the spec, its lifetimes and whether it makes a new key, so the second build takes the
    first one's instead of making (and rendering the config of) 10,000 again (issue 16). It holds the
    tasks of one plan, which that plan holds anyway; a spec that is another object starts afresh (the
    spec is immutable and held here, so the same object is the same spec)."""

    def __init__(self) -> None:
        self.spec: Spec | None = None
        self.days: recipes.Lifetimes | None = None
        self.tasks: dict[tuple[str, object], Task] = {}

    def of(self, spec: Spec, days: recipes.Lifetimes) -> dict[tuple[str, object], Task]:
        """The tasks made for `spec` with `days`, by (task id, new key or the record's provenance)."""
        if spec is not self.spec or days != self.days:
            self.spec, self.days, self.tasks = spec, days, {}
        return self.tasks


_made = _Made()


def record_task(spec: Spec, provenance: Provenance | None) -> Task:
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
                    Kind.CONVERT,
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


def _lifetimes(spec: Spec, profile: Profile, cas: Signers, state: State) -> recipes.Lifetimes:
    """The profile's (or the spec's) lifetimes; in the secure profile a leaf never outlives its CA: under
    a CA that ends sooner than a new leaf would, the leaf ends with the CA (`cockroach cert` refuses
    such a leaf instead; openssl would sign it)."""
    days = recipes.Lifetimes(spec.ca_days or profile.ca_days, spec.cert_days or profile.cert_days)
    if not profile.cap_at_ca or state.now is None:
        return days
    caps = {}
    for ca in cas.all:
        end = state.ca_ends.get(ca.task_id)
        kept = ca.task_id in state.fresh and ca.name not in state.rotate
        if kept and end is not None and state.now + timedelta(days=days.cert) > end:
            caps[ca.name] = end.strftime("%Y%m%d%H%M%SZ")
    return recipes.Lifetimes(days.ca, days.cert, caps)


def _keep_needed(tasks: list[Task], state: State) -> Iterator[Task]:
    """Drop the tasks whose artefact is fresh, unless the CA that signs it gets a new key (a new CA, a
    rotation, your own CA replaced). A CA certificate made again from the key it had (lost, expired)
    leaves what it signed and its database as they are: they stay valid under it, and a reset database
    would count the docs' serials from 01 again under the same CA.

    A fresh task keeps only its config steps whose file differs (State.current): the folder shows the spec.
    Copies into the certs directories are kept only where the file copied is made again, or its copy is
    missing or differs (State.present leaves those out): adding a node copies ca.crt into that node's
    folder, not into the other 200.
    """
    redone: set[str] = set()
    new_signers: set[str] = set()
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
            needed = task.id not in state.fresh or task.signer in new_signers
        elif task.creates:
            missing = [p for p in task.creates if p not in state.present]
            needed = task.signer in new_signers or bool(missing)
            if missing and task.irreplaceable and task.signer not in new_signers:
                raise UserError(
                    f"{missing[0]}: missing, but its CA still exists: restore it from a backup (a new one "
                    "would issue serial 01 again under the same CA)"
                )
        else:  # a file rendered from the spec alone (the record): like a config, written where it differs
            needed = not all(is_config(s) for s in task.steps)
        if needed:
            redone.add(task.id)
            if task.expect is not None and task.expect.is_ca and _new_signer(task):
                new_signers.add(task.id)
            yield task
        else:
            configs = tuple(s for s in task.steps if is_config(s) and writes(s)[0] not in state.current)
            # Its key in another form (client.<user>.key.pk8) missing or of another key: made again from it.
            forms = {w for s in task.steps if isinstance(s, Run) and s.kind is Kind.CONVERT for w in s.writes}
            unmade = forms - state.present
            again = tuple(
                s
                for s in task.steps
                if unmade & set(writes(s)) or (isinstance(s, Chmod) and s.path in unmade)
            )
            yield Task(task.id, task.title, configs + again)


def _stale_pk8(tasks: tuple[Task, ...], state: State) -> tuple[str, ...]:
    """A new key leaves no copy of the old one: the .pk8 beside it, when the spec no longer asks for one
    (pkcs8 = true makes it again with the key), is moved out of the folder (kept in backup/)."""
    stale = []
    for task in tasks:
        made = {path for step in task.steps for path in writes(step)}
        if task.expect is not None and task.expect.key in made:
            pk8 = names.pk8_for(task.expect.key)
            if pk8 not in made and pk8 in state.present:
                stale.append(pk8)
    return tuple(stale)


def _new_signer(task: Task) -> bool:
    """Whether a CA task, when run, signs with another key than before: it makes a key, appends the old
    CA after the new one (rotate-ca), or copies your own CA's certificate in."""
    assert task.expect is not None
    cert = task.expect.cert
    return any(
        (isinstance(s, Run) and s.keygen)
        or (isinstance(s, Append) and s.dst == cert)
        or (isinstance(s, Copy) and s.dst == cert)
        for s in task.steps
    )


def _dirs(spec: Spec) -> tuple[str, ...]:
    return (
        names.CERTS_DIR,
        names.SAFE_DIR,
        names.REQUESTS_DIR,
        *(names.node_dir(n.name) for n in spec.nodes),
    )
