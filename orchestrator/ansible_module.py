#!/usr/bin/python
"""crdb_certs_dir: an Ansible module, shipped by `crdb-certs export ansible` as library/crdb_certs_dir.py.

On the node, in one module run: compare the certs directory with the files given (names, contents, modes,
owner); when anything differs, write them into `<dest>.crdb-certs-new` beside it (0700, each file created
with its final mode, so a key is never readable by anyone else), exchange that folder with `dest` in one
renameat2(RENAME_EXCHANGE) (at every moment `dest` is the whole old folder or the whole new one), keep the
old one as `<dest>.crdb-certs-previous`, and run the reload command (an argv, no shell) in `dest`.
Check mode says whether it would, with a diff of the certificates (never of the keys).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import stat
from typing import Any

from ansible.module_utils.basic import AnsibleModule

NEW_SUFFIX = ".crdb-certs-new"
PREVIOUS_SUFFIX = ".crdb-certs-previous"
DIR_MODE = 0o700
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def differences(dest: str, files: list[dict[str, Any]], uid: int, gid: int) -> list[str]:
    """What differs between `dest` and the files it should hold (empty: nothing to do)."""
    try:
        st = os.lstat(dest)
    except FileNotFoundError:
        return [f"{dest}: missing"]
    if not stat.S_ISDIR(st.st_mode):
        return [f"{dest}: not a folder"]
    found = []
    if stat.S_IMODE(st.st_mode) != DIR_MODE:
        found.append(f"{dest}: mode {stat.S_IMODE(st.st_mode):04o}, not {DIR_MODE:04o}")
    wanted = {f["name"] for f in files}
    found += [f"{name}: not delivered by crdb-certs" for name in sorted(set(os.listdir(dest)) - wanted)]
    for f in files:
        path = os.path.join(dest, f["name"])
        try:
            st = os.lstat(path)
            with open(path, "rb") as held:
                content = held.read()
        except OSError:
            found.append(f"{f['name']}: missing")
            continue
        if content != f["content"].encode():
            found.append(f"{f['name']}: content differs")
        if stat.S_IMODE(st.st_mode) != int(f["mode"], 8) or not stat.S_ISREG(st.st_mode):
            found.append(f"{f['name']}: mode {stat.S_IMODE(st.st_mode):04o}, not {f['mode']}")
        if (st.st_uid, st.st_gid) != (uid, gid):
            found.append(f"{f['name']}: owner {st.st_uid}:{st.st_gid}, not {uid}:{gid}")
    return found


def stage(new: str, files: list[dict[str, Any]], uid: int, gid: int) -> None:
    """The new folder, complete and on disk, beside the old one."""
    if os.path.lexists(new):
        shutil.rmtree(new)  # what an interrupted run left
    os.mkdir(new, DIR_MODE)
    os.chown(new, uid, gid)
    for f in files:
        fd = os.open(os.path.join(new, f["name"]), os.O_WRONLY | os.O_CREAT | os.O_EXCL, int(f["mode"], 8))
        try:
            os.fchmod(fd, int(f["mode"], 8))  # whatever the umask
            os.fchown(fd, uid, gid)
            os.write(fd, f["content"].encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    _fsync_dir(new)


def exchange(new: str, dest: str, previous: str) -> None:
    """`new` becomes `dest` in one step; the old `dest` is kept as `previous`."""
    if os.path.isdir(previous) and not os.path.islink(previous):
        shutil.rmtree(previous)
    if os.path.lexists(dest):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.renameat2(_AT_FDCWD, new.encode(), _AT_FDCWD, dest.encode(), _RENAME_EXCHANGE) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"cannot exchange {new} and {dest}: {os.strerror(error)}")
        os.rename(new, previous)
    else:
        os.rename(new, dest)
    _fsync_dir(os.path.dirname(dest) or "/")


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _secret(f: dict[str, Any]) -> bool:
    return str(f["name"]).endswith(".key")


def _mode(value: object) -> str:
    """A mode as written ("0400"); a YAML reader or a template may have turned it into a number."""
    if isinstance(value, int):
        return f"{value:04o}" if value > 0o777 or value < 0 else f"0{value:o}"
    return str(value)


def _owner(dest: str) -> tuple[int, int]:
    """The owner the folder has (kept), else whoever runs this."""
    try:
        st = os.stat(dest)
        return st.st_uid, st.st_gid
    except FileNotFoundError:
        return os.geteuid(), os.getegid()


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "dest": {"type": "path", "required": True},
            "files": {"type": "list", "elements": "dict", "required": True},
            "contents": {"type": "list", "elements": "str", "required": True},  # the certificates'
            "secrets": {"type": "list", "elements": "str", "required": True, "no_log": True},  # the keys'
            "reload": {"type": "list", "elements": "str", "required": True},
        },
        supports_check_mode=True,
    )
    dest = module.params["dest"].rstrip("/")
    certs, keys = iter(module.params["contents"]), iter(module.params["secrets"])
    files = [
        {"name": str(f["name"]), "mode": _mode(f["mode"]), "content": next(keys if _secret(f) else certs)}
        for f in module.params["files"]
    ]
    uid, gid = _owner(dest)
    found = differences(dest, files, uid, gid)
    if not found:
        module.exit_json(changed=False, msg=f"{dest}: as delivered")
    diff = {"before_header": dest, "after_header": dest, "before": "", "after": ""}
    for f in files:
        if _secret(f):
            continue  # never shown
        path = os.path.join(dest, f["name"])
        try:
            with open(path, encoding="utf-8", errors="replace") as held:
                diff["before"] += f"# {f['name']}\n" + held.read()
        except OSError:
            pass
        diff["after"] += f"# {f['name']}\n" + f["content"]
    if module.check_mode:
        module.exit_json(changed=True, differences=found, diff=diff, msg=f"{dest}: would be replaced")
    try:
        stage(dest + NEW_SUFFIX, files, uid, gid)
        exchange(dest + NEW_SUFFIX, dest, dest + PREVIOUS_SUFFIX)
    except OSError as e:
        module.fail_json(msg=f"{dest}: not replaced: {e}", differences=found)
    rc, out, err = module.run_command(module.params["reload"], cwd=dest)
    if rc != 0:
        said = " ".join((err or out).split())[:500]
        module.fail_json(
            msg=f"reload failed (exit {rc}, {' '.join(module.params['reload'])})"
            + (f": {said}" if said else ""),
            replaced=True,
            differences=found,
        )
    module.exit_json(changed=True, differences=found, diff=diff, msg=f"{dest}: replaced, reloaded")


if __name__ == "__main__":
    main()
