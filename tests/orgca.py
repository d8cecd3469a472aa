"""A stand-in for a public or organizational CA, built with `cryptography` (not with openssl and not with
crdb-certs), to make certificates that crdb-certs must import or refuse; and an organization's root and
issuing (intermediate) CA made with plain openssl commands, as its own team would make them."""

from __future__ import annotations

import ipaddress
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Org"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _write_key(key: PrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)


class OrgCA:
    def __init__(self, folder: Path, cn: str = "Example Org Root CA", key_cert_sign: bool = True) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(_name(cn))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=key_cert_sign,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.cert_path, self.key_path = folder / "org-ca.crt", folder / "org-ca.key"
        self.cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        _write_key(self.key, self.key_path)

    def issue(
        self,
        folder: Path,
        name: str,
        hosts: list[str],
        server_auth: bool = True,
        not_after: datetime | None = None,
        cn: str | None = None,
    ) -> tuple[Path, Path]:
        """A server certificate for `hosts`: returns (cert path, key path)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        not_after = not_after or now + timedelta(days=90)
        sans: list[x509.GeneralName] = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        eku = [ExtendedKeyUsageOID.SERVER_AUTH] if server_auth else [ExtendedKeyUsageOID.CLIENT_AUTH]
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(cn or hosts[0]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(min(now - timedelta(days=1), not_after - timedelta(days=2)))
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, key_path)
        return cert_path, key_path


@dataclass(frozen=True)
class Chain:
    root: Path  # the self-signed root
    issuing: Path  # the intermediate CA alone
    issuing_key: Path
    bundle: Path  # the intermediate first, then the root: what ca.crt must hold


_INTERMEDIATE_EXT = """\
[ intermediate ]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


_ROOT_CNF = """\
[ req ]
distinguished_name = dn
x509_extensions = root
prompt = no
[ dn ]
CN = unused
[ root ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
"""


def openssl_chain(folder: Path) -> Chain:
    """Root -> issuing CA, with plain openssl (EC P-256 keys: quick to make)."""
    folder.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]

    def openssl(*args: str | Path) -> None:
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)

    root, root_key = folder / "root.crt", folder / "root.key"
    issuing, issuing_key, csr = folder / "issuing.crt", folder / "issuing.key", folder / "issuing.csr"
    # Its own config, not -addext: OpenSSL 1.1.1's -addext adds a second basicConstraints beside the one
    # of the default config's v3_ca section (3.x replaces it).
    (folder / "root.cnf").write_text(_ROOT_CNF)
    openssl("req", "-x509", *ec, "-keyout", root_key, "-out", root, "-days", "3650", "-config",
            folder / "root.cnf", "-subj", "/O=Example Org/CN=Example Org Root CA")  # fmt: skip
    openssl("req", "-new", *ec, "-keyout", issuing_key, "-out", csr,
            "-subj", "/O=Example Org/CN=Example Org Issuing CA")  # fmt: skip
    (folder / "ext.cnf").write_text(_INTERMEDIATE_EXT)
    openssl("x509", "-req", "-in", csr, "-CA", root, "-CAkey", root_key, "-set_serial", "2", "-days", "1830",
            "-extfile", folder / "ext.cnf", "-extensions", "intermediate", "-out", issuing)  # fmt: skip
    for key in (root_key, issuing_key):
        key.chmod(0o400)
    bundle = folder / "issuing-chain.crt"
    bundle.write_bytes(issuing.read_bytes() + root.read_bytes())
    return Chain(root, issuing, issuing_key, bundle)
