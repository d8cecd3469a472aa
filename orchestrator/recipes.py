"""The recipes: which openssl commands, in the docs' order, make each kind of certificate (a CA, the CA
database, a node, a client, the DB Console), with what each must turn out to be (certcheck.Expect)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from orchestrator import names, validate
from orchestrator.bundles import ui_home
from orchestrator.cas import CA
from orchestrator.certcheck import Expect
from orchestrator.profiles import Profile
from orchestrator.render import render
from orchestrator.spec import UI, Layout, Spec
from orchestrator.steps import (
    Append,
    Chmod,
    Copy,
    Kind,
    RandomSerial,
    Remove,
    Run,
    Step,
    Task,
    Verify,
    Write,
)

UI_TASK = "ui"  # the id of the DB Console certificate's task (`renew --ui` names it)


@dataclass(frozen=True)
class Lifetimes:
    ca: int
    cert: int
    caps: dict[str, str] = field(default_factory=dict)  # CA name -> `openssl ca -enddate` for its leaves


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


def ca_task(ca: CA, profile: Profile, days: Lifetimes, spec: Spec, rotate: bool, new_key: bool) -> Task:
    """A CA certificate (made here, or your own copied in); with `rotate`, the old one is kept after the
    new one in the CA file; with `new_key`, a new CA key is made first."""
    cnf_text = render(
        "ca.cnf.j2",
        profile=profile,
        ca=ca,
        cert_days=days.ca if profile.days_on_sign else days.cert,
        organization=spec.organization,
        ocsp_url=spec.ocsp_url,
    )
    if ca.external:
        # The user's CA: its certificate is copied in, its key is only ever read where it lies.
        expect = Expect(cert=ca.cert, key=ca.key, issuer=None, subject=None, is_ca=True)
        steps: tuple[Step, ...] = (
            Write(ca.cnf, cnf_text),
            Copy(str(ca.external.cert), ca.cert),
            Verify(expect),
        )
        return Task(ca.task_id, f"CA {ca.cert} (yours)", steps, expect)
    expect = Expect(
        cert=ca.cert,
        key=ca.key,
        issuer=ca.cert,
        subject=(("O", spec.organization), ("CN", ca.common_name)),
        is_ca=True,
    )
    # rotate-ca: the old CA certificate is set aside, and appended to the new one once that is made.
    previous = f"{names.REQUESTS_DIR}/{ca.name}.old.crt"
    steps = (
        Write(ca.cnf, cnf_text),
        *((Copy(ca.cert, previous),) if rotate else ()),
        *(key_steps(ca.key, spec) if new_key else ()),
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
            Kind.SELF_SIGN,
            reads=(ca.cnf, ca.key),
            writes=(ca.cert,),
        ),
        # (`previous` is a scratch copy: removed once appended, never left in requests/)
        *((Append(previous, ca.cert), Remove((previous,))) if rotate else ()),
        Verify(expect),
    )
    title = f"CA {ca.cert}" + (" (new CA first, the old one after it)" if rotate else "")
    return Task(ca.task_id, title, steps, expect)


def database_task(ca: CA, profile: Profile) -> Task:
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


def node_task(
    name: str, hosts: tuple[str, ...], spec: Spec, profile: Profile, ca: CA, days: Lifetimes, new_key: bool
) -> Task:
    where = names.node_dir(name)
    key, cert = f"{where}/{names.NODE_KEY}", f"{where}/{names.NODE_CERT}"
    cnf, csr = f"{names.REQUESTS_DIR}/node.{name}.cnf", f"{names.REQUESTS_DIR}/node.{name}.csr"
    # In the split layouts node.crt only serves; client.node.crt is what a node presents when it dials.
    # The docs' profiles sign with the docs' ca.cnf, which writes both usages whatever the layout.
    needed = ("serverAuth",) if spec.layout != Layout.STANDARD else ("serverAuth", "clientAuth")
    eku = needed if profile.extfile else ("serverAuth", "clientAuth")
    dns, ips = split_hosts(hosts)
    cnf_text = render(
        "node.cnf.j2",
        profile=profile,
        common_name=profile.node_cn,
        sans=_sans(dns, ips),
        section="node_certificate",
        eku=",".join(eku),
        organization=spec.organization,
        ocsp_url=spec.ocsp_url,
    )
    extfile = (cnf, "node_certificate") if profile.extfile else None
    subject = (("O", spec.organization),) + ((("CN", profile.node_cn),) if profile.node_cn else ())
    expect = Expect(
        cert=cert,
        key=key,
        issuer=ca.cert,
        subject=subject,
        dns=dns,
        ips=ips,
        eku=eku,
        role_eku=needed,
        key_kind=key_kind(spec),
        ocsp_url=spec.ocsp_url,
    )
    steps = (
        Write(cnf, cnf_text),
        *key_and_request_steps(cnf, key, csr, spec, profile, new_key),
        *sign_steps(ca, profile, "signing_node_req", csr, cert, extfile, days),
        Verify(expect),
    )
    return Task(f"node:{name}", f"node {name}", steps, expect, signer=ca.task_id)


def client_task(
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
        profile=profile,
        common_name=request.user,
        root_san=root_san,
        first_user=request.first_user,
        organization=spec.organization,
    )
    expect = Expect(
        cert=request.cert,
        key=request.key,
        issuer=ca.cert,
        subject=(("O", spec.organization), ("CN", request.user)),
        dns=("root",) if root_san else (),
        eku=("clientAuth",),
        key_kind=key_kind(spec),
        ocsp_url=spec.ocsp_url,
    )
    steps: tuple[Step, ...] = (
        Write(cnf, cnf_text),
        *key_and_request_steps(cnf, request.key, csr, spec, profile, new_key, request.user.isascii()),
        *sign_steps(ca, profile, "signing_client_req", csr, request.cert, None, days),
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
                Kind.CONVERT,
                reads=(request.key,),
                writes=(pk8,),
            ),
            Chmod(names.KEY_MODE, pk8),
        )
    title = f"client {request.user}" if request.user != "node" else request.cert
    return Task(task_id, title, steps, expect, signer=ca.task_id)


def ui_task(
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
    cnf_text = render(
        "ui.cnf.j2",
        common_name=ui.common_name,
        sans=_sans(dns, ips),
        organization=spec.organization,
        ocsp_url=spec.ocsp_url,
    )
    expect = Expect(
        cert=cert,
        key=key,
        issuer=ca.cert,
        subject=(("O", spec.organization), ("CN", ui.common_name)),
        dns=dns,
        ips=ips,
        eku=("serverAuth",),
        key_kind=key_kind(spec),
        ocsp_url=spec.ocsp_url,
    )
    steps = (
        Write(cnf, cnf_text),
        *key_and_request_steps(cnf, key, csr, spec, profile, new_key),
        *sign_steps(ca, profile, "signing_node_req", csr, cert, (cnf, "ui_certificate"), days),
        Verify(expect),
    )
    return Task(UI_TASK, "DB Console certificate", steps, expect, signer=ca.task_id)


def key_kind(spec: Spec) -> str:
    """The key a leaf must have (certcheck.key_kind_of): changing key_type or key_bits is a difference."""
    return "EC P-256" if spec.key_type == "ec" else f"RSA {spec.key_bits}"


def key_steps(key: str, spec: Spec) -> tuple[Step, ...]:
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
    return (Run(argv, Kind.KEY, writes=(key,)), Chmod(names.KEY_MODE, key))


def request_step(cnf: str, key: str, csr: str, ascii_only: bool) -> Run:
    # -utf8 only when a value needs it, so that ASCII requests stay the docs' command exactly.
    utf8 = () if ascii_only else ("-utf8",)
    return Run(
        ("openssl", "req", "-new", *utf8, "-config", cnf, "-key", key, "-out", csr, "-batch"),
        Kind.REQUEST,
        reads=(cnf, key),
        writes=(csr,),
    )


def key_and_request_steps(
    cnf: str, key: str, csr: str, spec: Spec, profile: Profile, new_key: bool, ascii_only: bool = True
) -> tuple[Step, ...]:
    """A certificate's CSR, and first its key when it needs a new one: in one `openssl req -newkey` when
    the profile says so (the same key as genpkey/genrsa make: unencrypted PKCS#8, under umask 077)."""
    if not new_key:
        return (request_step(cnf, key, csr, ascii_only),)
    if not profile.key_with_request:
        return (*key_steps(key, spec), request_step(cnf, key, csr, ascii_only))
    utf8 = () if ascii_only else ("-utf8",)
    if spec.key_type == "ec":
        newkey: tuple[str, ...] = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256")
    else:
        newkey = ("-newkey", f"rsa:{spec.key_bits}")
    # -nodes: no passphrase (OpenSSL 3 also calls it -noenc, which 1.1.1 does not know).
    argv = ("openssl", "req", "-new", *utf8, "-config", cnf, *newkey, "-nodes", "-keyout", key, "-out", csr)
    return (
        Run((*argv, "-batch"), Kind.KEY_AND_REQUEST, reads=(cnf,), writes=(key, csr)),
        Chmod(names.KEY_MODE, key),
    )


def sign_steps(
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
    argv = [*ca.openssl_ca(), "-policy", "signing_policy"]
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
    steps.append(Run(tuple(argv), Kind.SIGN, reads=tuple(reads), writes=(cert, ca.database, ca.serial)))
    return tuple(steps)


def split_hosts(hosts: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """DNS names first, then IP addresses, each in the spec's order (as `cockroach cert list` shows them)."""
    ips = tuple(h for h in hosts if _is_ip(h))
    return tuple(h for h in hosts if h not in ips), ips


def _sans(dns: tuple[str, ...], ips: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple(("DNS", h) for h in dns) + tuple(("IP", ip) for ip in ips)


def _is_ip(host: str) -> bool:
    # Told without ipaddress where the text decides (~5 µs a host, issue 16): a name has no colon and more
    # than digits and dots; a dotted quad without leading zeros is an address.
    if ":" not in host and not host.replace(".", "").isdigit():
        return False
    if validate.is_plain_ipv4(host):
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
