"""The profiles: what differs between the docs' two eras and the secure default, as data. The recipes
(recipes.py) and the config templates (templates/) read these fields and never a profile's name, so a new
profile is one more value in PROFILES."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ProfileName(enum.StrEnum):
    SECURE = "secure"
    DOCS = "docs"  # the docs of v20.1 and later (tests/fixtures/docs/v26.3)
    DOCS_V19 = "docs-v19"  # the docs of v19.2


@dataclass(frozen=True)
class Profile:
    name: ProfileName
    ca_days: int  # `openssl req -x509 -days`
    cert_days: int  # leaf lifetime
    days_on_sign: bool  # docs-v19 passes `-days 1830` to `openssl ca`; later pages inherit default_days
    random_serials: bool  # secure: a fresh 128-bit serial per certificate; docs: `echo '01' > serial.txt`
    # The docs (v20.1+) issue node.crt without a CN and rely on --cert-principal-map. Also decides, for a
    # node certificate without a CN: ca.cnf's policy `commonName = optional` (else `supplied`) and a
    # critical SAN (san_critical).
    node_cn: str | None
    first_user_root_san: bool  # the docs (v20.1+) give the first user `subjectAltName = DNS:root`
    # secure: a node's SANs and extensions come from our rendered section (`openssl ca -extfile`, the
    # section in node.cnf, SANs one per line) and ca.cnf says `copy_extensions = none`, so a CSR cannot add
    # SANs (= CockroachDB principals) or CA:TRUE. The docs: SANs inline in node.cnf, copied from the CSR.
    extfile: bool
    notext: bool  # secure: -notext, so a .crt holds the PEM block only
    cap_at_ca: bool  # secure: a leaf never outlives its CA (-enddate = the CA's end when that comes first)
    # secure: ca.cnf's signing sections give every leaf `basicConstraints = critical,CA:FALSE` and its key
    # identifiers (leaf-extensions.j2): the defence against a CSR asking for CA:TRUE (openssl-ca(1)).
    leaf_not_ca: bool
    # secure: the CA certificate's subjectKeyIdentifier written explicitly, so that OpenSSL 1.1.1 and 3.x
    # make the same CA certificate.
    ca_key_id: bool
    # secure: the CA certificate may sign CRLs (keyUsage cRLSign): PostgreSQL and `openssl verify
    # -crl_check` refuse a CRL from a CA without it. The docs' ca.cnf leaves it out.
    crl_sign: bool
    # The docs profiles render the docs' files byte for byte (tests/test_golden.py): the docs' own comments
    # and none of the `# secure:` ones, even on a line they share with secure (docs-v19's CN policy).
    docs_verbatim: bool
    # secure: a new key and its CSR come from one `openssl req -newkey` (one process fewer per certificate,
    # issue 16); the docs: `openssl genrsa`, then `openssl req -key`, as the page writes them.
    key_with_request: bool

    @property
    def san_critical(self) -> bool:
        """RFC 5280 §4.2.1.6: the SAN is critical when the subject has no CN (the docs' node.crt, v20.1+)."""
        return self.node_cn is None


_SECURE = Profile(
    ProfileName.SECURE,
    # 10-year CA (as `cockroach cert`: 10 x 366 days), 1-year leaves (what browsers accept).
    ca_days=3660,
    cert_days=365,
    days_on_sign=False,
    random_serials=True,
    node_cn="node",
    first_user_root_san=False,
    extfile=True,
    notext=True,
    cap_at_ca=True,
    leaf_not_ca=True,
    ca_key_id=True,
    crl_sign=True,
    docs_verbatim=False,
    key_with_request=True,
)
_DOCS = Profile(
    ProfileName.DOCS,
    ca_days=365,
    cert_days=365,
    days_on_sign=False,
    random_serials=False,
    node_cn=None,
    first_user_root_san=True,
    extfile=False,
    notext=False,
    cap_at_ca=False,
    leaf_not_ca=False,
    ca_key_id=False,
    crl_sign=False,
    docs_verbatim=True,
    key_with_request=False,
)
_DOCS_V19 = Profile(
    ProfileName.DOCS_V19,
    ca_days=3660,
    cert_days=1830,
    days_on_sign=True,
    random_serials=False,
    node_cn="node",
    first_user_root_san=False,
    extfile=False,
    notext=False,
    cap_at_ca=False,
    leaf_not_ca=False,
    ca_key_id=False,
    crl_sign=False,
    docs_verbatim=True,
    key_with_request=False,
)
PROFILES = {p.name: p for p in (_SECURE, _DOCS, _DOCS_V19)}
