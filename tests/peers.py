"""Independent peers that use the certificates the way CockroachDB's parties do: Python `ssl` mutual TLS
(a node serving, a client or another node dialing) and a real PostgreSQL server doing certificate
authentication for libpq clients with sslmode=verify-full."""

from __future__ import annotations

import contextlib
import os
import pwd
import random
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Party:
    cert: Path | None  # None: present no certificate
    key: Path | None
    trusts: Path  # the CA file this party verifies its peer against


def handshake(server: Party, client: Party, hostname: str = "localhost", client_auth: bool = True) -> str:
    """Mutual TLS on 127.0.0.1; returns the CN of the client certificate the server accepted ("" when
    `client_auth` is off, as for a browser on the DB Console).

    Raises ssl.SSLError (or ConnectionError) on either side's refusal.
    """
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # CockroachDB's minimum
    assert server.cert and server.key
    server_ctx.load_cert_chain(server.cert, server.key)
    server_ctx.load_verify_locations(server.trusts)
    server_ctx.verify_mode = ssl.CERT_REQUIRED if client_auth else ssl.CERT_NONE
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the host name
    client_ctx.load_verify_locations(client.trusts)
    if client.cert and client.key:
        client_ctx.load_cert_chain(client.cert, client.key)

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    outcome: dict[str, object] = {}

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            conn.settimeout(10)
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                der = tls.getpeercert(binary_form=True)
                names = (
                    x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
                    if der
                    else []
                )
                outcome["cn"] = str(names[0].value) if names else ""
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError) as e:
            outcome["error"] = e
        finally:
            listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            client_ctx.wrap_socket(raw, server_hostname=hostname) as tls,
        ):
            # TLS 1.3 sends the server's verdict on the client certificate after the handshake: read it.
            if tls.recv(2) != b"ok":
                raise ConnectionError(f"server refused the client: {outcome.get('error')}")
    finally:
        thread.join(10)
    if "error" in outcome:
        raise ConnectionError(f"server refused the client: {outcome['error']}")
    return str(outcome["cn"])


# ------------------------------------------------------------------------------------------ PostgreSQL

PG_USER = "crdbcerts-pg"  # PostgreSQL refuses to run as root: the tests create this unprivileged user


def postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if found:
        return found[-1].parent
    on_path = shutil.which("postgres")
    if on_path:
        return Path(on_path).parent
    raise RuntimeError("no PostgreSQL server found (Debian: apt-get install postgresql; .ci/run does this)")


def _run_as() -> dict[str, object]:
    if os.geteuid() != 0:
        return {}
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
            check=True,
            capture_output=True,
        )
    return {"user": PG_USER}


_TEMPLATES: dict[Path, Path] = {}  # postgres bin folder -> this process's initdb'd data directory


def _template(bin_dir: Path, run_as: dict[str, object]) -> Path:
    """A fresh cluster's data directory, made by initdb once per process (remove_templates removes it)."""
    if bin_dir not in _TEMPLATES:
        folder = Path(tempfile.mkdtemp(prefix="crdb-certs-pg-template-", dir="/tmp"))
        _TEMPLATES[bin_dir] = folder / "data"
        if run_as:
            shutil.chown(folder, user=PG_USER)
        argv = [str(bin_dir / "initdb"), "-D", str(folder / "data"), "-U", "postgres", "--no-sync"]
        argv += ["--auth-local=trust", "--auth-host=reject"]
        subprocess.run(argv, check=True, capture_output=True, **run_as)  # type: ignore[call-overload]
    return _TEMPLATES[bin_dir]


def remove_templates() -> None:
    """At the end of a test session (tests/conftest.py)."""
    for data in _TEMPLATES.values():
        shutil.rmtree(data.parent, ignore_errors=True)
    _TEMPLATES.clear()


class PostgresServer:
    """A throw-away PostgreSQL cluster with ssl=on and `hostssl … cert` authentication.

    Each is a cluster of its own, copied from one template that initdb makes once per test process (initdb
    takes seconds, a copy a fraction of one). It runs without fsync: a throw-away cluster needs no
    durability, and CREATE ROLE/DATABASE would otherwise wait for the disk."""

    def __init__(
        self, server_cert: Path, server_key: Path, client_ca: Path, roles: list[str], crl: Path | None = None
    ) -> None:
        self.bin = postgres_bin()
        self.run_as = _run_as()
        self.dir = Path(tempfile.mkdtemp(prefix="crdb-certs-pg-", dir="/tmp"))
        self.data = self.dir / "data"
        self.port = _free_port()
        if self.run_as:
            shutil.chown(self.dir, user=PG_USER)
        # cp -a keeps the owner (the PostgreSQL user) and the data directory's mode 0700.
        subprocess.run(["cp", "-a", str(_template(self.bin, self.run_as)), str(self.data)], check=True)
        files = [(server_cert, "server.crt"), (server_key, "server.key"), (client_ca, "ca.crt")]
        files += [(crl, "root.crl")] if crl else []  # the client CA's CRL: revoked clients are refused
        for source, name in files:
            target = self.data / name
            shutil.copyfile(source, target)
            target.chmod(0o600)
            if self.run_as:
                shutil.chown(target, user=PG_USER)
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
                "ssl_ca_file = 'ca.crt'\nlisten_addresses = '127.0.0.1'\n"
                f"port = {self.port}\nunix_socket_directories = '{self.dir}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                + ("ssl_crl_file = 'root.crl'\n" if crl else "")
            )
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\nhostssl all all 127.0.0.1/32 cert\nhostssl all all ::1/128 cert\n"
        )
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-w", "start")
        for role in roles:
            self._pg(
                "psql",
                "-h",
                str(self.dir),
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                f'CREATE ROLE "{role}" LOGIN',
            )

    def _pg(self, tool: str, *args: str) -> None:
        subprocess.run([str(self.bin / tool), *args], check=True, capture_output=True, **self.run_as)  # type: ignore[call-overload]

    def current_user(self, user: str, cert: Path, key: Path, root_ca: Path, host: str = "localhost") -> str:
        """Connect as a CockroachDB client does (libpq, sslmode=verify-full); return `current_user`.

        `host` is the name verified against the server certificate; the connection goes to 127.0.0.1.
        """
        conninfo = (
            f"host={host} hostaddr=127.0.0.1 port={self.port} dbname=postgres user={user} "
            f"sslmode=verify-full sslrootcert={root_ca} sslcert={cert} sslkey={key}"
        )
        done = subprocess.run(
            [str(self.bin / "psql"), conninfo, "-Atc", "select current_user"],
            capture_output=True,
            text=True,
            env={**os.environ, "PGCONNECT_TIMEOUT": "10"},
        )
        if done.returncode != 0:
            raise ConnectionError(done.stderr.strip())
        return done.stdout.strip()

    def sql(self, statement: str) -> None:
        """Run a statement as the superuser, over the Unix socket."""
        where = ("-h", str(self.dir), "-p", str(self.port), "-U", "postgres", "-d", "postgres")
        self._pg("psql", *where, "-c", statement)

    def serve(self, cert: Path, key: Path) -> None:
        """Replace the server's certificate and key and reload it (as SIGHUP does for CockroachDB); return
        once it serves the new certificate."""
        self._install(cert, key)
        self._pg("pg_ctl", "-D", str(self.data), "reload")
        wanted = x509.load_pem_x509_certificate(cert.read_bytes())
        deadline = time.monotonic() + 10
        while served_certificate(self.port) != wanted:  # a reload is asynchronous
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not load {cert}: {(self.dir / 'log').read_text()}")
            time.sleep(0.05)

    def replace_on_disk(self, cert: Path, key: Path) -> None:
        """Replace the files only: the running server keeps serving what it loaded (a node not reloaded)."""
        self._install(cert, key)

    def _install(self, cert: Path, key: Path) -> None:
        for source, name in ((cert, "server.crt"), (key, "server.key")):
            target = self.data / name
            target.unlink()
            shutil.copyfile(source, target)
            target.chmod(0o600)
            if self.run_as:
                shutil.chown(target, user=PG_USER)

    def stop(self) -> None:
        subprocess.run(
            [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
            capture_output=True,
            **self.run_as,
        )  # type: ignore[call-overload]
        shutil.rmtree(self.dir, ignore_errors=True)


def postgres_logins(certs: Path, users: list[str]) -> list[str]:
    """Start PostgreSQL with `certs`' node.crt (client CA: ca.crt), log each user in with its own client
    certificate as a CockroachDB client would (verify-full), and return `current_user` for each."""
    server = PostgresServer(certs / "node.crt", certs / "node.key", certs / "ca.crt", roles=users)
    try:
        return [
            server.current_user(u, certs / f"client.{u}.crt", certs / f"client.{u}.key", certs / "ca.crt")
            for u in users
        ]
    finally:
        server.stop()


def served_certificate(port: int, host: str = "127.0.0.1") -> x509.Certificate | None:
    """The certificate a PostgreSQL (or CockroachDB) SQL port serves: SSLRequest, 'S', then TLS."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=5) as raw:
            raw.sendall(struct.pack("!II", 8, 80877103))
            if raw.recv(1) != b"S":
                return None
            with context.wrap_socket(raw) as tls:
                der = tls.getpeercert(binary_form=True)
    except OSError:
        return None
    return x509.load_der_x509_certificate(der) if der else None


class TcpListener:
    """A plain TCP server on 127.0.0.1 that answers every connection with `answer` and closes it
    (`answer=None`: says nothing and keeps it open, until stopped)."""

    def __init__(self, answer: bytes | None) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.answer = answer
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return  # stopped
            if self.answer is None:
                self.held.append(conn)
                continue
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(64)
                    conn.sendall(self.answer)
                except OSError:
                    pass

    def stop(self) -> None:
        _close_listener(self.server)
        for conn in self.held:
            conn.close()
        self.thread.join(5)


class TlsServer:
    """Python `ssl` serving a certificate on 127.0.0.1, as the DB Console's HTTPS port does."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.load_cert_chain(cert, key)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return  # stopped
            conn.settimeout(5)
            try:
                with self.context.wrap_socket(conn, server_side=True):
                    pass
            except OSError:
                conn.close()

    def stop(self) -> None:
        _close_listener(self.server)
        self.thread.join(5)


def _close_listener(server: socket.socket) -> None:
    with contextlib.suppress(OSError):  # shutdown wakes the thread blocked in accept(); close may not
        server.shutdown(socket.SHUT_RDWR)
    server.close()


def _free_port() -> int:
    """A loopback port free now, below the kernel's ephemeral range: a port the kernel hands out (bind 0)
    is in that range, where every outgoing connection of the parallel test workers also takes its local
    port, so a server started a moment later could find it taken (seen: EADDRINUSE under xdist)."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        port = random.randrange(10000, max(low, 10001))
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port below the ephemeral range")
