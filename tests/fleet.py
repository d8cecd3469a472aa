"""Real parts for the deploy tests: an OpenSSH server on a loopback port with a host key and a client key
of its own, and stand-in nodes that serve a certificate from their certs directory as CockroachDB does
(an SSLRequest, then TLS) and re-read it on SIGHUP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.peers import _free_port

SSHD = Path("/usr/sbin/sshd")


def free_port() -> int:
    return _free_port()  # below the ephemeral range: see peers._free_port


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


class Sshd:
    """sshd -D on 127.0.0.1:PORT as root, its own host key, one authorized client key; and the
    environment Ansible needs to reach it (the client key, a known_hosts holding the host key)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.port = free_port()
        host_key, self.client_key = folder / "host_key", folder / "client_key"
        for key in (host_key, self.client_key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
        authorized = folder / "authorized_keys"
        authorized.write_bytes(self.client_key.with_suffix(".pub").read_bytes())
        authorized.chmod(0o600)
        self.known_hosts = folder / "known_hosts"
        public = host_key.with_suffix(".pub").read_text().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {public[0]} {public[1]}\n")
        config = folder / "sshd_config"
        config.write_text(
            f"ListenAddress 127.0.0.1\nHostKey {host_key}\nAuthorizedKeysFile {authorized}\n"
            f"PidFile {folder / 'sshd.pid'}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nMaxStartups 100:30:200\n"
            "MaxSessions 100\nSubsystem sftp internal-sftp\nLogLevel ERROR\n"
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # its privilege separation directory
        self.log = folder / "sshd.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", config, "-p", str(self.port)], stdout=subprocess.DEVNULL, stderr=log
            )
        wait_for_port(self.port, self.proc)

    def env(self) -> dict[str, str]:
        """What a user sets for Ansible to reach the nodes: the key, and host keys checked."""
        return {
            "ANSIBLE_PRIVATE_KEY_FILE": str(self.client_key),
            "ANSIBLE_HOST_KEY_CHECKING": "True",
            "ANSIBLE_SSH_COMMON_ARGS": (
                f"-o UserKnownHostsFile={self.known_hosts} -o StrictHostKeyChecking=yes"
            ),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.folder / "cp"),
            "ANSIBLE_LOCAL_TEMP": str(self.folder / "tmp"),
            # The node's Python: the system's (discovery may pick a pyenv shim that does not run).
            "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3"
            if Path("/usr/bin/python3").exists()
            else sys.executable,
        }

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


STANDIN = r"""
import signal, socket, ssl, sys, threading
certs, port = sys.argv[1], int(sys.argv[2])
def load():
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs + "/node.crt", certs + "/node.key")
    return context
current = [load()]
def reload(signum, frame):
    try:
        current[0] = load()  # as CockroachDB: a folder it cannot read leaves the old certificate served
    except (OSError, ssl.SSLError) as e:
        print("reload failed:", e, file=sys.stderr, flush=True)
signal.signal(signal.SIGHUP, reload)
server = socket.create_server(("127.0.0.1", port))
def answer(conn):
    with conn:
        conn.settimeout(5)
        try:
            if len(conn.recv(8)) == 8:  # the SSLRequest
                conn.sendall(b"S")
                with current[0].wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
        except (OSError, ssl.SSLError):
            pass
print("ready", flush=True)
sys.stdout.close()
while True:
    conn, _ = server.accept()
    threading.Thread(target=answer, args=(conn,), daemon=True).start()
"""


class StandIn:
    """A node: serves <folder>/certs/node.crt on a loopback port (SSLRequest, then TLS), re-reads it on
    SIGHUP; its pid in <folder>/standin.pid, which `pkill -HUP -F ../standin.pid` run in its certs
    directory signals."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder, self.certs, self.port = folder, folder / "certs", port
        with (folder / "standin.log").open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", STANDIN, str(self.certs), str(self.port)],
                stdout=subprocess.PIPE,
                stderr=log,
            )
        assert self.proc.stdout is not None
        ready = self.proc.stdout.readline()
        self.proc.stdout.close()
        if ready != b"ready\n":
            raise RuntimeError(f"stand-in {folder} did not start: {(folder / 'standin.log').read_text()}")
        (folder / "standin.pid").write_text(f"{self.proc.pid}\n")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
