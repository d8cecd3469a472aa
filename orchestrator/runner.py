"""Executing a plan: in a private staging folder, keys generated in parallel, signing in order, every
output read back, and the result moved into place only when all of it is made and verified.

Guarantees (tests/test_faults.py, test_concurrency.py, test_openssl.py):
- one run at a time per output folder (an exclusive lock, taken before the folder is even inspected);
- keys are created under umask 077, so no key is readable by others at any moment;
- an existing CA key is never replaced;
- a killed run leaves the old files or the new ones, never a half-written certs directory;
- files whose content did not change are not touched (same bytes, same mtime).
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from orchestrator import backups, bundles, changes, names, phases, plan, record, script, stamp, state, workers
from orchestrator.cas import signers
from orchestrator.certcheck import load_cert, load_key, problems, public_bytes
from orchestrator.errors import ExitStatus, Interrupted, RunError, UserError
from orchestrator.imports import check_private
from orchestrator.openssl import OpenSSL
from orchestrator.spec import Spec
from orchestrator.steps import (
    Append,
    Chmod,
    Copy,
    Kind,
    MakeDirs,
    Plan,
    RandomSerial,
    Remove,
    Run,
    Step,
    Verify,
    Write,
    is_config,
    reads,
    writes,
)

Progress = Callable[[str], None]
# The openssl to run, or how to find it: found only if the run has an openssl command to run, so that an
# up-to-date folder is checked without starting openssl (or importing `sh`) at all.
Tool = OpenSSL | Callable[[], OpenSSL]


@dataclass(frozen=True)
class Result:
    plan: Plan  # what was run: only the tasks that were needed
    changed: tuple[str, ...]  # files written or replaced, relative to the output folder
    transcript: Path | None
    backup: Path | None = None  # where the keys and certificates this run replaced were kept


def issue(
    spec: Spec,
    out: Path,
    openssl: Tool,
    jobs: int = 0,
    progress: Progress | None = None,
    planner: Callable[[Path], Plan] | None = None,
    backup: Path | None = None,
    finish: Callable[[Result], bool] | None = None,
    stamp_key: Callable[[], str | None] | None = None,
) -> Result:
    """Make or complete the PKI for `spec` in `out`. `planner` (default: `pending`) decides what to run;
    it is called under the lock, so it sees the folder as no other run is changing it. With `backup`,
    every key and certificate the run replaces or drops is first kept in a new `<backup>/<UTC time>/`
    folder (a CA the plan rotates gets a new key: the old one is moved there). `finish` (the audit) runs
    under the lock too, once the run is whole; when it says the whole folder is clean, the folder is
    stamped with the input `stamp_key` says it had (stamp.py). A stamp never needs removing: it holds
    what each file was, so any change (or the time) makes it stop matching."""
    find = openssl if not isinstance(openssl, OpenSSL) else lambda: openssl
    tool = None
    if not (out / names.STATE_DIR).is_dir():
        tool = find()  # a first run always needs it: a missing openssl is refused before any mkdir
    try:
        out.mkdir(parents=True)
    except FileExistsError:
        pass  # the user's folder (or another run's, made a moment ago): its mode is theirs
    else:
        # Never writable by others, whatever the umask: whoever could rename in it could swap
        # my-safe-directory/ for a folder of theirs.
        out.chmod(stat.S_IMODE(out.stat().st_mode) & ~0o022)
    work = out / names.STATE_DIR
    work.mkdir(mode=names.DIR_MODE, exist_ok=True)
    work.chmod(names.DIR_MODE)  # it holds staged keys
    signals = _Signals()
    with _locked(work / "lock"), signals.caught():
        result = _issue_locked(spec, out, work, find, tool, jobs, progress, planner, backup, signals)
        with signals.at_once():  # the audit and the stamp: read only, or one file replaced whole
            key = stamp_key() if finish is not None and finish(result) and stamp_key is not None else None
            if key is not None and not stamp.matches(out, key):
                done = result.plan
                stamp.write(
                    out, key, named_files(spec), done.expects, done.inputs, done.recorded, done.bundles
                )
    return result


def unchanged(out: Path, stamp_key: str, named: Callable[[], list[str] | None] | None = None) -> bool:
    """Whether `out` is as the last clean run with this input left it (stamp.py), looked at under the
    lock (shared, taken without waiting: a read-only folder is looked at too), so never in the middle of
    another run's commit. A lock that cannot be had at once (another run holds it), or what a killed run
    left to clean up, sends the run the full way."""
    work = out / names.STATE_DIR
    if not (out / names.STAMP).is_file():
        return False
    try:
        with os.fdopen(os.open(work / "lock", os.O_RDONLY | os.O_CLOEXEC), "rb") as lock:
            fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
            with os.scandir(work) as entries:
                leftovers = any(e.name.startswith(("stage-", "new-", "old-")) for e in entries)
            return not leftovers and stamp.matches(out, stamp_key, named)
    except OSError:
        return False


def named_files(spec: Spec) -> list[Path]:
    """The files a spec names outside the folder: your own CA's, an imported DB Console certificate's."""
    found = [spec.ca.cert, spec.ca.key] if spec.ca is not None else []
    if spec.ui is not None and spec.ui.cert is not None and spec.ui.key is not None:
        found += [spec.ui.cert, spec.ui.key]
    return found


def _issue_locked(
    spec: Spec,
    out: Path,
    work: Path,
    find: Callable[[], OpenSSL],
    tool: OpenSSL | None,
    jobs: int,
    progress: Progress | None,
    planner: Callable[[Path], Plan] | None,
    backup: Path | None,
    signals: _Signals,
) -> Result:
    with _umask(0o077):
        # First undo what a killed run left (a certs directory mid-swap is put back), then look.
        _remove_leftovers(work)
        with signals.at_once():  # planning reads only: seconds at 10,000 nodes, never deferred
            todo = planner(out) if planner else pending(spec, out)
            with phases.phase("refusals"):
                refuse(todo, out)
        stage = Path(tempfile.mkdtemp(prefix="stage-", dir=work))
        kept = None
        try:
            with phases.phase("staging inputs"):
                _stage_inputs(todo, out, stage)
            if tool is None and any(isinstance(s, Run) for s in todo.steps):
                tool = find()
            _run(todo, stage, tool, jobs or os.cpu_count() or 1, progress or (lambda _: None), signals)
            with phases.phase("commit"):
                changed, kept = _commit(todo, out, stage, work, backup, signals)
        finally:
            with phases.phase("clean-up"):
                shutil.rmtree(stage, ignore_errors=True)
        with phases.phase("transcript"):
            transcript = _write_transcript(todo, out) if changed else None
        # Once more: the openssl of a killed run lives on as an orphan for a moment, and may have written
        # into its staging folder after the first clean-up took it away (seen: `openssl ca` renaming
        # index.txt.new into place there).
        with phases.phase("clean-up"):
            _remove_leftovers(work)
        signals.check()  # one held while committing is honoured now that the commit is whole
    return Result(todo, tuple(changed), transcript, kept)


def pending(spec: Spec, out: Path, asked: changes.Asked | None = None) -> Plan:
    """What `issue` would run now (also for --check); reads only. Refuses (changes.Refused) to replace
    or drop what exists unless `asked` says so."""
    asked = asked or changes.Asked()
    with phases.phase("state inspection"):
        vouch = stamp.Vouch(out, time.time())
        # The nodes' tasks the last clean run left done, as the spec still asks for them: not planned.
        # A name to --reissue or --prune is looked for among all of them.
        inputs = plan.node_inputs(spec)  # what the stamp holds of each node's task, and will hold
        vouching = not (asked.reissue or asked.prune)
        skip = frozenset(task for task, digest in inputs.items() if vouching and vouch.whole(task, digest))
    with phases.phase("planning"):
        full = plan.build(spec, plan.State(skip=skip))
    with phases.phase("state inspection"):
        found = state.inspect(out, full, vouch)
    todo = None
    if skip:
        with phases.phase("planning"):
            todo = _rest(spec, found, skip)
        if _remakes(todo, skip, vouch):
            # What a node left out is made of is made again (its CA certificate; the DB Console pair its
            # folder holds a copy of): none is left out.
            skip, todo = frozenset(), None
            with phases.phase("planning"):
                full = plan.build(spec)
            with phases.phase("state inspection"):
                found = state.inspect(out, full, vouch)
    # A node's folder left out has the listing the stamp saw (Vouch.whole): it held no file the spec
    # does not make after the last clean run, and the same input plans the same files in it.
    found = replace(found, listed=plan.folders_of(skip))
    with phases.phase("guard (--reissue, --prune)"):
        changes.guard(spec, out, full, found, asked)
        dropped = changes.drop(spec, out, full, asked)
    # What the stamp will hold of the tasks left out: as it held it (the same input makes the same task).
    expects = {**{t: vouch.expects[t] for t in skip}, **found.expects}
    held = {t: tuple(vouch.inputs[t]) for t in skip}
    copies = plan.copies_into(full)
    held |= {t.id: (inputs[t.id], *plan.files_of(t, copies)) for t in full.tasks if t.id in inputs}
    del full  # ~5 KB a node: never two whole plans of 10,000 nodes at once (issue 16: peak memory)
    if todo is None:
        with phases.phase("planning"):
            todo = _rest(spec, found, skip)
    # The record the run leaves: the plan's (plan.record_task), or the same text already there.
    elsewhere = found.provenance if found.provenance is record.Provenance.SIGNED_ELSEWHERE else None
    recorded = record.Settings.of(spec, elsewhere).held()
    # A plan that writes nothing is a health check (cli._audit_issued): what the stamp saw audited clean,
    # and is as it saw it, is not audited again.
    idle = not dropped and not todo.drop and not _written(todo)
    clean = vouch.still_clean(todo.bundles) if idle else frozenset()
    return replace(
        todo, drop=(*todo.drop, *dropped), expects=expects, inputs=held, recorded=recorded, still_clean=clean
    )


def _rest(spec: Spec, found: plan.State, skip: frozenset[str]) -> Plan:
    """What is left to do: what `found` does not hold right, the tasks in `skip` counted as done."""
    return plan.build(spec, replace(found, skip=skip, fresh=found.fresh | skip))


def _remakes(todo: Plan, skip: frozenset[str], vouch: stamp.Vouch) -> bool:
    """Whether `todo` writes a file that one of the tasks in `skip` is made of (Vouch.whole's files)."""
    written = _written(todo)
    return any(not written.isdisjoint(vouch.inputs[task][1:]) for task in skip)


def _written(todo: Plan) -> set[str]:
    """Every file the plan writes."""
    return {path for step in todo.steps for path in writes(step)}


def refuse(todo: Plan, out: Path) -> None:
    """Every refusal a run makes before it touches anything; `issue --check` makes the same ones."""
    _refuse_to_replace_a_ca(todo, out)
    _refuse_what_cannot_be_swapped(todo, out)
    for path in _inputs(todo):
        if path.endswith(".key") and (out / path).is_file():
            check_private(out / path)


def _inputs(todo: Plan) -> Iterator[str]:
    """The files the plan reads but neither makes nor changes, each once."""
    written = _written(todo)
    made: set[str] = set()
    for step in todo.steps:
        for path in reads(step):
            if path not in made and path not in written and not Path(path).is_absolute():
                made.add(path)
                yield path
        made.update(writes(step))


def _refuse_to_replace_a_ca(todo: Plan, out: Path) -> None:
    """A CA certificate is only ever made again with the key it already has (a renewal). A new CA key
    beside an existing CA certificate, or a key that is not that certificate's, means a new CA that every
    node and client must be given: never done silently (issue 5). `rotate-ca` does it on purpose (a plan
    that appends the old CA to the new one, with a backup for the old key)."""
    for task in todo.tasks:
        expect = task.expect
        if expect is None or not expect.is_ca or not any(isinstance(s, Run) for s in task.steps):
            continue
        if any(isinstance(s, Append) and s.dst == expect.cert for s in task.steps):
            continue  # rotate-ca: the old CA stays in the file after the new one, its key in the backup
        cert, key = out / expect.cert, out / expect.key
        if not cert.is_file():
            continue
        kept = backups.interrupted(out, expect.key, expect.cert)
        if kept is not None:
            raise UserError(backups.resume_advice(out, expect.cert, kept))
        new_key = any(isinstance(s, Run) and s.keygen and expect.key in s.writes for s in task.steps)
        if new_key:
            raise UserError(
                f"{cert}: this CA certificate exists but its key {expect.key} does not; put the key back, "
                f"or move {expect.cert} away to start a new CA (and re-issue everything it signed)"
            )
        try:
            same = public_bytes(load_key(key)) == public_bytes(load_cert(cert))
        except (OSError, ValueError, TypeError):
            continue  # an unreadable certificate is remade with the key that is there
        if not same:
            raise UserError(
                f"{key}: this is not the key of {cert}; put the CA's own key back, "
                f"or move {expect.cert} away to start a new CA (and re-issue everything it signed)"
            )


def _refuse_what_cannot_be_swapped(todo: Plan, out: Path) -> None:
    """Refused before anything is made: a destination the commit could not replace whole. A certs
    directory is swapped in by rename(2), which would replace a symlink with a folder (and swapping inside
    the link's target would leave crash recovery guessing where the old folder goes back), and every file
    is renamed in from .crdb-certs/, which rename(2) cannot do across file systems. my-safe-directory/ is
    the exception: a link to a removable disk, its keys are placed by copy and link (_place_new)."""
    if not out.is_dir():
        return  # a new folder: everything is made in it
    device, work = out.stat().st_dev, out / names.STATE_DIR
    written = {w for s in todo.steps for w in writes(s) if not w.startswith(names.SAFE_DIR + "/")}
    destinations = {bundles.folder_of(w, todo.bundles) or w for w in written}
    for rel in sorted(destinations):
        target = out / rel
        if rel in todo.bundles and target.is_symlink():
            raise UserError(
                f"{target}: a symbolic link; crdb-certs replaces a certs directory whole, which would"
                f" replace the link with a folder: make {rel} a real folder (or link {out} itself)"
            )
        parent = next(p for p in target.parents if p.exists())
        if parent.stat().st_dev != device:
            raise UserError(
                f"{parent}: on another file system than {work}; crdb-certs moves every file into place with"
                f" rename(2), which cannot cross file systems: keep {out} on one (or link {out} itself)"
            )


# ---------------------------------------------------------------------------------------- staging


def _stage_inputs(todo: Plan, out: Path, stage: Path) -> None:
    """Bring into the staging folder what the plan reads but does not make: read-only inputs as
    symlinks (the CA key is never copied), files the plan will change as private copies."""
    written = _written(todo)
    made: set[str] = set()
    for step in todo.steps:
        for path in reads(step):
            if path in made or Path(path).is_absolute():  # absolute: a file named in the spec, read in place
                continue
            made.add(path)
            source, target = out / path, stage / path
            if not source.is_file():
                raise UserError(f"{source}: missing, and this run needs it ({script.shell(step)})")
            target.parent.mkdir(parents=True, exist_ok=True)
            if path in written:
                shutil.copy2(source, target)
            else:  # refuse() has checked that a key read here is private
                target.symlink_to(source.resolve())
        made.update(writes(step))


class ExposedKey(UserError):
    """A CA key others can read, found by a run that had nothing to sign: a finding, like the audit's."""

    status = ExitStatus.FINDINGS


def check_ca_keys(spec: Spec, out: Path) -> None:
    """Every CA key in my-safe-directory/ is its owner's alone, whether or not a run signs with it: a run
    that signs refuses it before anything (`refuse`); `issue` with nothing to do, and `issue --check`,
    call this (ExposedKey, exit 1)."""
    for ca in signers(spec).all:
        if ca.external is None and (out / ca.key).is_file():
            try:
                check_private(out / ca.key)
            except UserError as e:
                raise ExposedKey(str(e)) from None


# ---------------------------------------------------------------------------------------- running


def _run(
    todo: Plan, stage: Path, openssl: OpenSSL | None, jobs: int, progress: Progress, signals: _Signals
) -> None:
    """Every step of the plan in `stage`; a signal stops it before the next step (Interrupted)."""
    steps = [_only_folders_written(s, todo) if isinstance(s, MakeDirs) else s for s in todo.steps]
    # Folders and configs depend on nothing: make them first.
    early = {i for i, s in enumerate(steps) if isinstance(s, MakeDirs) or is_config(s)}
    for i in sorted(early):
        signals.check()
        _timed_do(steps[i], stage, openssl)
        _finished(steps[i], progress)
    # Each new key and the CSR made from it (~90% of the time with RSA keys) depend on nothing else: those
    # chains run `jobs` at a time in workers (workers.py), ahead of need; every other openssl command (the
    # signatures, in the plan's order) runs in one more worker, and every other step here, in the plan's
    # order, waiting only for the chain it reads. A certificate is verified while the next one is signed.
    chains = list(_key_chains(steps).values())
    chain_of = {i: n for n, chain in enumerate(chains) for i in chain}
    started, running, done = 0, 0, set[int]()
    here = -1  # the job number of a command run in the plan's order (chains are 0, 1, ...)
    unverified: list[Verify] = []
    unverified_reads: set[str] = set()

    def wait_for(job: int) -> None:
        nonlocal started, running
        while job not in done:
            while started < len(chains) and running < jobs:
                pool.submit(started, [_argv(steps[i]) for i in chains[started]], stage, ahead=True)
                started, running = started + 1, running + 1
            for n, error in pool.wait():
                if error:
                    signals.check()  # openssl killed by the signal the run got (a unit's control group)
                    raise RunError(error)
                done.add(n)
                running -= n != here
            signals.check()
        done.discard(here)

    def verify() -> None:
        for step in unverified:
            _timed_do(step, stage, openssl)
            _finished(step, progress)
        unverified.clear()
        unverified_reads.clear()

    commands = sum(isinstance(s, Run) for s in steps)
    with workers.pool(openssl, jobs, signals.wakeup, commands) as pool:
        if any(isinstance(s, Run) and i not in chain_of for i, s in enumerate(steps)):
            pool.start(ahead=False)  # its interpreter starts while the first keys are made (~0.1 s)
        for i, step in enumerate(steps):
            if i in early:
                continue
            signals.check()
            if isinstance(step, Verify):
                unverified.append(step)
                unverified_reads.update(reads(step))
                continue
            if not unverified_reads.isdisjoint(writes(step)):
                verify()
            if i in chain_of:
                with phases.phase("keys and requests (waiting for them)"):
                    wait_for(chain_of[i])
                _check_outputs(step, stage)
            elif isinstance(step, Run):
                with phases.phase(f"openssl: {step.kind.value}"):
                    pool.submit(here, [step.argv], stage)
                verify()  # the certificates made before, while this command runs
                with phases.phase(f"openssl: {step.kind.value}"):
                    wait_for(here)
                _check_outputs(step, stage)
            else:
                _timed_do(step, stage, openssl)
            _finished(step, progress)
        verify()


def _argv(step: Step) -> tuple[str, ...]:
    assert isinstance(step, Run)
    return step.argv


def _finished(step: Step, progress: Progress) -> None:
    """A step is done (here, or in a worker): a certificate verified is one more on the progress line."""
    if isinstance(step, Verify):
        with phases.phase("progress"):
            progress(step.expect.cert)


def _only_folders_written(step: MakeDirs, todo: Plan) -> MakeDirs:
    """The folders of `step`, but a node's folder only where some step writes into it: a run that makes
    one certificate of 10,000 nodes does not make (and remove) 10,000 empty folders (issue 16). certs/
    and the others stay: openssl writes into them unasked (`openssl ca -outdir certs/`)."""
    used = {str(Path(p).parent) for s in todo.steps for p in writes(s)}
    nodes = names.NODES_DIR + "/"
    return MakeDirs(tuple(p for p in step.paths if p in used or not p.startswith(nodes)))


def _key_chains(steps: list[Step]) -> dict[int, list[int]]:
    """Step indexes: each key generation, followed by the certificate request that reads that key."""
    chains: dict[int, list[int]] = {}
    made_by: dict[str, int] = {}
    for i, step in enumerate(steps):
        if isinstance(step, Run) and step.keygen:
            chains[i] = [i]
            made_by[step.writes[0]] = i
        elif isinstance(step, Run) and step.kind is Kind.REQUEST:
            key = next((r for r in step.reads if r in made_by), None)
            if key is not None:
                chains[made_by.pop(key)].append(i)
    return chains


def _timed_do(step: Step, stage: Path, openssl: OpenSSL | None) -> None:
    """_do, its time counted in the phase its kind of step belongs to (orchestrator/phases.py)."""
    if isinstance(step, Verify):
        name = "verification"
    elif is_config(step):
        name = "configs written"
    else:
        name = "files (copies, folders, serials)"
    with phases.phase(name):
        _do(step, stage, openssl)


def _do(step: Step, stage: Path, openssl: OpenSSL | None) -> None:
    match step:
        case Run(argv=argv):
            assert openssl is not None  # `issue` finds it when the plan has a command to run
            openssl.run(argv, stage)
            _check_outputs(step, stage)
        case MakeDirs(paths=paths):
            for p in paths:
                (stage / p).mkdir(mode=names.DIR_MODE, parents=True, exist_ok=True)
        case Write(path=path, text=text):
            (stage / path).write_text(text, encoding="utf-8")
        case Chmod(mode=mode, path=path):
            (stage / path).chmod(mode)
        case Remove(patterns=patterns):
            for pattern in patterns:
                for match in stage.glob(pattern):
                    match.unlink()
        case Copy(src=src, dst=dst, mode=None):
            (stage / dst).unlink(missing_ok=True)
            shutil.copy2(stage / src, stage / dst)
        case Copy(src=src, dst=dst, mode=int(mode)):
            (stage / dst).unlink(missing_ok=True)
            shutil.copyfile(stage / src, stage / dst)  # created private (umask 077), never with src's mode
            (stage / dst).chmod(mode)
        case Append(src=src, dst=dst):
            with (stage / dst).open("ab") as target:
                target.write((stage / src).read_bytes())
        case RandomSerial(path=path):
            (stage / path).write_text(secrets.token_hex(16) + "\n")
        case Verify(expect=expect):
            wrong = problems(expect, stage)
            if wrong:
                raise RunError("openssl made a certificate other than the one asked for: " + "; ".join(wrong))


def _check_outputs(step: Step, stage: Path) -> None:
    """openssl can exit 0 without writing anything (`openssl ca` declining to sign): read back each output."""
    if isinstance(step, Run):
        for path in step.writes:
            _check_output(stage / path, step.argv)


def _check_output(path: Path, argv: tuple[str, ...]) -> None:
    try:
        if path.suffix == ".key":
            load_key(path)
        elif path.suffix == ".crt":
            load_cert(path)
        elif path.suffix == ".csr":
            x509.load_pem_x509_csr(path.read_bytes())
        elif not path.is_file():
            raise FileNotFoundError(path)
    except (OSError, ValueError, TypeError) as e:
        raise RunError(
            f"`{' '.join(argv)}` exited 0 but {path.name} is missing or unreadable ({e})"
        ) from None


# ---------------------------------------------------------------------------------------- commit


def _commit(
    todo: Plan, out: Path, stage: Path, work: Path, backup: Path | None, signals: _Signals
) -> tuple[list[str], Path | None]:
    """Move what changed into place: CA keys first, then the CA databases and configs, then each certs
    directory as a whole (a directory rename), so a certs directory is never seen half-written.
    With `backup`, what is replaced is kept first (a CA key in my-safe-directory/backup/, see backups).
    SIGTERM and SIGINT are held while files are moved, and honoured between two of them (never inside a
    certs directory's swap) once the hold has lasted _HOLD_SECONDS: a commit of 10,000 certs directories
    still stops within a second, each directory old or new, as a SIGKILL there would leave it."""
    staged = sorted(_regular_files(stage))
    changed = [p for p in staged if not _same(stage / p, out / p)]
    dropped = [f for path in todo.drop for f in _files_under(out, path)]
    # Each file's certs directory, by its parent folders: never each file against every folder (issue 16).
    changed_set, gone = set(changed), set(dropped)
    by_folder: dict[str, list[str]] = {}
    loose: list[str] = []
    for path in [*changed, *dropped]:
        folder = bundles.folder_of(path, todo.bundles)
        if folder is not None:
            by_folder.setdefault(folder, []).append(path)
        elif path in changed_set:  # a dropped file outside them goes with its folder, below
            loose.append(path)
    folders = sorted(by_folder, key=lambda d: d != names.CERTS_DIR)
    # What can fail (a full disk, a file that cannot be copied) is done before the first file is replaced:
    # the copy of each certs directory to be swapped, then the backup. A failure leaves nothing committed.
    kept: Path | None = None
    kept_keys: list[Path] = []
    fresh: dict[str, Path] = {}
    try:
        for folder in folders:
            signals.check()
            fresh[folder] = _copy_of(folder, out, work)
        if backup is not None:
            kept, kept_keys = backups.keep(out, [p for p in changed if _is_pki_file(p)] + dropped, backup)
        signals.check()
    except BaseException:
        _remove_copies(work)
        raise
    replaced_keys = {f"{names.SAFE_DIR}/{k.name}" for k in kept_keys}
    for path in loose:
        if path.startswith(names.SAFE_DIR + "/") and (out / path).exists() and path not in replaced_keys:
            _remove_copies(work)
            raise RuntimeError(f"refusing to replace the CA key {path}")  # a planner bug, never a user's
    try:
        with signals.held() as between:
            for path in sorted(loose, key=_commit_order):
                between()
                (out / path).parent.mkdir(mode=names.DIR_MODE, parents=True, exist_ok=True)
                if path.startswith(names.SAFE_DIR + "/"):
                    _place_new(stage / path, out / path, replace=path in replaced_keys)
                else:
                    os.replace(stage / path, out / path)
            for folder in folders:
                between()
                files = by_folder[folder]
                new = [p for p in files if p not in gone]
                _swap_in(folder, new, out, stage, work, fresh.pop(folder), drop=files)
            for path in todo.drop:  # outside the certs directories: a pruned node's whole folder
                if bundles.folder_of(path, todo.bundles) is None and (out / path).exists():
                    between()
                    old = work / ("old-" + path.replace("/", "_"))
                    os.rename(out / path, old)
                    shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        _remove_copies(work)  # the copies of the certs directories the run stopped before
        raise
    return changed + dropped, kept


def _regular_files(root: Path, under: str = "") -> Iterator[str]:
    """The regular files under `root` (no symbolic link, nothing under a linked folder), relative to it.
    Not Path.rglob: Python 3.11's keeps every Path it has yielded in a set until the walk ends, ~0.7 KB a
    file, which at 10,000 nodes (50,000 staged files) set the run's peak memory (issue 16)."""
    with os.scandir(root / under) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                yield from _regular_files(root, f"{under}{entry.name}/")
            elif entry.is_file(follow_symlinks=False):
                yield f"{under}{entry.name}"


def _remove_copies(work: Path) -> None:
    for copy in work.glob("new-*"):  # ours: the lock is held
        shutil.rmtree(copy, ignore_errors=True)


def _is_pki_file(path: str) -> bool:
    """What a run keeps in the backup before replacing it: keys and certificates, not configs or the CA
    database (those are made again from the spec, or only grow)."""
    return path.startswith(names.SAFE_DIR + "/") or path.endswith((".crt", ".key", ".pk8"))


def _files_under(out: Path, path: str) -> list[str]:
    """`path` (a file or a folder, relative to `out`) as the files it holds."""
    target = out / path
    if target.is_dir() and not target.is_symlink():
        return sorted(p.relative_to(out).as_posix() for p in target.rglob("*") if p.is_file())
    return [path] if target.is_file() else []


def _place_new(src: Path, dst: Path, replace: bool = False) -> None:
    """Put a new CA key in place with link(2), which fails if the name exists: never replaces a key, even
    against a writer that is not crdb-certs. With `replace` (rotate-ca, once backups.keep has copied the
    old key), one rename replaces it: the name always holds the old key or the new one. my-safe-directory/
    may be a link to another file system (a removable disk): then a private copy beside the target is
    put in place."""
    put = os.replace if replace else os.link
    try:
        put(src, dst)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
        shutil.copyfile(src, tmp)  # created under umask 077
        tmp.chmod(stat.S_IMODE(src.stat().st_mode))
        try:
            put(tmp, dst)
        finally:
            tmp.unlink(missing_ok=True)


def _commit_order(path: str) -> tuple[int, str]:
    """CA keys first (a certificate is never published without its key kept); a CA's serial file before
    its database, so that a kill in between leaves a gap in the serials, never a serial issued twice
    (`openssl ca` would refuse it and the run could not complete); every certs directory comes after."""
    name = Path(path).name
    if path.startswith(names.SAFE_DIR + "/"):
        rank = 0
    elif "serial" in name:
        rank = 1
    elif "index.txt" in name:
        rank = 3
    else:
        rank = 2
    return rank, path


def _copy_of(folder: str, out: Path, work: Path) -> Path:
    """A private copy of a certs directory, for _swap_in to put the new files in."""
    fresh = work / ("new-" + folder.replace("/", "_"))
    if (out / folder).is_dir():
        # Keeps whatever else the user put there; a FIFO or a device among it is refused, not read.
        shutil.copytree(out / folder, fresh, symlinks=True, copy_function=_copy_regular)
    fresh.mkdir(mode=names.DIR_MODE, exist_ok=True)
    fresh.chmod(names.DIR_MODE)
    return fresh


def _copy_regular(src: str, dst: str) -> object:
    if not stat.S_ISREG(os.stat(src).st_mode):
        raise UserError(f"{src}: not a regular file (a FIFO, socket or device); move it out, then run again")
    return shutil.copy2(src, dst)


def _swap_in(
    folder: str,
    files: list[str],
    out: Path,
    stage: Path,
    work: Path,
    fresh: Path,
    drop: Sequence[str] = (),
) -> None:
    """Replace `folder` whole by `fresh`, its copy, with `files` (staged) put in and `drop` left out."""
    old = work / ("old-" + folder.replace("/", "_"))
    for path in drop:
        (fresh / Path(path).name).unlink(missing_ok=True)
    for path in files:
        target = fresh / Path(path).name
        target.unlink(missing_ok=True)
        os.replace(stage / path, target)
        if target.suffix == ".crt":
            target.chmod(names.CERT_MODE)
    (out / folder).parent.mkdir(parents=True, exist_ok=True)
    if (out / folder).exists():
        os.rename(out / folder, old)
    os.rename(fresh, out / folder)
    shutil.rmtree(old, ignore_errors=True)


def _same(a: Path, b: Path) -> bool:
    return b.is_file() and a.read_bytes() == b.read_bytes()


def _remove_leftovers(work: Path) -> None:
    """A killed run leaves its staging folder (and maybe a folder mid-swap); the lock says none is live."""
    for entry in work.iterdir():
        if entry.name.startswith(("stage-", "new-")):
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.name.startswith("old-"):
            target_name = entry.name.removeprefix("old-").replace("_", "/", 1)
            target = work.parent / target_name
            if not target.exists():  # killed between the two renames: put the old folder back
                os.rename(entry, target)
            else:
                shutil.rmtree(entry, ignore_errors=True)


def _write_transcript(todo: Plan, out: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = out / f"transcript-{stamp}.sh"
    tasks = [t for t in todo.tasks if t.steps and not all(is_config(s) for s in t.steps)]
    title = f"crdb-certs issue, {stamp}: the commands this run ran"
    new_pki = any(p.startswith(names.SAFE_DIR + "/") for t in tasks for s in t.steps for p in writes(s))
    with path.open("w") as handle:  # line by line: 10,000 nodes' transcript is ~20 MB
        handle.writelines(script.script_lines(todo, tasks, title=title, empty=new_pki, transcript=True))
    return path


# ---------------------------------------------------------------------------------------- helpers


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600), "r+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(
                f"crdb-certs: waiting for another run on {path.parent.parent} to finish …",
                file=sys.stderr,
                flush=True,
            )
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


class _Signals:
    """SIGTERM (docker stop, a CI timeout) and SIGINT (Ctrl-C) during one run. While the run plans or
    audits (`at_once`), a signal ends it where it lands. While it makes and commits, the handler only
    records it, and the run honours it where it can stop cleanly: before its next step (a wait for the
    workers wakes up for it), or right after the commit, during which they are held (`held`). It then
    ends with Interrupted (`interrupted`, exit 143 or 130), through every `finally`, so the staging
    folder with its keys is removed. (SIGKILL cannot be caught: the next run cleans up.)"""

    def __init__(self) -> None:
        self.received: list[int] = []
        # Readable once a signal came (signal.set_wakeup_fd): a run waiting for its workers wakes up.
        self.wakeup: int | None = None
        self.immediate = False  # see at_once

    def check(self) -> None:
        if self.received:
            raise Interrupted(self.received[0])

    @contextmanager
    def at_once(self) -> Iterator[None]:
        """Where a run writes nothing that could be left half-done (planning, which at 10,000 nodes takes
        seconds; the audit), a signal ends it where it lands (issue 16: never deferred for long)."""
        self.check()
        self.immediate = True
        try:
            yield
        finally:
            self.immediate = False

    @contextmanager
    def caught(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers can only be set from the main thread: a library caller's concern
            return

        def record(signum: int, _frame: object) -> None:
            self.received.append(signum)
            if self.immediate:
                raise Interrupted(signum)

        previous = {sig: signal.signal(sig, record) for sig in (signal.SIGTERM, signal.SIGINT)}
        read, write = os.pipe()
        os.set_blocking(read, False)
        os.set_blocking(write, False)
        previous_wakeup = signal.set_wakeup_fd(write)
        self.wakeup = read
        try:
            yield
        finally:
            signal.set_wakeup_fd(previous_wakeup)
            self.wakeup = None
            os.close(read)
            os.close(write)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @contextmanager
    def held(self) -> Iterator[Callable[[], None]]:
        """While committing, SIGINT and SIGTERM wait: the renames finish, then the signal is delivered to
        the handler, and `check` after the commit honours it. A long commit calls the function this
        yields between two moves: once the hold has lasted _HOLD_SECONDS, a signal that came meanwhile is
        honoured there (Interrupted), so no hold lasts much longer than that."""
        if threading.current_thread() is not threading.main_thread():
            yield lambda: None
            return
        blocked = {signal.SIGINT, signal.SIGTERM}
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
        since = time.monotonic()

        def between() -> None:
            nonlocal since
            if time.monotonic() - since < _HOLD_SECONDS:
                return
            came = signal.sigpending() & blocked
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)  # delivered now: the handler records it
            if came:
                raise Interrupted(min(came))
            self.check()
            signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
            since = time.monotonic()

        try:
            yield between
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


# The longest a commit holds SIGTERM and SIGINT before it honours one between two moves (issue 16).
_HOLD_SECONDS = 0.5


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)
