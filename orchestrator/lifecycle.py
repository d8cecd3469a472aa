"""Day 2: renewing leaf certificates, rotating the CA, and finding what expires soon.

Renewal and rotation are plans like `issue`'s (plan.build with a State that says what to do again), run by
the same runner, so they are staged, verified, committed per certs directory and printable as bash. The
runner keeps every file they replace in backup/<UTC time>/, a CA key in my-safe-directory/backup/ (backups).

CA rotation, as CockroachDB's rotate-certificates page describes it: a CA file holding the new CA first
and the old CA after it is trusted in full by every node, so leaves of either CA work while they are being
replaced; the new CA is first because that is the certificate openssl signs with and the one the
freshness check (certcheck.problems) and CockroachDB's `cert list` read. `--finish` drops the old CA.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from orchestrator import (
    backups,
    cas,
    changes,
    duration,
    names,
    plan,
    probe,
    recipes,
    record,
    script,
    state,
    validate,
)
from orchestrator.certcheck import load_cert, load_certs, load_key, signed_by
from orchestrator.certsdir import Usage
from orchestrator.certsdir import read as read_dir
from orchestrator.errors import SpecError, UserError, printable
from orchestrator.spec import Spec
from orchestrator.steps import Plan, Run, is_config, writes

DEFAULT_WINDOW = timedelta(days=30)

# ------------------------------------------------------------------------------------------- renew


def select(
    spec: Spec,
    out: Path,
    nodes: tuple[str, ...] = (),
    clients: tuple[str, ...] = (),
    within: timedelta | None = None,
    now: datetime | None = None,
    ui: bool = False,
) -> list[str]:
    """The ids of the leaf tasks to renew: exactly the named nodes and clients (and the DB Console
    certificate with `ui`), or else every leaf that expires within the window (default 30 days)."""
    full = plan.build(spec)
    ids = {t.id for t in full.leaves()}
    if ui:
        if spec.ui is None:
            raise UserError("--ui: the spec has no [ui] table, so there is no DB Console certificate")
        if spec.ui.issuer == "import":
            raise UserError(
                '--ui: ui.issuer is "import": renew ui.crt where it was made, then point ui.cert and '
                "ui.key at the new files and run `crdb-certs issue`"
            )
    if nodes or clients or ui:
        known_nodes = [n.name for n in spec.nodes]
        known_users = [c.user for c in spec.clients]
        chosen: list[str] = []
        for name in nodes:
            if name not in known_nodes:
                raise SpecError("--nodes", name, f"is not a node of the spec ({_listed(known_nodes)})")
            chosen += [i for i in (f"node:{name}", f"client-node:{name}") if i in ids]
        for raw in clients:
            user = validate.user("--clients", raw)
            if user not in known_users:
                raise SpecError("--clients", raw, f"is not a client of the spec ({_listed(known_users)})")
            chosen.append(f"client:{user}")
        if ui:
            chosen.append(recipes.UI_TASK)
        return list(dict.fromkeys(chosen))
    now = now or datetime.now(UTC)
    window = DEFAULT_WINDOW if within is None else within
    chosen = []
    for task in full.leaves():
        assert task.expect is not None
        try:
            cert = load_cert(out / task.expect.cert)
        except (OSError, ValueError):
            continue  # missing or unreadable: not fresh, so the plan makes it anyway
        if cert.not_valid_after_utc - now <= window:
            chosen.append(task.id)
    return chosen


def renew_plan(spec: Spec, out: Path, chosen: Iterable[str], keep_keys: bool = False) -> Plan:
    """Re-issue the leaf tasks `chosen` with the same CA (and whatever `issue` would make anyway)."""
    full = plan.build(spec)
    _require_issued(spec, out)
    _require_signing_here(out, "renew")
    found = state.inspect(out, full)
    chosen = frozenset(chosen)
    # Renewing what was chosen is what was asked; anything else that differs from the spec is not.
    changes.guard(spec, out, full, found, changes.Asked(), chosen)
    if keep_keys:
        for task in full.leaves():
            if task.id in chosen and task.expect is not None:
                _require_key(out, task.expect.key)
    return plan.build(
        spec, replace(found, fresh=found.fresh - chosen, keep_keys=chosen if keep_keys else frozenset())
    )


def _require_key(out: Path, key: str) -> None:
    try:
        load_key(out / key)
    except (OSError, ValueError, TypeError) as e:
        reason = e.__class__.__name__
        raise UserError(f"--keep-keys: {out / key} cannot be read as a key ({reason})") from None


def _require_signing_here(out: Path, command: str) -> None:
    """A folder signed by a CA elsewhere (csr + import) has no CA key crdb-certs could sign with."""
    held = record.read(out)
    if held is not None and held.provenance is record.Provenance.SIGNED_ELSEWHERE:
        raise UserError(
            f"{command}: {out} is signed by {held.provenance.about()}; crdb-certs holds no key of that"
            f" CA. `crdb-certs csr --out {script.quote(str(out))}` and `crdb-certs import` give it new"
            " certificates, and the organization rotates its own CA"
        )


def _require_made_here(spec: Spec, out: Path) -> None:
    """rotate-ca replaces only a CA crdb-certs made: never the organization's own, never one it only
    imported (there is no key of it here to keep, so none may be said to be kept)."""
    held = record.read(out)
    if held is not None and held.provenance is not record.Provenance.MADE_HERE:
        raise UserError(
            f"rotate-ca: {out} is signed by {held.provenance.about()}, which crdb-certs never replaces;"
            " the organization rotates its own CA, then `crdb-certs csr` + `crdb-certs import` (or [ca]"
            " pointed at the new CA and `crdb-certs issue --reissue`) give the nodes certificates of it"
        )


def _require_issued(spec: Spec, out: Path) -> None:
    for ca in cas.signers(spec).all:
        if not (out / ca.cert).is_file():
            raise UserError(f"{out / ca.cert}: missing; `crdb-certs issue` makes the PKI first")


# ------------------------------------------------------------------------------------- CA rotation


def ca_files(spec: Spec) -> list[cas.CA]:
    """The CAs a rotation replaces: every CA crdb-certs made (ca, and ca-client / ca-ui in those layouts)."""
    if spec.ca is not None:
        raise UserError(
            "rotate-ca: the spec's [ca] is your own CA, which crdb-certs never changes; rotate it where it"
            " was made, point [ca] at the new one, then `crdb-certs issue --reissue`"
        )
    return cas.signers(spec).all


def in_rotation(spec: Spec, out: Path) -> list[str]:
    """The CA files that hold more than one certificate (a rotation not finished)."""
    found = []
    for ca in cas.signers(spec).all:
        try:
            if len(load_certs(out / ca.cert)) > 1:
                found.append(ca.cert)
        except (OSError, ValueError):
            continue
    return found


def rotate_plan(spec: Spec, out: Path) -> Plan:
    """A new key and certificate for every CA, the old certificate kept after the new one in the CA
    file, and every leaf re-issued from the new CA."""
    cas = ca_files(spec)
    _require_made_here(spec, out)
    _require_issued(spec, out)
    full = plan.build(spec)
    found = state.inspect(out, full)
    busy = in_rotation(spec, out)
    if busy:
        if still_old(full, out):
            # A rotation killed after its CA files were committed, before all its leaves were: finish it.
            return plan.build(spec, found)
        raise UserError(
            f"{out / busy[0]} holds the CA being rotated out: a rotation is not finished; roll it out and"
            " run `crdb-certs rotate-ca --finish` first"
        )
    ids = frozenset(ca.name for ca in cas)
    # A rotation killed after it put a new CA key in place: that key makes the new CA certificate.
    resumed = frozenset(ca.name for ca in cas if backups.interrupted(out, ca.key, ca.cert))
    return plan.build(spec, replace(found, fresh=found.fresh - ids, rotate=ids, resumed=resumed))


def finish_plan(spec: Spec, out: Path) -> Plan:
    """Drop the old CA from each rotation bundle; refused while a leaf is still signed by it."""
    cas = ca_files(spec)
    _require_made_here(spec, out)
    for ca in cas:
        kept = backups.interrupted(out, ca.key, ca.cert)
        if kept is not None:
            raise UserError(backups.resume_advice(out, ca.cert, kept))
    busy = in_rotation(spec, out)
    if not busy:
        raise UserError(
            f"no CA rotation to finish in {out}: every CA file holds one certificate"
            " (`crdb-certs rotate-ca` starts one)"
        )
    full = plan.build(spec)
    old = still_old(full, out)
    if old:
        more = f" and {len(old) - 3} more" if len(old) > 3 else ""
        raise UserError(
            f"rotate-ca --finish: {', '.join(old[:3])}{more} still signed by the old CA;"
            " `crdb-certs issue` re-issues them from the new one"
        )
    found = state.inspect(out, full)
    return plan.build_finish(spec, found, frozenset(Path(cert).stem for cert in busy))


def still_old(full: Plan, out: Path) -> list[str]:
    """The leaves not signed by the first (new) certificate of their CA file."""
    old = []
    for task in full.leaves():
        assert task.expect is not None and task.expect.issuer is not None
        try:
            cert, ca = load_cert(out / task.expect.cert), load_cert(out / task.expect.issuer)
        except (OSError, ValueError):
            old.append(task.expect.cert)  # missing: the new CA has not signed it either
            continue
        if not signed_by(cert, ca):
            old.append(task.expect.cert)
    return old


# -------------------------------------------------------------------------------- operator's steps


def touched(spec: Spec, todo: Plan) -> tuple[list[str], list[str]]:
    """The nodes and the users whose files a plan makes anew (a new ui.crt goes to every node)."""
    made = [t.id for t in todo.tasks if t.expect is not None and any(not is_config(s) for s in t.steps)]
    nodes = [i.split(":", 1)[1] for i in made if i.startswith(("node:", "client-node:"))]
    if recipes.UI_TASK in made:
        nodes += [n.name for n in spec.nodes]
    users = [i.split(":", 1)[1] for i in made if i.startswith("client:")]
    return list(dict.fromkeys(nodes)), users


class Stage(enum.StrEnum):
    """Which command's outcome `rollout` explains."""

    RENEW = "renew"  # renew: new certificates of the same CA
    ROTATE = "rotate"  # rotate-ca: a new CA beside the old one, every certificate re-issued
    FINISH = "finish"  # rotate-ca --finish: the old CA dropped


def rollout(
    spec: Spec, out: Path, config: Path | None, stage: Stage, nodes: list[str], users: list[str]
) -> str:
    """What the operator does next. `nodes` and `users`: whose files
    changed (a UI certificate is in every node's folder).

    A rotation is rolled out in two passes: first only the CA files, so that every node trusts both CAs
    before any node presents a certificate of the new one (a node that still trusts only the old CA
    would refuse it); then the new certificates and keys.
    """
    certs = out / names.CERTS_DIR
    reload = "pkill -SIGHUP -x cockroach  (or restart it: a rolling restart, one node at a time)"
    ca_names = [Path(ca.cert).name for ca in cas.signers(spec).all]
    lines = [""]
    if stage == Stage.ROTATE:
        lines.append("Next, 1 of 3, the new CA beside the old one (nodes keep their certificates for now):")
        for name in nodes:
            files = script.join(str(out / names.node_dir(name) / ca) for ca in ca_names)
            lines.append(
                f"  copy {files} to {name}'s certs directory, then there: pkill -SIGHUP -x cockroach"
            )
        if spec.clients:
            lines.append(f"  give each client {script.quote(certs / names.CA_CERT)}")
        lines.append("2 of 3, once every node trusts both CAs: the certificates of the new CA")
    elif stage == Stage.FINISH:
        lines.append("Next, 3 of 3: the old CA removed (its certificates are refused from then on):")
    else:
        lines.append("Next:")
    for name in nodes:
        folder = script.quote(f"{out / names.node_dir(name)}/")
        lines.append(f"  copy {folder} to {name}'s certs directory, then there: {reload}")
    if stage == Stage.FINISH and spec.clients:
        lines.append(f"  give each client the new {script.quote(certs / names.CA_CERT)}")
    for user in users:
        lines.append(
            f"  give {user}'s clients {script.quote(certs / names.client_cert(user))}"
            f" and {script.quote(certs / names.client_key(user))}"
        )
    confirm = probe_command(spec, out, nodes)
    if confirm:
        # After --finish a node's own files are unchanged: what the probe shows is that none still
        # serves a certificate of the old CA, which certs/ca.crt no longer holds (untrusted).
        what = "a certificate of the new CA" if stage == Stage.FINISH else "its new certificate (no `stale`)"
        lines.append(f"  then, to confirm every node serves {what}: {confirm}")
    if stage == Stage.ROTATE:
        flag = f" --config {script.quote(config)}" if config else ""
        lines.append("3 of 3, once every node and client runs on the new certificates:")
        lines.append(f"  crdb-certs rotate-ca --finish{flag} --out {script.quote(out)}")
        if confirm:
            lines.append(f"  then copy what it names, and again: {confirm}")
    return "\n".join(lines)


def probe_command(spec: Spec, out: Path, nodes: list[str]) -> str | None:
    """`crdb-certs probe` of these nodes' SQL ports, each by its first host a client can dial (a wildcard
    names none); None when there is no node to probe."""
    hosts = {n.name: next((h for h in n.hosts if not h.startswith("*")), None) for n in spec.nodes}
    targets = list(dict.fromkeys(probe.address(host) for name in nodes if (host := hosts.get(name))))
    if not targets:
        return None
    return f"crdb-certs probe {script.join(targets)} --out {script.quote(out)}"


# ----------------------------------------------------------------------------------------- scripts


def script_for(todo: Plan, out: Path, title: str) -> str:
    """The plan as bash, to run in `out`: first the backup crdb-certs makes of what the plan replaces
    (keys openssl makes anew are moved there, since openssl will not write over a 0400 file)."""
    tasks = [t for t in todo.tasks if any(not is_config(s) for s in t.steps)]
    written = list(dict.fromkeys(p for t in tasks for s in t.steps for p in writes(s)))
    existing = [p for p in written if (out / p).is_file()]
    regenerated = {w for t in tasks for s in t.steps if isinstance(s, Run) and s.keygen for w in s.writes}
    moved = [p for p in existing if p in regenerated]
    copied = [p for p in existing if p not in regenerated]
    ca_keys = [p for p in moved if p.startswith(names.SAFE_DIR + "/")]
    lines = []
    if existing:
        lines += [
            "# crdb-certs keeps every file it replaces in backup/<UTC time>/ until you delete it",
            'stamp="$(date -u +%Y%m%dT%H%M%SZ)"',
            f'backup={names.BACKUP_DIR}/"$stamp"',
            'mkdir -p "$backup"',
        ]
        if copied:
            lines.append(f'cp -p --parents {script.join(copied)} "$backup"/')
        for path in moved:
            if path in ca_keys:
                continue
            folder = script.quote(str(Path(path).parent))
            lines.append(f'mkdir -p "$backup"/{folder}')
            lines.append(f'mv {script.quote(path)} "$backup"/{folder}/')
        if ca_keys:
            lines.append("# a CA key is kept only beside CA keys, on the disk my-safe-directory/ is on")
            lines.append(f'mkdir -p {backups.SAFE_BACKUP}/"$stamp"')
            for path in ca_keys:
                lines.append(f'mv {script.quote(path)} {backups.SAFE_BACKUP}/"$stamp"/')
    return script.script(todo, tasks, title=title, folder=out, preamble=lines, empty=False)


# ------------------------------------------------------------------------------------------- check


@dataclass(frozen=True)
class Expiry:
    where: str  # "nodes/n1/node.crt", "certificate #2 in certs/ca.crt"
    not_after: datetime | None  # None: the file cannot be read
    error: str = ""

    def line(self, now: datetime) -> str:
        where = printable(self.where)  # nodes/<a name that is not UTF-8>/
        if self.not_after is None:
            return printable(f"{where}: cannot be read ({self.error})")
        when = self.not_after.strftime("%Y-%m-%d %H:%M UTC")
        left = self.not_after - now
        if left < timedelta(0):
            return f"{where}: expired {when} ({_span(-left)} ago)"
        return f"{where}: expires {when} (in {_span(left)})"


def certs_dirs(target: Path) -> list[Path]:
    """An output folder (certs/ and every nodes/<name>/), or one certs directory."""
    if not target.is_dir():
        raise UserError(f"{target}: not a directory")
    if (target / names.CERTS_DIR).is_dir():
        nodes = target / names.NODES_DIR
        bundles = sorted(p for p in nodes.iterdir() if p.is_dir()) if nodes.is_dir() else []
        return [target / names.CERTS_DIR, *bundles]
    return [target]


@dataclass(frozen=True)
class Seen:
    """One certificate `check` looked at (or a certificate file it could not read: `not_after` None)."""

    folder: Path  # the certs directory
    file: str  # its file name there
    index: int  # its place in the file: 0, or 1, 2, … for the other CAs of a CA bundle
    usage: str  # ca, ca-client, ca-ui, node, node-client, ui, client (CockroachDB's metric names)
    principal: str  # the subject's CN ("" when it has none)
    not_after: datetime | None
    error: str = ""


# CockroachDB's names for them (its metrics security.certificate.expiration.<usage>).
_USAGE_NAMES = {
    Usage.CA: "ca",
    Usage.CLIENT_CA: "ca-client",
    Usage.UI_CA: "ca-ui",
    Usage.TENANT_CA: "ca-client-tenant",
    Usage.NODE: "node",
    Usage.UI: "ui",
    Usage.CLIENT: "client",
    Usage.TENANT: "client-tenant",
    Usage.TENANT_SIGNING: "tenant-signing",
}


def inventory(target: Path) -> list[Seen]:
    """Every certificate under `target` (a certs directory or an output folder). In a CA file every
    certificate counts (a rotation bundle's old CA too); in a leaf's file only the first (the rest is its
    chain), as CockroachDB reads them."""
    seen: list[Seen] = []
    for folder in certs_dirs(target):
        for cert in read_dir(folder, keys=False).certs:
            usage = _USAGE_NAMES[cert.usage]
            if cert.usage is Usage.CLIENT and cert.suffix == names.NODE_USER:
                usage = "node-client"
            if not cert.certs:
                seen.append(Seen(folder, cert.name, 0, usage, "", None, cert.error or "no certificate"))
                continue
            looked: list[x509.Certificate] = cert.certs if cert.usage.is_ca else cert.certs[:1]
            for i, one in enumerate(looked):
                cns = one.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
                principal = str(cns[0].value) if cns else ""
                seen.append(Seen(folder, cert.name, i, usage, principal, one.not_valid_after_utc))
    if not seen:
        raise UserError(f"{target}: no certificates found (give a certs directory or an output folder)")
    return seen


def expiring(target: Path, within: timedelta, now: datetime | None = None) -> tuple[list[Expiry], int]:
    """Every certificate under `target` that expires within `within` (or cannot be read), soonest first,
    and how many certificates were looked at."""
    now = now or datetime.now(UTC)
    found: list[Expiry] = []
    seen = inventory(target)
    for one in seen:
        prefix = "" if one.folder == target else one.folder.relative_to(target).as_posix() + "/"
        name = prefix + one.file
        if one.not_after is None:
            found.append(Expiry(name, None, one.error))
        elif one.not_after - now <= within:
            where = name if one.index == 0 else f"certificate #{one.index + 1} in {name}"
            found.append(Expiry(where, one.not_after))
    found.sort(key=lambda e: (e.not_after is not None, e.not_after or now))
    return found, sum(one.not_after is not None for one in seen)


def interrupted_rotations(target: Path) -> list[str]:
    """In an output folder: a line for each CA certificate whose key is in a backup while
    my-safe-directory/ holds another key (a rotation killed half-way, see backups.interrupted)."""
    safe = target / names.SAFE_DIR
    found = []
    for key in sorted(safe.glob(names.CA_KEY_GLOB)) if safe.is_dir() else []:
        cert = f"{names.CERTS_DIR}/{key.stem}.crt"
        kept = backups.interrupted(target, f"{names.SAFE_DIR}/{key.name}", cert)
        if kept is not None:
            found.append(backups.resume_advice(target, cert, kept))
    return found


def _span(span: timedelta) -> str:
    if span >= timedelta(days=2):
        return f"{duration.whole_days(span)} days"
    hours = int(span.total_seconds() // 3600)
    if hours >= 1:
        return f"{hours} hour{'s' if hours > 1 else ''}"
    return f"{int(span.total_seconds() // 60)} minutes"


def _listed(values: list[str]) -> str:
    return "known: " + ", ".join(values) if values else "it has none"
