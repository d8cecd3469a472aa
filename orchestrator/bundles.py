"""The certs directories: which files each one holds (a node's folder, the clients' certs/), and the copies
that put into each what was made elsewhere."""

from __future__ import annotations

from collections.abc import Collection

from orchestrator import names
from orchestrator.cas import Signers
from orchestrator.spec import Layout, Spec
from orchestrator.steps import Copy, Step, Task

_NODE_OWN = (
    f"{names.NODE_USER}.",
    f"{names.CLIENT_PREFIX}.{names.NODE_USER}.",
)  # files made in a node's own folder; the rest are made in certs/


_UI_FILES = (names.UI_CERT, names.UI_KEY)


def ui_home(spec: Spec) -> str:
    """Where the DB Console pair is made: certs/ when that is also the only node's folder; else the first
    node's folder (ui.key is a server's key: in the clients' certs/ it would be handed to every client).
    A spec without nodes (clients only) keeps it in certs/, as before."""
    return names.CERTS_DIR if len(spec.nodes) <= 1 else names.node_dir(spec.nodes[0].name)


def contents(spec: Spec, cas: Signers) -> dict[str, tuple[str, ...]]:
    """Each certs directory to hand out and the files it holds."""
    ca_files = tuple(f"{ca.name}.crt" for ca in cas.all)
    node_files: tuple[str, ...] = (names.NODE_CERT, names.NODE_KEY)
    if spec.layout != Layout.STANDARD:
        node_files += (names.client_cert(names.NODE_USER), names.client_key(names.NODE_USER))
    if spec.ui:
        node_files += (names.UI_CERT, names.UI_KEY)
    client_files = tuple(
        f for c in spec.clients for f in (names.client_cert(c.user), names.client_key(c.user))
    )
    bundles = {names.node_dir(n.name): ca_files + node_files for n in spec.nodes}
    # One node: certs/ is also that node's certs dir, as in the docs (cockroach start-single-node).
    single = (
        node_files
        if len(spec.nodes) == 1
        else tuple(
            f for f in node_files if not f.startswith(_NODE_OWN) and (f not in _UI_FILES or not spec.nodes)
        )
    )
    bundles[names.CERTS_DIR] = ca_files + single + client_files
    return bundles


def assemble_task(
    bundles: dict[str, tuple[str, ...]], ui_from: str, left_out: Collection[str] = frozenset()
) -> Task:
    """Copy into each certs directory what was made elsewhere: CA certificates from certs/ into the nodes'
    folders, the UI pair from `ui_from` (ui_home) into the others, and the only node's files into certs/.
    `left_out`: folders whose copies the stamp vouches for (plan.State.skip)."""
    nodes = [folder for folder in bundles if folder != names.CERTS_DIR]
    steps: list[Step] = []
    for folder, files in bundles.items():
        if folder in left_out:
            continue
        for file in files:
            # A SQL user may be called `node` (standard layout): client.node.crt is then made in certs/.
            made_in_node = file.startswith(_NODE_OWN) and bool(nodes) and file in bundles[nodes[0]]
            if file in _UI_FILES:
                if folder == ui_from:
                    continue  # made right there
                source = f"{ui_from}/{file}"
            elif folder == names.CERTS_DIR and made_in_node:
                source = f"{nodes[0]}/{file}"
            elif folder != names.CERTS_DIR and not made_in_node:
                source = f"{names.CERTS_DIR}/{file}"
            else:
                continue  # made right there
            steps.append(
                Copy(source, f"{folder}/{file}", mode=names.KEY_MODE if file.endswith(".key") else None)
            )
    return Task("bundles", "assemble the certs directories", tuple(steps))


def folder_of(path: str, folders: Collection[str]) -> str | None:
    """The certs directory among `folders` (a set or a dict: looked up, not scanned) that holds `path`,
    or None. Each of the path's parent folders is looked up: a run that changes every file of 10,000
    certs directories must not compare each file with every folder (issue 16)."""
    parts = path.split("/")
    for end in range(1, len(parts)):
        folder = "/".join(parts[:end])
        if folder in folders:
            return folder
    return None
