"""The folder as the last clean run left it (issue 16): `issue` on a folder of 10,000 nodes that nothing
has touched since must answer in a second or two, without planning, reading a certificate or auditing.

A stamp (names.STAMP) is written by an `issue` that audited every certs directory and found nothing to
say. It holds:
- the run's input: a digest of the spec's bytes (the --config file, else the folder's record), the
  options that change what a spec means (--profile, --key-type) and crdb-certs' code;
- the signature of every file and folder in the output folder (type and mode, owner, inode, size,
  modification and change times), and of the files the spec names elsewhere ([ca], [ui]);
- the dates between which every certificate there is valid;
- for each certificate task, a digest of what it was checked against, and for each node's task, a
  digest of what it is made from and the files that are it (Vouch: a run with another spec plans and
  checks only what that spec changes);
- the settings of the record the run left (record.Settings);
- the certs directories its audit found clean, and what else that audit's answer depended on (`auditor`:
  the code, the Python and cryptography that parse the files, CockroachDB's key permission switch, the
  user): a later run that writes nothing audits only the others, and those no longer as the stamp saw
  them (Vouch.still_clean);
- last, on a line of its own, the digest of all the rest (a seal: a stamp edited by hand is none).

`matches` is true when the input is the same, every signature is, and the time is one at which the run
would have had nothing to say either: every certificate valid, none within the audit's 30-day warning.
Then the folder is byte for byte the one that was planned, verified and audited, and the answer is the
same. Anything else (a file written, renamed, chmod-ed, touched, added or removed; another spec; the
time) takes the full way. The change time (ctime) cannot be set by a user; a file changed within a
clock tick of the stamp (or within the second, on a file system of whole seconds) could keep its
times, so such a file is never trusted (git's "racy" entries).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import secrets
import stat
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cryptography
import tomli

import orchestrator
from orchestrator import names
from orchestrator.auditing.validity import EXPIRY_WARNING
from orchestrator.files import read_regular
from orchestrator.resources import resource

if TYPE_CHECKING:
    from orchestrator.certcheck import Expect

FORMAT = 4
# Wider than a kernel clock tick (file times may come from a clock that advances once a tick, 10 ms at
# HZ=100): a file whose times are this close to the moment its signature was taken may change unseen.
_RACY_NS = 20_000_000
_COARSE_NS = 2_000_000_000  # FAT's file times are two seconds apart
_SKIPPED_AT_TOP = (names.STATE_DIR, names.BACKUP_DIR)  # ours, and what runs set aside: not the PKI

# mode:uid:gid:inode:size:mtime:ctime, a string: 60,000 of them are a few MB (a list of ints, ~25 MB)
Signature = str


@functools.cache
def code() -> str:
    """A digest of crdb-certs' own code and templates: what a stamp's answer was computed with. A version
    number alone would let a stamp outlive an edit made under the same number (a checkout, a patch)."""
    digest = hashlib.sha256(orchestrator.__version__.encode())
    package = Path(orchestrator.__file__).parent
    for path in sorted([*package.rglob("*.py"), *resource("templates").rglob("*.j2")]):
        if not path.is_file():
            continue  # an editor's lock link (.#cli.py), pointing nowhere: not code
        try:
            digest.update(f"{path.relative_to(path.parent.parent)}\0".encode() + path.read_bytes())
        except OSError:
            return secrets.token_hex(32)  # code that cannot be read: a digest no stamp holds
    return digest.hexdigest()


def key(source: bytes, spec_path: Path | None, *options: str | None) -> str:
    """The digest of a run's input: the spec's bytes, where it lies (its relative paths start there),
    the options that change what it means, crdb-certs' code and what the audit depends on."""
    digest = hashlib.sha256()
    for part in (str(FORMAT), auditor(), str(spec_path), *map(str, options)):
        digest.update(part.encode() + b"\0")
    digest.update(source)
    return digest.hexdigest()


def auditor() -> str:
    """What the audit's answer depends on besides the certs directory, its CRLs and the time: crdb-certs'
    code, the Python and cryptography that parse the files, CockroachDB's own switch, and who is asking
    (key modes)."""
    skip = os.environ.get("COCKROACH_SKIP_KEY_PERMISSION_CHECK")
    return f"{code()}\0{sys.version}\0{cryptography.__version__}\0{(os.getuid(), os.getgid(), skip)}"


def source(config: Path | None, out: Path) -> tuple[bytes, Path | None] | None:
    """The spec's bytes and path: --config, else the folder's record; None when there is neither (a
    new folder: nothing to match) or it cannot be read (the full way says why)."""
    path = config if config is not None else out / names.RECORD
    try:
        return read_regular(path, 1 << 25), (path.absolute() if config is not None else None)
    except OSError:
        return None


def named_in(source: bytes, spec_path: Path | None) -> list[str] | None:
    """The files a --config spec names elsewhere ([ca], [ui]), resolved now as spec.load resolves them: a
    link re-pointed since the stamp names other files. None for the record (its paths are resolved
    already) or a spec that does not parse (the full way says why)."""
    if spec_path is None:
        return None
    try:
        data = tomli.loads(source.decode("utf-8"))
    except (UnicodeDecodeError, tomli.TOMLDecodeError, RecursionError):
        return None
    base, named = spec_path.resolve().parent, []
    for table in ("ca", "ui"):
        section = data.get(table)
        if (
            isinstance(section, dict)
            and isinstance(section.get("cert"), str)
            and isinstance(section.get("key"), str)
        ):
            named += [str((base / section["cert"]).resolve()), str((base / section["key"]).resolve())]
    return sorted(named)


def matches(out: Path, run_key: str, named: Callable[[], list[str] | None] | None = None) -> bool:
    """Whether `out` is as a clean run with input `run_key` left it, and nothing would be said now;
    `named`: the files the spec names elsewhere, as they resolve now (named_in: parsing the spec, so
    asked only once the input is the same)."""
    try:  # the key is the stamp's first member: another input's stamp is told without parsing 8 MB
        if read_regular(out / names.STAMP, len(_head(run_key))) != _head(run_key):
            return False
    except OSError:
        return False
    held = _load(out)
    if held is None or held["key"] != run_key:
        return False
    resolved = named() if named is not None else None
    if resolved is not None and resolved != held["named"]:
        return False
    now = time.time()
    if not held["valid_from"] <= now < held["valid_until"] - EXPIRY_WARNING.total_seconds():
        return False
    if held["newest"] >= held["taken"] - _RACY_NS:
        return False  # a file changed within a clock tick of the stamp (write waits them out)
    try:
        current, _ = signatures(out, [Path(p) for p in held["named"]])
    except OSError:
        return False
    return bool(current == held["files"])


def write(
    out: Path,
    run_key: str,
    named: Iterable[Path],
    expects: Mapping[str, str],
    inputs: Mapping[str, tuple[str, ...]],
    recorded: list[str | None] | None = None,
    audited: Iterable[str] = (),
) -> None:
    """Stamp `out` as clean for `run_key` (called under the run's lock, after a clean audit of every
    certs directory), unless a file changed within a clock tick (a run of a few certificates): the next
    run, which changes nothing, writes it. The dates of a certificate the last stamp knew unchanged are
    taken from it. `expects`: the digest of what each certificate task of the run's spec expects
    (Plan.expects), each made and verified, or found right, by the run; `inputs`: for each node's task,
    the digest of what it is made from and the files that are it (Plan.inputs); `recorded`: the settings
    of the record the run left (record.Settings.held); `audited`: the certs directories the run's audit
    found clean (Plan.bundles), with what that audit depended on (`auditor`)."""
    named = sorted(named, key=str)
    taken = time.time_ns()
    try:
        files, newest = signatures(out, named)
    except OSError:
        return  # a file gone while walking: whatever it was, no stamp vouches for it
    if newest >= taken - _RACY_NS:
        return  # a file changed within a clock tick: the next run, which changes nothing, stamps it
    previous = _load(out) or {}
    known = previous.get("dates", {})
    known_files = previous.get("files", {})
    dates: dict[str, list[float]] = {}
    for rel, sig in files.items():
        if not rel.endswith(".crt"):
            continue
        followed = files.get(rel + " ->", sig)  # a link to a certificate kept elsewhere: its target's
        if stat.S_ISREG(int(followed.split(":", 1)[0])):
            same = rel in known and known_files.get(rel) == sig and known_files.get(rel + " ->") == followed
            dates[rel] = known[rel] if same else _dates(out / rel)
    del previous, known, known_files  # not two stamps of 10,000 nodes in memory while this one is written
    # A folder holding a link: what the guard finds there depends on what the link points to, which its
    # listing does not show. No task with such a folder among its files is vouched for whole.
    linked = {rel.rpartition("/")[0] for rel in files if rel.endswith(" ->")}
    held = {
        "key": run_key,  # first: see _head
        "format": FORMAT,
        "taken": taken,
        "newest": newest,
        "named": [str(p) for p in named],
        "valid_from": max((d[0] for d in dates.values()), default=0.0),
        "valid_until": min((d[1] for d in dates.values()), default=float("inf")),
        "files": files,
        "dates": dates,
        "expects": dict(expects),
        "inputs": {task: list(made_of) for task, made_of in inputs.items() if linked.isdisjoint(made_of[1:])},
        "record": recorded,
        "audited": sorted(audited),
        "auditor": auditor(),
    }
    path = out / names.STAMP
    partial = path.with_name(path.name + ".new")
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        with os.fdopen(os.open(partial, flags, 0o600), "w", encoding="utf-8") as f:
            # Streamed, not one json.dumps string: that one's pieces cost ~13 MB at 10,000 nodes, at the
            # end of the run, when its memory is at its highest (issue 16: peak memory).
            json.dump(held, f, separators=(",", ":"))
            f.flush()
            with open(partial, "rb") as written:  # read back in pieces: not a second 8 MB in memory
                seal = hashlib.file_digest(written, "sha256").hexdigest()
            f.write("\n" + seal)  # see _load
        os.replace(partial, path)
    except OSError:  # a full disk, a quota: the run succeeded; its next re-run takes the full way
        with suppress(OSError):
            partial.unlink(missing_ok=True)
            path.unlink(missing_ok=True)


def signatures(out: Path, named: Iterable[Path]) -> tuple[dict[str, Signature], int]:
    """The signature of every file and folder under `out` (by relative path; a followed link to a
    folder, my-safe-directory/ on a removable disk, as its own entries too), and of each `named` file
    (by absolute path); and the latest time any of them was changed (ns)."""
    newest = 0

    def signature(st: os.stat_result) -> Signature:
        nonlocal newest
        newest = max(newest, changed(st))
        return _signature(st)

    top = os.stat(out)
    found: dict[str, Signature] = {".": signature(top)}
    folders, seen = [("", str(out))], {(top.st_dev, top.st_ino)}
    # The CRL folders the audit reads (names.crl_folders, for a certs directory where it really is)
    # outside the folder: beside it, and beside each linked folder's target.
    beside = {out.resolve().parent / names.CRL_DIR}
    while folders:
        prefix, folder = folders.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if not prefix and (entry.name in _SKIPPED_AT_TOP or entry.name.startswith("transcript-")):
                    continue
                rel = prefix + entry.name
                found[rel] = signature(entry.stat(follow_symlinks=False))
                if entry.is_symlink():
                    target = os.stat(entry.path)
                    found[rel + " ->"] = signature(target)
                    if entry.is_dir():
                        beside.update(map(Path, names.crl_folders(os.path.realpath(entry.path))))
                        # A linked folder (my-safe-directory/ on a removable disk, nodes/ elsewhere): walked
                        # too, once, whatever links to it (a loop of links ends there).
                        if (target.st_dev, target.st_ino) not in seen:
                            seen.add((target.st_dev, target.st_ino))
                            folders.append((rel + "/", entry.path))
                elif entry.is_dir(follow_symlinks=False):
                    folders.append((rel + "/", entry.path))
    for path in named:
        found[str(path)] = signature(os.stat(path))
    for crl in sorted(beside):  # or their absence
        if not crl.is_dir():
            continue
        found[str(crl)] = signature(os.stat(crl))
        with os.scandir(crl) as entries:
            for entry in entries:
                found[entry.path] = signature(entry.stat())
    return found, newest


def changed(st: os.stat_result) -> int:
    """When a file last changed, as far as its times can tell (ns): on a file system that keeps whole
    seconds (ext4 with 128-byte inodes, ext3, some network mounts) or two (FAT: my-safe-directory on a
    USB stick), a file changed again within that time keeps the times it had, so it counts as changed
    as late as it could have been (the stamp is racy until then)."""
    latest = max(st.st_mtime_ns, st.st_ctime_ns)
    whole = st.st_mtime_ns % 1_000_000_000 == 0 and st.st_ctime_ns % 1_000_000_000 == 0
    return latest + _COARSE_NS if whole else latest


def _signature(st: os.stat_result) -> Signature:
    return f"{st.st_mode}:{st.st_uid}:{st.st_gid}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def expect_digest(expect: Expect) -> str:
    """What a certificate task expects (every field of it), with the code whose checks judged it."""
    return hashlib.sha256(f"{code()}\0{expect!r}".encode()).hexdigest()[:32]


class Vouch:
    """The last stamp's word on each certificate, whatever spec the run has now (issue 16: one node
    added to 10,000 is checked alone). The stamp was written after a clean run that made and verified,
    or found right, each certificate task it lists, with the expectation whose digest it holds. The
    certificate is still right when the task expects the same now, its certificate, key and CA
    certificate have the signatures the stamp holds (the same files, unwritten since), and it is valid
    at this moment: what certcheck.problems would find again, without reading a file."""

    def __init__(self, out: Path, now: float) -> None:
        held = _load(out) or {}
        self.root, self.now = os.path.join(out, ""), now
        self.expects: dict[str, str] = held.get("expects", {})
        self.inputs: dict[str, list[str]] = held.get("inputs", {})
        self.files: dict[str, Signature] = held.get("files", {})
        self.dates: dict[str, list[float]] = held.get("dates", {})
        self.record: object = held.get("record")  # record.Settings.held, while the record is unchanged
        # The certs directories the stamp's run found clean, when the audit would now judge as it did then.
        self.audited: set[str] = set(held.get("audited", [])) if held.get("auditor") == auditor() else set()
        self.out = out
        self._seen: dict[str, bool] = {}  # certs/ca.crt is every node's CA certificate: looked at once

    def vouches(self, task_id: str, digest: str, expect: Expect) -> bool:
        """Whether the certificate of `task_id`, which expects what `digest` says, is right."""
        if not self.expects or self.expects.get(task_id) != digest:
            return False
        files = (expect.cert, expect.key, expect.issuer)
        return self._valid(expect.cert) and all(self.unchanged(p) for p in files if p is not None)

    def whole(self, task_id: str, digest: str) -> bool:
        """Whether a node's task, made from what `digest` says, is done and its config current: the
        stamp saw it so with the same input, and its certificate (valid now), key, CA certificate,
        config and copies are the files the stamp saw. Such a task is not even planned (plan.build's
        `skip`)."""
        held = self.inputs.get(task_id)
        if not held or held[0] != digest or len(held) < 2 or task_id not in self.expects:
            return False
        return self._valid(held[1]) and all(self.unchanged(p) for p in held[1:])

    def still_clean(self, folders: Iterable[str]) -> frozenset[str]:
        """The certs directories among `folders` that the stamp's run audited clean and that the audit
        would find clean now (issue 16: a run that writes nothing audits only the others): the same
        auditor; each file and folder in the directory (and in the CRL folders the audit reads beside
        it, names.crl_folders) is the one the stamp saw, or was absent then and is now; every
        certificate there is valid and not within the audit's 30-day warning; and neither it, nor those
        CRL folders, nor a folder on their way is a link (which would move where those CRL folders are,
        and the stamp may hold their files under another name: signatures walks a linked folder once)."""
        wanted = {f for f in folders if f in self.audited}
        if not wanted:
            return frozenset()
        real = os.path.join(self.out.resolve(), "")
        beside = {f: [_named(real, p) for p in names.crl_folders(real + f)] for f in wanted}
        entries: dict[str, list[str]] = {g: [g] for g in wanted.union(*beside.values())}
        for path in self.files:  # each entry under one of those folders, at any depth
            parent = path
            while "/" in parent:
                parent = parent.rpartition("/")[0]
                if parent in entries:
                    entries[parent].append(path)
                    break
        now = time.time()

        def same(group: str) -> bool:
            if group not in self.files:  # absent then: so it must be now
                return not os.path.lexists(group if group.startswith("/") else self.root + group)
            return all(self.unchanged(p) for p in entries[group])

        def clear(path: str) -> bool:
            dates = self.dates.get(path)
            if not path.endswith(".crt"):
                return True
            return dates is not None and dates[0] <= now < dates[1] - EXPIRY_WARNING.total_seconds()

        @functools.cache  # nodes/ and crl/ are on every node's way: looked at once
        def link(path: str) -> bool:
            return os.path.islink(path if path.startswith("/") else self.root + path)

        def linked(group: str) -> bool:
            """Whether `group`, or a folder on its way from the output folder, is a link (an absolute CRL
            folder's parents are resolved already: signatures, _named)."""
            if group.startswith("/"):
                return link(group)
            parts = group.split("/")
            return any(link("/".join(parts[: i + 1])) for i in range(len(parts)))

        return frozenset(
            f
            for f in wanted
            if f in self.files
            and not any(map(linked, [f, *beside[f]]))
            and same(f)
            and all(map(clear, entries[f]))
            and all(map(same, beside[f]))
        )

    def _valid(self, cert: str) -> bool:
        dates = self.dates.get(cert)
        return dates is not None and dates[0] <= self.now <= dates[1]

    def unchanged(self, path: str) -> bool:
        """Whether `path` is the file the stamp saw: as `signatures` took it (a link, and what it points
        to; a file the spec names elsewhere, followed)."""
        seen = self._seen.get(path)
        if seen is None:
            seen = self._seen[path] = self._looked_at(path)
        return seen

    def _looked_at(self, path: str) -> bool:
        try:
            if path.startswith("/"):
                return _signature(os.stat(path)) == self.files.get(path)
            where = self.root + path  # not os.path.join: 50,000 of them at 10,000 nodes (issue 16)
            st = os.lstat(where)
            if _signature(st) != self.files.get(path):
                return False
            return not stat.S_ISLNK(st.st_mode) or _signature(os.stat(where)) == self.files.get(path + " ->")
        except (OSError, ValueError):
            return False


def _named(root: str, path: str) -> str:
    """`path` as signatures names it: relative to the output folder `root` (with its trailing /) when
    inside it, else absolute."""
    return path.removeprefix(root) if path.startswith(root) else path


def _head(run_key: str) -> bytes:
    """The first bytes of a stamp for `run_key` as `write` makes it (issue 16: a spec with one node more
    is another input, and one read of these bytes says so)."""
    return b'{"key":' + json.dumps(run_key).encode() + b","


def _dates(path: Path) -> list[float]:
    """[latest start, earliest end] of the certificates in `path` (a bundle holds several); a file that
    is not one counts as never valid, so no stamp with it ever matches."""
    from cryptography import x509

    try:
        certs = x509.load_pem_x509_certificates(read_regular(path))
    except (OSError, ValueError):
        return [float("inf"), 0.0]
    return [
        max(c.not_valid_before_utc.timestamp() for c in certs),
        min(c.not_valid_after_utc.timestamp() for c in certs),
    ]


def _load(out: Path) -> dict[str, Any] | None:
    """The stamp as `write` made it; None when there is none, or it is anything else (another
    version's, edited by hand, cut short): no stamp, the full way. Its last line is the digest of the
    rest: every member is believed as written (a certificate's dates, the record's settings), so an
    edit of any of them makes it no stamp."""
    try:
        body, _, seal = read_regular(out / names.STAMP, 1 << 30).rpartition(b"\n")
        if hashlib.sha256(body).hexdigest().encode() != seal:
            return None
        held = json.loads(body)
    except (OSError, ValueError, RecursionError):
        return None
    return held if _well_formed(held) else None


def _well_formed(held: object) -> bool:
    def number(x: object) -> bool:
        return isinstance(x, int | float) and not isinstance(x, bool)

    def strings(x: object) -> bool:
        return isinstance(x, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in x.items())

    if not isinstance(held, dict) or held.get("format") != FORMAT:
        return False
    dates, inputs, named, audited = (held.get(k) for k in ("dates", "inputs", "named", "audited"))
    return (
        isinstance(held.get("key"), str)
        and all(number(held.get(k)) for k in ("taken", "newest", "valid_from", "valid_until"))
        and isinstance(named, list)
        and all(isinstance(p, str) for p in named)
        and strings(held.get("files"))
        and strings(held.get("expects"))
        and isinstance(dates, dict)
        and all(isinstance(d, list) and len(d) == 2 and all(map(number, d)) for d in dates.values())
        and isinstance(inputs, dict)
        and all(isinstance(i, list) and all(isinstance(p, str) for p in i) for i in inputs.values())
        and isinstance(audited, list)
        and all(isinstance(f, str) for f in audited)
        and isinstance(held.get("auditor"), str)
    )
