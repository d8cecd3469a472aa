"""What a run would replace or take away, and whether the user asked for it.

`issue` makes what is missing and repairs what is broken (a certificate that cannot be read, a key that
is gone or does not match), but it never replaces a working certificate, drops a node or user, or signs
with another CA unless told to: a forgotten `--config`, or an edit that lost a SAN, must not quietly
re-issue a node with fewer names. Each such difference is one line naming what differs and the flag that
does it (`--reissue NAME`, `--prune`); `issue --check` reports the same lines.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from orchestrator import names, record
from orchestrator.certcheck import (
    Expect,
    ekus_of,
    is_ca,
    key_kind_of,
    load_cert,
    load_certs,
    load_key,
    ocsp_urls_of,
    problems,
    public_bytes,
    sans_of,
    signed_by,
    subject_of,
)
from orchestrator.errors import ExitStatus, UserError
from orchestrator.plan import State
from orchestrator.record import Provenance
from orchestrator.script import quote as script_quote
from orchestrator.spec import Spec
from orchestrator.steps import Plan, Task


@dataclass(frozen=True)
class Difference:
    name: str  # what --reissue names: a node, a user, "ui"; "" for the whole folder
    what: str  # "hosts differ: -a.example.com +b.example.com"
    fix: str  # the way forward, as the user types it

    def line(self) -> str:
        return f"{self.name + ': ' if self.name else ''}{self.what}; {self.fix}"


class Refused(UserError):
    """The spec differs from what the folder holds in a way only a flag may act on."""

    status = ExitStatus.FINDINGS

    def __init__(self, out: Path, found: list[Difference]) -> None:
        self.found = found
        lines = [f"{out}: the spec differs from what the folder holds; nothing was changed:"]
        super().__init__("\n".join([*lines, *(f"  {d.line()}" for d in found)]))


ALL = "*"  # --reissue with no names: every certificate that differs


@dataclass(frozen=True)
class Asked:
    """What the user allowed this run to replace or take away."""

    # names: a node or user (every certificate of that name), node:NAME / client:NAME / ui (exactly
    # that one), or ALL
    reissue: frozenset[str] = frozenset()
    prune: bool = False

    def allows(self, name: str, task_id: str | None = None) -> bool:
        return ALL in self.reissue or name in self.reissue or (task_id or name) in self.reissue


def owner(task: Task) -> str:
    """The name --reissue takes for a certificate's task: node:a and client-node:a -> a, client:u -> u."""
    return task.id.split(":", 1)[1] if ":" in task.id else task.id


def _qualified(task: Task) -> str:
    """The one certificate's own name for --reissue: node:a (with its client.node.crt), client:u, ui."""
    return "node:" + owner(task) if task.id.startswith("client-node:") else task.id


def guard(
    spec: Spec, out: Path, full: Plan, found: State, asked: Asked, chosen: frozenset[str] = frozenset()
) -> None:
    """Refuse (Refused, exit 1) every replacement and removal that neither `asked` nor `chosen` (the ids
    of the tasks a command re-issues on purpose: renew) covers."""
    differences: list[Difference] = []
    held = found.recorded or (r.settings() if (r := record.read(out)) is not None else None)
    differences += _folder_differences(spec, held, asked)
    leaves = full.leaves()
    names_known = {owner(t) for t in leaves} | {_qualified(t) for t in leaves}
    unknown = sorted(n for n in asked.reissue if n != ALL and n not in names_known)
    if unknown:
        raise UserError(
            f"--reissue: {', '.join(unknown)} is not a node, user or ui of the spec"
            f" (known: {', '.join(sorted(names_known))})"
        )
    kinds: dict[str, set[str]] = {}
    for task in leaves:
        kinds.setdefault(owner(task), set()).add(_qualified(task))
    for task in leaves:
        expect = task.expect
        if expect is None or task.id in found.fresh or task.id in chosen:
            continue
        why = _why_replaced(expect, out, found.now)
        if why is None or asked.allows(owner(task), _qualified(task)):
            continue
        # A name that is a node's and a user's (or "ui"): the flag names exactly this certificate.
        who = owner(task) if len(kinds[owner(task)]) == 1 else _qualified(task)
        differences.append(
            Difference(who, why, f"re-run with --reissue {who} to replace {expect.cert} (kept in backup/)")
        )
    differences += _ca_differences(spec, out, full, found, asked)
    differences += [] if asked.prune else _removed(spec, out, full, found.listed)
    if differences:
        raise Refused(out, list(dict.fromkeys(differences)))
    if found.provenance is Provenance.SIGNED_ELSEWHERE:
        unsigned = [t.title for t in full.leaves() if t.id not in found.fresh]
        if unsigned:
            raise UserError(
                f"{out}: signed by {Provenance.SIGNED_ELSEWHERE.about()}, and {', '.join(unsigned)} is not"
                f" signed yet: `crdb-certs csr --out {out}` makes the requests, then `crdb-certs import`"
            )


def drop(spec: Spec, out: Path, full: Plan, asked: Asked) -> tuple[str, ...]:
    """What the run takes away: node files left in certs/ once it holds more than one node's worth (they
    would let any client holder act as that node), and with --prune what the spec no longer names."""
    certs = names.CERTS_DIR
    kept = set(full.bundles.get(certs, ()))
    gone = [f"{certs}/{f}" for f in _NODE_OWN if f not in kept and (out / certs / f).is_file()]
    if asked.prune:
        gone += [d.path for d in _removed(spec, out, full) if d.path not in gone]
    return tuple(gone)


# The files a node's certs directory holds (node.crt/.key, client.node.*, ui.*): in the clients' certs/
# only while it is also the only node's folder.
_NODE_OWN = (
    names.NODE_CERT,
    names.NODE_KEY,
    names.client_cert(names.NODE_USER),
    names.client_key(names.NODE_USER),
    names.UI_CERT,
    names.UI_KEY,
)
# Every other file crdb-certs puts into a certs directory for some layout or [ui] (the CA files): once
# the spec no longer makes one (split-ca -> standard, [ui] removed), it is a removal, like a node's.
_MANAGED = (*_NODE_OWN, names.CLIENT_CA_CERT, names.UI_CA_CERT)


# ------------------------------------------------------------------------------------------ internals


@dataclass(frozen=True)
class _Removal(Difference):
    path: str = ""


def _removed(spec: Spec, out: Path, full: Plan, listed: frozenset[str] = frozenset()) -> list[_Removal]:
    """Nodes and users whose files are in the folder but who are not in the spec; `listed`: certs
    directories known to hold no such file (State.listed)."""
    found: list[_Removal] = []
    wanted_nodes = {n.name for n in spec.nodes}
    nodes_dir = out / names.NODES_DIR
    on_disk = sorted(_folders_in(nodes_dir))
    for name in on_disk:
        if name not in wanted_nodes and (nodes_dir / name / names.NODE_CERT).is_file():
            path = names.node_dir(name)
            found.append(_Removal(name, "not in the spec any more", _prune_fix(path), path))
    for folder, files in full.bundles.items():
        if folder in listed:
            continue
        # One listing a folder, not a stat for each file it might hold (issue 16: 10,000 folders).
        candidates = _names_in(out / folder).intersection(_MANAGED).difference(files)
        for file in sorted(candidates, key=_MANAGED.index):
            if not (out / folder / file).is_file():
                continue
            if folder == names.CERTS_DIR and file in _NODE_OWN:
                continue  # leaves certs/ with no flag (drop)
            path = f"{folder}/{file}"
            found.append(_Removal(file, "the spec no longer makes it (layout, [ui])", _prune_fix(path), path))
    kept = set(full.bundles.get(names.CERTS_DIR, ()))
    certs = out / names.CERTS_DIR
    users = sorted(p.name for p in certs.glob("client.*.crt")) if certs.is_dir() else []
    for cert in users:
        user = cert.removeprefix("client.").removesuffix(".crt")
        if cert in kept or user == names.NODE_USER:
            continue
        for file in (cert, names.key_for(cert), names.key_for(cert) + ".pk8"):
            if (certs / file).is_file():
                path = f"{names.CERTS_DIR}/{file}"
                found.append(_Removal(user, "not in the spec any more", _prune_fix(path), path))
    return found


def _names_in(folder: Path) -> set[str]:
    """The names in `folder` (none when it is no folder)."""
    try:
        return set(os.listdir(folder))
    except OSError:
        return set()


def _folders_in(folder: Path) -> list[str]:
    """The folders (or links to one) in `folder`: told by the listing's file types, without a stat each."""
    if not folder.is_dir():
        return []
    with os.scandir(folder) as entries:
        return [entry.name for entry in entries if entry.is_dir()]


def _ca_differences(spec: Spec, out: Path, full: Plan, found: State, asked: Asked) -> list[Difference]:
    """A CA certificate the run would make again although it exists and pairs with its key: a changed
    subject, lifetime or your own CA's file changed in place. Making it again signs every certificate
    again (or strands them under a CA name no one trusts): only with --reissue. A missing or unreadable
    one is a repair (made again from the same key, what it signed stays valid), and a key that is not
    the certificate's is the runner's refusal (runner._refuse_to_replace_a_ca)."""
    if asked.allows(ALL) or found.provenance is Provenance.SIGNED_ELSEWHERE:
        return []
    found_differences = []
    for task in full.tasks:
        expect = task.expect
        if expect is None or not expect.is_ca or task.id in found.fresh:
            continue
        try:
            cert = load_cert(out / expect.cert)
        except (OSError, ValueError):
            signed = [t.expect.cert for t in full.leaves() if t.signer == task.id and t.expect]
            copies = [f"{d}/{Path(expect.cert).name}" for d in full.bundles if d != names.CERTS_DIR]
            if any((out / c).is_file() for c in signed) and any((out / c).is_file() for c in copies):
                # Made again, it would differ from the copy every node trusts, and all it signed would be
                # signed again: the copy is the repair.
                there = next(c for c in copies if (out / c).is_file())
                found_differences.append(
                    Difference(
                        "CA",
                        f"{expect.cert} is missing or unreadable, and every node holds a copy",
                        f"put it back (cp {script_quote(out / there)} {script_quote(out / expect.cert)}),"
                        " or re-run with --reissue to make a new one and sign every certificate again",
                    )
                )
            continue
        if spec.ca is not None and expect.issuer is None:  # your own CA: the file the spec names
            try:
                same = load_certs(spec.ca.cert)[0] == cert
            except (OSError, ValueError):
                continue  # checked where it is used (imports.check_files)
            why = f"{expect.cert} is not the CA [ca] names now ({spec.ca.cert})" if not same else ""
        else:
            try:
                pairs = public_bytes(load_key(out / expect.key)) == public_bytes(cert)
            except (OSError, ValueError, TypeError):
                continue
            why = "; ".join(problems(expect, out, found.now)) if pairs else ""
        if why:
            found_differences.append(
                Difference(
                    "CA",
                    f"{why}: made again, it would sign every certificate again",
                    "re-run with --reissue to do that (old files kept in backup/), or rotate-ca",
                )
            )
    return found_differences


def _prune_fix(path: str) -> str:
    return f"its files stay; re-run with --prune to move {path} to backup/"


def _folder_differences(spec: Spec, held: record.Settings | None, asked: Asked) -> list[Difference]:
    if held is None:
        return []
    found: list[Difference] = []
    for key in ("profile", "layout"):
        if getattr(held, key) != getattr(spec, key) and not asked.allows(ALL):
            found.append(
                Difference(
                    "",
                    f"{key} differs: {getattr(held, key)} in the folder, {getattr(spec, key)} in the spec",
                    "re-run with --reissue to re-issue every certificate that differs",
                )
            )
    wanted = Provenance.OWN_CA if spec.ca else Provenance.MADE_HERE
    elsewhere = held.provenance is Provenance.SIGNED_ELSEWHERE
    same_ca = spec.ca is None if elsewhere else held.provenance is wanted
    recorded_ca = held.ca_cert
    if same_ca and spec.ca is not None and recorded_ca != str(spec.ca.cert) and not asked.allows(ALL):
        # The organization rotated its CA and [ca] names the new one: every leaf is signed again.
        found.append(
            Difference(
                "CA",
                f"[ca] differs: {recorded_ca} in the folder, {spec.ca.cert} in the spec",
                "re-run with --reissue to sign every certificate with the CA the spec names",
            )
        )
    if not same_ca:
        now = f"your own CA {spec.ca.cert}" if spec.ca else "a CA made here"
        found.append(
            Difference(
                "CA",
                f"the folder is signed by {held.provenance.about()}; the spec asks for {now}",
                "a folder keeps its CA: use a new --out folder (rotate-ca replaces a CA made here)",
            )
        )
    return found


def _why_replaced(expect: Expect, out: Path, now: datetime | None) -> str | None:
    """Why a certificate that exists would be made again, or None when it is a repair (missing,
    unreadable, its key gone or not its own): nothing that works is lost by a repair."""
    now = now or datetime.now(UTC)
    try:
        cert = load_cert(out / expect.cert)
        if public_bytes(load_key(out / expect.key)) != public_bytes(cert):
            return None
    except (OSError, ValueError, TypeError):
        return None
    dns, ips = sans_of(cert)
    want_dns, want_ips = list(expect.dns), [str(ipaddress.ip_address(i)) for i in expect.ips]
    if sorted(dns) != sorted(want_dns) or sorted(ips) != sorted(want_ips):
        had, wants = set(dns) | set(ips), set(want_dns) | set(want_ips)
        delta = [f"-{h}" for h in [*dns, *ips] if h not in wants] + [
            f"+{h}" for h in [*want_dns, *want_ips] if h not in had
        ]
        return "hosts differ: " + " ".join(delta or ["(same names, another order)"])
    if expect.key_kind is not None and key_kind_of(cert) != expect.key_kind:
        return f"key differs: {key_kind_of(cert)} in the folder, {expect.key_kind} in the spec"
    if expect.subject is not None and subject_of(cert) != expect.subject:
        shown = ",".join(f"{k}={v}" for k, v in subject_of(cert)) or "(empty)"
        wanted = ",".join(f"{k}={v}" for k, v in expect.subject) or "(empty)"
        return f"subject differs: {shown} in the folder, {wanted} in the spec"
    if sorted(ekus_of(cert)) != sorted(expect.eku) or is_ca(cert) != expect.is_ca:
        return f"usage differs: {','.join(ekus_of(cert))} in the folder, {','.join(expect.eku)} in the spec"
    if ocsp_urls_of(cert) != ([expect.ocsp_url] if expect.ocsp_url else []):
        urls = ",".join(ocsp_urls_of(cert)) or "none"
        return f"OCSP URL differs: {urls} in the folder, {expect.ocsp_url or 'none'} in the spec"
    if cert.not_valid_before_utc > now:
        return (
            f"not valid until {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC: is this machine's clock right?"
        )
    if cert.not_valid_after_utc < now:
        return f"expired {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC (`crdb-certs renew` re-issues it)"
    if expect.issuer is not None:
        try:
            issuer, *older = load_certs(out / expect.issuer)
        except (OSError, ValueError):
            return None  # the CA itself is being made: the plan re-signs everything under it
        if any(signed_by(cert, ca) for ca in older):
            return None  # a CA rotation in progress: rotate-ca asked for every leaf of the old CA
        if not signed_by(cert, issuer):
            return f"signed by another CA than {expect.issuer}"
    return "differs from the spec"
