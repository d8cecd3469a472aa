"""What renew and rotate-ca replace is kept, not deleted: `backup/<UTC time>/<relative path>`.

The backup folder sits beside certs/ and nodes/, never inside a certs directory (CockroachDB would try
to load a `*.crt` found there) and never inside a node's bundle (it would be copied to the node). Files
keep their modes, so a key stays 0400. A CA key is kept only beside CA keys: in
`my-safe-directory/backup/<UTC time>/`, on whatever disk my-safe-directory/ is (the docs advise a
removable one), never in backup/ on the main disk. It is copied there before the new key replaces it in
one rename, so at every moment the old key is in my-safe-directory/ (where it was, or in its backup);
every other file is copied (the certs directories are swapped in whole afterwards).
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
from datetime import UTC, datetime
from pathlib import Path

from orchestrator import names
from orchestrator.certcheck import load_cert, load_certs, load_key, public_bytes
from orchestrator.errors import RunError

SAFE_BACKUP = f"{names.SAFE_DIR}/{names.BACKUP_DIR}"  # where replaced CA keys are kept


def keep(out: Path, changed: list[str], root: Path) -> tuple[Path | None, list[Path]]:
    """Keep the current version of each file in `changed` (paths relative to `out`) that exists: CA keys
    in a new folder under my-safe-directory/backup/, the rest in a new folder under `root`. Returns that
    folder (None: no such file existed) and where each CA key was kept. Only copies: a full disk fails
    it before anything is replaced, and it then leaves no half-written backup folder behind."""
    existing = [p for p in changed if (out / p).is_file()]
    safe = [p for p in existing if p.startswith(names.SAFE_DIR + "/")]
    others = [p for p in existing if p not in safe]
    kept_keys: list[Path] = []
    made: list[Path] = []
    try:
        if safe:
            made.append(_new_folder(out / SAFE_BACKUP))
            for path in safe:
                kept_keys.append(made[-1] / Path(path).name)
                shutil.copy2(out / path, kept_keys[-1])  # made under umask 077, then the key's own 0400
        if not others:
            return None, kept_keys
        made.append(_new_folder(root))
        for path in others:
            target = made[-1] / path
            target.parent.mkdir(mode=names.DIR_MODE, parents=True, exist_ok=True)
            shutil.copy2(out / path, target)
    except OSError as e:
        for folder in made:
            shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            root.rmdir()  # only if this left it empty
        raise RunError(
            f"{root}: cannot keep the files this run replaces ({e.strerror}); nothing changed"
        ) from None
    return made[-1], kept_keys


def find_key(out: Path, key: str, cert: Path, which: int = 0) -> Path | None:
    """A kept copy of the CA key (`key`: my-safe-directory/<name>.key) of the `which`-th certificate in
    `cert`; None when no backup holds it. Also looks where earlier versions kept it
    (backup/<time>/my-safe-directory/), so that a rotation they left half done can be completed."""
    try:
        wanted = public_bytes(load_certs(cert)[which])
    except (OSError, ValueError, IndexError):
        return None
    name = Path(key).name
    found = [*(out / SAFE_BACKUP).glob(f"*/{name}"), *(out / names.BACKUP_DIR).glob(f"*/{key}")]
    for candidate in sorted(found):
        try:
            if public_bytes(load_key(candidate)) == wanted:
                return candidate
        except (OSError, ValueError, TypeError):
            continue
    return None


def interrupted(out: Path, key: str, cert: str) -> Path | None:
    """A rotation killed after it put the new CA key in place, before the new CA certificate: `key` is
    not the key of `cert` (or is missing) and a backup holds that certificate's key. Returns the backup."""
    try:
        if public_bytes(load_key(out / key)) == public_bytes(load_cert(out / cert)):
            return None
    except FileNotFoundError:
        pass
    except (OSError, ValueError, TypeError):
        return None
    return find_key(out, key, out / cert)


def resume_advice(out: Path, cert: str, kept: Path) -> str:
    """What to do about a rotation killed after its new CA key was put in place (see `interrupted`)."""
    return (
        f"{out / cert}: a CA rotation was interrupted; the key of this CA certificate is kept in {kept};"
        f" `crdb-certs rotate-ca --out {shlex.quote(str(out))}` (with the same --config) completes the"
        " rotation"
    )


def _new_folder(root: Path) -> Path:
    root.mkdir(mode=names.DIR_MODE, parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for n in range(1000):
        folder = root / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            folder.mkdir(mode=names.DIR_MODE)
        except FileExistsError:
            continue
        return folder
    raise RuntimeError(f"{root}: no free backup folder name for {stamp}")
