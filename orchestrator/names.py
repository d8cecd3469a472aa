"""Every file name and file mode crdb-certs uses, in one place.

CockroachDB finds its certificates by name (pkg/security/certificate_loader.go) and refuses keys that other
users could read, so a wrong name or mode is a broken cluster. Everyone else asks this module.
"""

from __future__ import annotations

import os.path

CERTS_DIR = "certs"  # the docs' certs directory
SAFE_DIR = "my-safe-directory"  # CA keys, and nothing else
NODES_DIR = "nodes"  # one complete certs directory per node
REQUESTS_DIR = "requests"  # rendered request configs and CSRs
REQUESTS_SHEET = "requests/REQUESTS.txt"  # `csr`: what each request needs, for the CA that signs them
STATE_DIR = ".crdb-certs"  # lock file and staging area
STAMP = f"{STATE_DIR}/stamp.json"  # the folder as the last clean run left it (stamp.py)
BACKUP_DIR = "backup"  # every run keeps the keys and certificates it replaces in backup/<UTC time>/
RECORD = "crdb-certs.toml"  # the spec the folder was made from and whose CA signs it (record.py)
CRL_DIR = "crl"  # the CRLs (crl/ca.crl, crl/ca-client.crl): public, handed to PostgreSQL, HAProxy, ...
OCSP_DIR = "ocsp"  # the OCSP responders' certificates and keys (ocsp/ca.responder.crt/.key), not the CA's

CA_CERT = "ca.crt"
CLIENT_CA_CERT = "ca-client.crt"
UI_CA_CERT = "ca-ui.crt"
NODE_CERT = "node.crt"
NODE_KEY = "node.key"
UI_CERT = "ui.crt"
UI_KEY = "ui.key"
TENANT_CA_CERT = "ca-client-tenant.crt"
CA_FILES = (CA_CERT, CLIENT_CA_CERT, UI_CA_CERT)  # the CA certificates crdb-certs installs
CERT_SUFFIX = ".crt"  # CockroachDB considers only files ending in .crt (certnames.IsCertificateFilename)
KEY_SUFFIX = ".key"
# Prefixes of the certificate names that carry a user name or a tenant id: client.<user>.crt, ...
CLIENT_PREFIX = "client"
TENANT_CLIENT_PREFIX = "client-tenant"
TENANT_SIGNING_PREFIX = "tenant-signing"
NODE_USER = "node"  # client.node.crt: the node's own client certificate (split layouts)
# CA keys (ca.key, ca-client.key, ca-ui.key, ...): CockroachDB never loads them from a certs dir, and a
# file so named there is a CA key handed out with the certificates.
CA_KEY_GLOB = "ca*.key"

KEY_MODE = 0o400  # the docs' `chmod 400`
CERT_MODE = 0o644  # what `cockroach cert` writes
DIR_MODE = 0o700  # what `cockroach cert` creates a certs directory with
# CockroachDB refuses a key with any permission bit outside these (pkg/security/certificate_loader.go);
# the looser one only for a key owned by uid 0 and by the cockroach process's primary group.
KEY_MODE_MAX = 0o700
KEY_MODE_MAX_ROOT = 0o740


def client_cert(user: str) -> str:
    return f"client.{user}.crt"


def client_key(user: str) -> str:
    return f"client.{user}.key"


def key_for(cert: str) -> str:
    """The key file CockroachDB looks for beside a certificate (certnames.KeyForCert)."""
    return cert.removesuffix(".crt") + ".key"


def pk8_for(key: str) -> str:
    """client.<user>.key.pk8: the key again as DER PKCS#8, for Java clients (pkcs8 = true)."""
    return key + ".pk8"


def ca_key(ca: str) -> str:
    """`ca` -> my-safe-directory/ca.key, `ca-client` -> my-safe-directory/ca-client.key."""
    return f"{SAFE_DIR}/{ca}.key"


def crl(ca: str) -> str:
    """`ca` -> crl/ca.crl (PEM), `ca-client` -> crl/ca-client.crl."""
    return f"{CRL_DIR}/{ca}.crl"


def crl_folders(directory: str) -> tuple[str, str]:
    """The folders whose *.crl the audit and `list` read for the certs directory `directory` (where it
    really is: links resolved by the caller): beside it and beside its parent, so that certs/ and
    nodes/<name>/ both find the output folder's crl/."""
    parent = os.path.dirname(directory)
    return os.path.join(parent, CRL_DIR), os.path.join(os.path.dirname(parent), CRL_DIR)


def crl_config(ca: str) -> str:
    """The config `openssl ca -gencrl` reads (the CA database and its CRL number): the CA's own ca.cnf
    stays as the docs wrote it."""
    return f"{ca}.crl.cnf"


def crl_number(ca: str) -> str:
    """The CRL number file beside the CA database (crlnumber.txt, ca-client.crlnumber.txt)."""
    return "crlnumber.txt" if ca == "ca" else f"{ca}.crlnumber.txt"


def responder_cert(ca: str) -> str:
    """The OCSP responder certificate delegated by CA `ca` (EKU OCSPSigning): ocsp/ca.responder.crt (its
    key: key_for, ocsp/ca.responder.key; never a name a CA key could be taken for)."""
    return f"{OCSP_DIR}/{ca}.responder.crt"


def node_dir(name: str) -> str:
    return f"{NODES_DIR}/{name}"
