"""The hand-off to a CA crdb-certs may not touch: `csr` makes the keys and requests (and says what each
request needs), `import` installs what that CA returned where `issue` would have made it."""

from __future__ import annotations

from pathlib import PurePosixPath

from orchestrator import names, plan
from orchestrator.cas import signers
from orchestrator.recipes import UI_TASK
from orchestrator.record import Provenance
from orchestrator.spec import Spec
from orchestrator.steps import Copy, Kind, Plan, RandomSerial, Run, Step, Task, Verify, Write


def build_requests(spec: Spec, state: plan.State) -> Plan:
    """`crdb-certs csr`: keys, request configs and CSRs for every certificate, for a CA that crdb-certs may
    not touch. A key that already exists is kept (its CSR was sent already)."""
    full = plan.build(spec)
    tasks = [full.tasks[0]]  # the directories
    for task in full.tasks:
        if task.expect is None or task.signer is None or task.expect.key in state.present:
            continue
        steps = tuple(s for s in task.steps if not isinstance(s, Verify) and not _is_signing(s))
        tasks.append(Task(task.id, task.title, steps))
    sheet = Write(names.REQUESTS_SHEET, requests_sheet(full))
    tasks.append(Task("requests-sheet", f"what each request needs ({names.REQUESTS_SHEET})", (sheet,)))
    tasks.append(plan.record_task(spec, Provenance.SIGNED_ELSEWHERE))
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
            "  subject:            " + ", ".join(f"{k}={v}" for k, v in expect.subject or ()),
            "  subjectAltName:     " + (", ".join(n for n in (dns, ips) if n) or "(none)"),
            "  basicConstraints:   critical, CA:FALSE",
            f"  keyUsage:           critical, {key_usage} (never keyCertSign or cRLSign)",
            "  extendedKeyUsage:   " + ", ".join(expect.needed_eku),
        ]
        if expect.ocsp_url:
            lines.append(f"  authorityInfoAccess: OCSP;URI:{expect.ocsp_url}  (the spec's [ocsp] url)")
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
    full = plan.build(spec)
    tasks = [full.tasks[0]]
    for ca in signers(spec).all:
        tasks.append(Task(ca.task_id, f"CA {ca.cert} (yours)", (Copy(returned[ca.name], ca.cert),)))
    for task in full.tasks:
        if task.expect is not None and task.signer is not None:
            tasks.append(Task(task.id, task.title, (Copy(returned[task.id], task.expect.cert),)))
        elif task.id in (UI_TASK, "bundles"):  # an imported UI certificate is installed as `issue` would
            tasks.append(task)
    tasks.append(plan.record_task(spec, Provenance.SIGNED_ELSEWHERE))
    return Plan(spec, tuple(tasks), full.bundles)


def request_of(task: Task) -> str:
    """The CSR a certificate's task writes (requests/<name>.csr)."""
    return next(
        path
        for s in task.steps
        if isinstance(s, Run) and s.kind in (Kind.REQUEST, Kind.KEY_AND_REQUEST)
        for path in s.writes
        if path.endswith(".csr")
    )


def _is_signing(step: Step) -> bool:
    return isinstance(step, RandomSerial) or (isinstance(step, Run) and step.kind is Kind.SIGN)
