"""What renew and rotate-ca replace is kept, not deleted: `backup/<UTC time>/<relative path>`.

The backup folder sits beside certs/ and nodes/, never inside a certs directory (CockroachDB would try
to load a `*.crt` found there) and never inside a node's bundle (it would be copied to the node). Files
keep their modes, so a key stays 0400; a CA key is moved there (it must not stay where a new CA key
goes), every other file is copied (the certs directories are swapped in whole afterwards).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from orchestrator import names
from orchestrator.errors import RunError


def keep(out: Path, changed: list[str], root: Path) -> Path | None:
    """Keep the current version of each file in `changed` (paths relative to `out`) that exists, in a
    new folder under `root`; returns that folder (None: nothing existed, so nothing is replaced)."""
    existing = [p for p in changed if (out / p).is_file()]
    if not existing:
        return None
    folder = _new_folder(root)
    moved: list[str] = []
    try:
        # Copies first, CA keys (moved) last: a full disk then fails before any key has left its place.
        for path in sorted(existing, key=lambda p: p.startswith(names.SAFE_DIR + "/")):
            target = folder / path
            target.parent.mkdir(mode=names.DIR_MODE, parents=True, exist_ok=True)
            if path.startswith(names.SAFE_DIR + "/"):
                _move(out / path, target)
                moved.append(path)
            else:
                shutil.copy2(out / path, target)
    except BaseException as e:
        # Nothing is replaced after a failed backup: put back what was moved, leave no half backup.
        for path in moved:
            _move(folder / path, out / path)
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            root.rmdir()  # only if this left it empty
        if isinstance(e, OSError):
            raise RunError(
                f"{root}: cannot keep the files this run replaces ({e.strerror}); nothing changed"
            ) from None
        raise
    return folder


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


def _move(source: Path, target: Path) -> None:
    try:
        os.rename(source, target)
    except OSError as e:
        if e.errno != errno.EXDEV:  # my-safe-directory/ may be a link to another file system
            raise
        shutil.copy2(source, target)
        source.unlink()
