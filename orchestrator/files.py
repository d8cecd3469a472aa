"""Reading a file the user points at without trusting what it is: a FIFO would block the read forever,
a device (`/dev/zero`) would never end. Every certificate, key, spec and config crdb-certs reads comes
through `read_regular`."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

MAX_READ = 1 << 20  # certificates, keys and specs are a few KB; anything larger is not one


class NotRegular(OSError):
    """`path` is a FIFO, a socket or a device (or a folder): never read."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(errno.EINVAL, "not a regular file", str(path))


def read_regular(path: str | Path, limit: int = MAX_READ) -> bytes:
    """At most `limit` bytes of `path`, if it is a regular file (a symlink to one is fine). O_NONBLOCK:
    opening a FIFO with no writer returns at once instead of waiting for one; fstat then refuses it."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegular(path)
        # Sized by fstat: a buffered read(limit) allocates `limit` bytes (1 MB) for a 1 KB certificate,
        # 25 µs of a 30 µs read, once per file of 10,000 nodes (issue 16). One byte more than the size: a
        # file that grew since (or a /proc file, whose size says 0) is read on, up to `limit`.
        data = os.read(fd, min(limit, info.st_size + 1))
        # Until end-of-file: a read may return less than asked (FUSE, network file systems).
        while 0 < len(data) < limit and len(data) != info.st_size:
            more = os.read(fd, min(limit - len(data), max(info.st_size + 1 - len(data), 1 << 16)))
            if not more:
                break
            data += more
        return data
    finally:
        os.close(fd)
