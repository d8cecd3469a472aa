"""The profiles: what differs in the commands between the docs' two eras and the secure default.
(What differs in the configs lives in templates/, with a comment on each line.)"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    ca_days: int  # `openssl req -x509 -days`
    cert_days: int  # leaf lifetime
    days_on_sign: bool  # docs-v19 passes `-days 1830` to `openssl ca`; later pages inherit default_days
    random_serials: bool  # secure: a fresh 128-bit serial per certificate; docs: `echo '01' > serial.txt`
    node_cn: str | None  # the docs (v20.1+) issue node.crt without a CN and rely on --cert-principal-map
    first_user_root_san: bool  # the docs (v20.1+) give the first user `subjectAltName = DNS:root`
    extfile: bool  # secure: extensions from our rendered section (openssl ca -extfile), never the CSR
    notext: bool  # secure: -notext, so a .crt holds the PEM block only
    cap_at_ca: bool  # secure: a leaf never outlives its CA (-enddate = the CA's end when that comes first)


PROFILES = {
    # secure: 10-year CA (as `cockroach cert`: 10 x 366 days), 1-year leaves (what browsers accept).
    "secure": Profile("secure", 3660, 365, False, True, "node", False, True, True, True),
    "docs": Profile("docs", 365, 365, False, False, None, True, False, False, False),
    "docs-v19": Profile("docs-v19", 3660, 1830, True, False, "node", False, False, False, False),
}
