"""Revocation: `revoke`, `crl` and the OCSP responder's certificate, as plans the runner executes like
`issue`'s (locked, staged, committed, printable as bash).

The docs' workflow keeps what `cockroach cert` does not: the CA database (index.txt), so revoking is the
OpenSSL workflow's own next step: `openssl ca -revoke` marks the certificate there, `openssl ca -gencrl`
signs the CRL PostgreSQL and other TLS peers read, and `openssl ocsp -index` answers CockroachDB
(ocsp.py). The revoked files leave every certs directory (the runner keeps them in backup/), so that the
next `issue` makes the name a new key and certificate with a new serial; the old serial stays revoked.

A revoke killed part-way leaves each file old or new (the database is committed before the certs
directories, so the worst case is a certificate marked revoked that is still in a certs directory: the
audit and `ocsp check` report it, and the same `revoke` again completes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509

from orchestrator import names, plan, recipes, record, script
from orchestrator.cas import CA, signers
from orchestrator.certcheck import Expect, load_cert, load_certs, problems, signed_by
from orchestrator.errors import ExitStatus, SpecError, UserError
from orchestrator.profiles import PROFILES
from orchestrator.render import render
from orchestrator.spec import Spec
from orchestrator.steps import Chmod, Copy, Kind, MakeDirs, Plan, Remove, Run, Step, Task, Verify, Write

# The reasons `openssl ca -crl_reason` takes that fit a leaf (CACompromise is a CA's; certificateHold
# needs -crl_hold and is undone later, which crdb-certs does not do).
REASONS = ("unspecified", "keyCompromise", "affiliationChanged", "superseded", "cessationOfOperation")
CRL_DAYS = 30  # the CRL's nextUpdate: a peer refuses every certificate once it has passed
RESPONDER_RENEW = timedelta(days=7)  # `ocsp serve` makes a new responder certificate this close to its end
_HEX = re.compile(r"^(0x)?[0-9a-fA-F:]+$")


@dataclass(frozen=True)
class Entry:
    """A row of a CA database (index.txt): V (valid), R (revoked) or E (expired), as openssl writes it."""

    status: str
    serial: int
    revoked: str  # "<time>[,<reason>]" for R
    subject: str


@dataclass(frozen=True)
class Target:
    """A certificate to revoke."""

    ca: CA
    serial: int
    cert: str  # a file holding it, which `openssl ca -revoke` reads (relative to the output folder)
    files: tuple[str, ...]  # what leaves the certs directories: every copy, its key (and .pk8)
    revoked: bool  # already marked in the database (a revoke killed before it finished): only the rest

    @property
    def shown(self) -> str:
        return f"{self.cert} (serial {self.serial:X})"


def database(out: Path, ca: CA) -> list[Entry]:
    """The rows of `ca`'s database in `out` ([] when it has none)."""
    try:
        text = (out / ca.database).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    rows = []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) >= 6 and _HEX.match(fields[3]):
            rows.append(Entry(fields[0], int(fields[3], 16), fields[2], fields[5]))
    return rows


def can_sign_crls(out: Path, ca: CA) -> bool:
    """Whether `ca`'s certificate allows CRL signing (cRLSign, or no keyUsage at all): PostgreSQL and
    OpenSSL refuse every certificate against a CRL its CA may not sign."""
    cert = load_cert(out / ca.cert)
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return bool(usage.crl_sign)


class NoCRLSign(UserError):
    """`crl` for a CA that may not sign CRLs: a fact about the folder (exit 1), not a usage mistake."""

    status = ExitStatus.FINDINGS


def no_crl_sign(out: Path, ca: CA) -> str:
    """Why `ca` gets no CRL, and what works instead."""
    return (
        f"{out / ca.cert}: this CA's keyUsage lacks cRLSign (the docs' ca.cnf, and every CA crdb-certs"
        " made before revocation came), so PostgreSQL and `openssl verify -crl_check` would refuse every"
        " certificate against a CRL it signs: use OCSP (`crdb-certs ocsp serve`), which works with any"
        " CA; a CA the secure profile makes from now on (`crdb-certs rotate-ca`) can sign CRLs"
    )


# ------------------------------------------------------------------------------------------- targets


def targets(
    spec: Spec,
    out: Path,
    nodes: tuple[str, ...] = (),
    clients: tuple[str, ...] = (),
    ui: bool = False,
    serials: tuple[str, ...] = (),
) -> list[Target]:
    """What `revoke` was asked for, each checked: every mistake is a one-line error (exit 2) before
    anything is touched."""
    require_ca_here(out, "revoke")
    if not (nodes or clients or ui or serials):
        raise UserError("revoke: name what to revoke: --nodes, --clients, --ui or --serial")
    found: list[Target] = []
    if nodes or clients or ui:
        found += _named(spec, out, nodes, clients, ui)
    for raw in serials:
        found.append(_by_serial(spec, out, raw))
    return list({(t.ca.name, t.serial): t for t in found}.values())


def _named(spec: Spec, out: Path, nodes: tuple[str, ...], clients: tuple[str, ...], ui: bool) -> list[Target]:
    from orchestrator import lifecycle  # (lifecycle imports much that revocation does not need)

    if ui and spec.ui is not None and spec.ui.issuer == "import":
        raise UserError('--ui: ui.issuer is "import": the CA that signed ui.crt revokes it')
    full = plan.build(spec)
    ids = lifecycle.select(spec, out, nodes, clients, ui=ui)
    by_id = {t.id: t for t in full.leaves()}
    copies = [s for t in full.tasks if t.id == "bundles" for s in t.steps if isinstance(s, Copy)]
    authorities = {ca.task_id: ca for ca in signers(spec).all}
    found = []
    for task_id in ids:
        task = by_id[task_id]
        assert task.expect is not None and task.signer is not None
        # The file the plan makes, or a copy of it (a revoke killed part-way may have taken one away).
        where = [task.expect.cert, *(c.dst for c in copies if c.src == task.expect.cert)]
        present = [p for p in where if (out / p).is_file()]
        if not present:
            raise UserError(
                f"{out / task.expect.cert}: missing, so there is nothing to revoke (revoked already?"
                " `crdb-certs issue` makes a new one)"
            )
        ca = authorities[task.signer]
        serial = load_cert(out / present[0]).serial_number
        found.append(_target(out, ca, serial, present[0], f"{task.title} (serial {serial:X})"))
    return found


def _by_serial(spec: Spec, out: Path, raw: str) -> Target:
    if not _HEX.match(raw):
        raise SpecError("--serial", raw, "is not a serial number in hexadecimal (as index.txt shows it)")
    serial = int(raw.removeprefix("0x").replace(":", ""), 16)
    shown = f"{serial:X}"
    authorities = signers(spec).all
    for ca in authorities:
        try:
            ca_certs = load_certs(out / ca.cert)
        except (OSError, ValueError):
            continue
        if any(c.serial_number == serial for c in ca_certs):
            raise SpecError(
                "--serial",
                raw,
                f"is the CA certificate {ca.cert}: a CA is not revoked but replaced (`crdb-certs rotate-ca`)",
            )
    holders = [ca for ca in authorities if any(e.serial == serial for e in database(out, ca))]
    if not holders:
        where = ", ".join(ca.database for ca in authorities)
        raise SpecError("--serial", raw, f"is not in the CA database ({where}): it was not issued here")
    if len(holders) > 1:
        raise SpecError(
            "--serial",
            raw,
            f"is in {holders[0].database} and {holders[1].database}: name the certificate with --nodes,"
            " --clients or --ui",
        )
    ca = holders[0]
    files = _copies(out, ca, serial)
    kept = files or _kept_elsewhere(out, ca, serial)
    if not kept:
        raise SpecError(
            "--serial",
            raw,
            f"is in {ca.database}, but no file of that certificate is left in {out} or its backup/:"
            " `openssl ca -revoke` needs the certificate",
        )
    return _target(out, ca, serial, kept[0], f"serial {shown}")


def _target(out: Path, ca: CA, serial: int, cert: str, what: str) -> Target:
    revoked = any(e.serial == serial and e.status == "R" for e in database(out, ca))
    copies = _copies(out, ca, serial)
    if revoked and not copies:
        raise UserError(f"{what} is already revoked in {ca.database}; nothing to do")
    files = [f for c in copies for f in (c, names.key_for(c), names.key_for(c) + ".pk8")]
    return Target(ca, serial, cert, tuple(f for f in files if (out / f).is_file()), revoked)


def certs_dirs(out: Path) -> list[str]:
    """The certs directories of an output folder (relative): certs/ and every nodes/<name>/."""
    nodes = out / names.NODES_DIR
    found = sorted(p.name for p in nodes.iterdir() if p.is_dir()) if nodes.is_dir() else []
    return [names.CERTS_DIR, *(names.node_dir(n) for n in found)]


def _copies(out: Path, ca: CA, serial: int) -> list[str]:
    """Every certificate file in the certs directories that is `ca`'s certificate `serial`."""
    return [p for folder in certs_dirs(out) for p in _matching(out, folder, "*.crt", ca, serial)]


def _kept_elsewhere(out: Path, ca: CA, serial: int) -> list[str]:
    """A copy kept in backup/ (a certificate replaced by --reissue or renew) or ocsp/ (a responder's)."""
    return [
        *_matching(out, names.OCSP_DIR, "*.crt", ca, serial),
        *sorted(_matching(out, names.BACKUP_DIR, "**/*.crt", ca, serial), reverse=True),
    ]


def _matching(out: Path, folder: str, pattern: str, ca: CA, serial: int) -> list[str]:
    try:
        issuers = load_certs(out / ca.cert)
    except (OSError, ValueError):
        return []
    found = []
    for path in sorted((out / folder).glob(pattern)) if (out / folder).is_dir() else []:
        if path.name.startswith("ca"):
            continue  # a CA file (ca.crt, ca-client.crt, ca-ui.crt)
        try:
            cert = load_cert(path)
        except (OSError, ValueError):
            continue
        if cert.serial_number == serial and any(signed_by(cert, issuer) for issuer in issuers):
            found.append(path.relative_to(out).as_posix())
    return found


def require_ca_here(out: Path, command: str) -> None:
    """Revocation needs the CA's database and key: not in a folder whose CA is elsewhere (csr + import)."""
    held = record.read(out)
    if held is not None and held.provenance is record.Provenance.SIGNED_ELSEWHERE:
        raise UserError(
            f"{command}: {out} is signed by {held.provenance.about()}: that CA keeps the database and"
            " revokes its certificates"
        )
    if not (out / "index.txt").is_file():
        raise UserError(f"{out}: no CA database (index.txt) here; `crdb-certs issue` makes the PKI first")


# --------------------------------------------------------------------------------------------- plans


def revoke_plan(spec: Spec, out: Path, chosen: list[Target], reason: str, crl_days: int) -> Plan:
    """`openssl ca -revoke` for each target (against its CA's database), the CRLs of the CAs touched
    made again, and every copy of each revoked certificate (with its key) taken out of the certs
    directories (the runner keeps them in backup/ first)."""
    tasks: list[Task] = []
    for target in chosen:
        if target.revoked:
            continue  # marked by a revoke killed before it took the files away: only the rest is left
        ca = target.ca
        argv = (*ca.openssl_ca(), "-revoke", target.cert, "-crl_reason", reason, "-batch")
        reads = (ca.cnf, ca.key, ca.cert, target.cert, ca.database)
        run = Run(argv, Kind.REVOKE, reads=reads, writes=(ca.database,))
        tasks.append(Task(f"revoke:{ca.name}:{target.serial:X}", f"revoke {target.shown}", (run,)))
    touched = list({t.ca.name: t.ca for t in chosen}.values())
    tasks += [crl_task(ca, out, crl_days) for ca in touched if can_sign_crls(out, ca)]
    drop = tuple(dict.fromkeys(f for t in chosen for f in t.files))
    return Plan(spec, tuple(tasks), plan.build(spec).bundles, drop)


def crl_plan(spec: Spec, out: Path, days: int) -> Plan:
    """A new CRL for every CA of the folder; refused for a CA that may not sign CRLs."""
    require_ca_here(out, "crl")
    authorities = signers(spec).all
    for ca in authorities:
        if not (out / ca.cert).is_file():
            raise UserError(f"{out / ca.cert}: missing; `crdb-certs issue` makes the PKI first")
        if not can_sign_crls(out, ca):
            raise NoCRLSign(no_crl_sign(out, ca))
    return Plan(spec, tuple(crl_task(ca, out, days) for ca in authorities))


def crl_task(ca: CA, out: Path, days: int) -> Task:
    """`openssl ca -gencrl`: every certificate revoked in `ca`'s database, signed by `ca`, numbered."""
    cnf, number, crl = names.crl_config(ca.name), names.crl_number(ca.name), names.crl(ca.name)
    steps: list[Step] = [
        Write(cnf, render("crl.cnf.j2", ca=ca, crlnumber=number)),
        MakeDirs((names.CRL_DIR,)),
    ]
    if not (out / number).is_file():
        steps.append(Write(number, "01\n"))  # the first CRL is number 1; openssl counts on from there
    argv: tuple[str, ...] = ("openssl", "ca", "-config", cnf, "-gencrl", "-keyfile", ca.key, "-cert", ca.cert)
    argv += ("-out", crl, "-crldays", str(days), "-batch")
    steps += [
        Run(argv, Kind.REVOKE, reads=(cnf, ca.key, ca.cert, ca.database, number), writes=(crl, number)),
        Chmod(names.CERT_MODE, crl),  # public, like a CA certificate
    ]
    return Task(f"crl:{ca.name}", f"CRL {crl}", tuple(steps))


def responder_plan(spec: Spec, out: Path, now: datetime | None = None) -> Plan:
    """An OCSP responder certificate and key (ocsp/<ca>.responder.crt/.key) for every CA of the folder
    that has none, or one that is wrong or ends within RESPONDER_RENEW: its CA delegates to it the
    signing of OCSP answers, so that the CA key is never read by the long-running responder."""
    require_ca_here(out, "ocsp serve")
    now = now or datetime.now(UTC)
    tasks = []
    for ca in signers(spec).all:
        task = responder_task(spec, ca, out)
        assert task.expect is not None
        if problems(task.expect, out, now) or _ends_soon(out / task.expect.cert, now):
            tasks.append(task)
    return Plan(spec, tuple(tasks))


def _ends_soon(cert: Path, now: datetime) -> bool:
    return load_cert(cert).not_valid_after_utc - now < RESPONDER_RENEW


def responder_task(spec: Spec, ca: CA, out: Path) -> Task:
    profile = PROFILES[spec.profile]
    cert = names.responder_cert(ca.name)
    key = names.key_for(cert)
    cnf = f"{names.REQUESTS_DIR}/ocsp.{ca.name}.cnf"
    csr = f"{names.REQUESTS_DIR}/ocsp.{ca.name}.csr"
    common_name = f"{ca.common_name} OCSP responder"
    days = recipes.Lifetimes(spec.ca_days or profile.ca_days, spec.cert_days or profile.cert_days)
    try:
        ca_end = load_cert(out / ca.cert).not_valid_after_utc
    except (OSError, ValueError):
        ca_end = None
    if profile.cap_at_ca and ca_end and datetime.now(UTC) + timedelta(days=days.cert) > ca_end:
        days = recipes.Lifetimes(days.ca, days.cert, {ca.name: ca_end.strftime("%Y%m%d%H%M%SZ")})
    expect = Expect(
        cert=cert,
        key=key,
        issuer=ca.cert,
        subject=(("O", "Cockroach"), ("CN", common_name)),
        eku=("OCSPSigning",),
        key_kind=recipes.key_kind(spec),
        responder=True,
    )
    steps: tuple[Step, ...] = (
        MakeDirs((names.OCSP_DIR, names.REQUESTS_DIR)),
        Write(cnf, render("ocsp-responder.cnf.j2", common_name=common_name)),
        *recipes.key_and_request_steps(cnf, key, csr, spec, profile, new_key=True),
        *recipes.sign_steps(ca, profile, "ocsp_responder", csr, cert, (cnf, "ocsp_responder"), days),
        Remove((f"{names.CERTS_DIR}/*.pem",)),  # openssl ca -outdir's copy, as `issue` removes them
        Verify(expect),
    )
    return Task(f"ocsp:{ca.name}", f"OCSP responder of {ca.cert}", steps, expect, signer=ca.task_id)


def script_for(todo: Plan, out: Path) -> str:
    """`revoke --plan`: the plan as bash, ending with the revoked files moved into the backup."""
    from orchestrator import lifecycle

    lines = [
        "",
        "# --- take the revoked certificates and keys out of the certs directories (kept in the backup)",
        'backup=backup/"${stamp:-$(date -u +%Y%m%dT%H%M%SZ)}"',
    ]
    for path in todo.drop:
        folder = script.quote(f"{Path(path).parent.as_posix()}")
        lines += [f'mkdir -p "$backup"/{folder}', f'mv {script.quote(path)} "$backup"/{folder}/']
    return lifecycle.script_for(todo, out, "crdb-certs revoke") + "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------------- next steps


def after_revoke(spec: Spec, out: Path, config: Path | None, chosen: list[Target], crls: list[str]) -> str:
    """What the operator does next, in lines they can paste (every path quoted)."""
    flag = f" --config {script.quote(config)}" if config else ""
    q = script.quote
    lines = ["", "Next:"]
    for crl in crls:
        lines.append(
            f"  copy {q(out / crl)} to every peer that reads CRLs (PostgreSQL ssl_crl_file, HAProxy crl-file,"
            " ...) and reload it"
        )
    if spec.ocsp_url:
        lines.append(f"  OCSP answers revoked at once: crdb-certs ocsp check --out {q(out)}")
    else:
        lines.append(
            "  CockroachDB reads no CRL: for it, set [ocsp] url in the spec, `crdb-certs issue --reissue`"
            f"{flag} --out {q(out)}, run `crdb-certs ocsp serve --out {q(out)}`, then"
            " SET CLUSTER SETTING security.ocsp.mode = strict;"
        )
    gone = sorted({Path(f).parent.as_posix() for t in chosen for f in t.files})
    if gone:
        lines.append(
            f"  make the replacements: crdb-certs issue{flag} --out {q(out)}  (then copy "
            + ", ".join(q(out / d) + "/" for d in gone)
            + " where they are used)"
        )
    return "\n".join(lines)
