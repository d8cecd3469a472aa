"""The command line: a thin layer over spec -> plan -> runner/script. `main(argv)` returns the exit status,
so tests call it in-process."""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

# Only what `issue` needs is imported here: every run pays for each import (issue 6, fixed overhead).
# rich (the progress line, `list`'s table), k8s and difflib are imported by the commands that use them.
from orchestrator import (
    audit,
    backups,
    bundles,
    cas,
    changes,
    duration,
    handoff,
    imports,
    lifecycle,
    names,
    openssl,
    phases,
    plan,
    record,
    revocation,
    runner,
    script,
    spec,
    stamp,
    state,
)
from orchestrator.errors import ExitStatus, Interrupted, RunError, SpecError, UserError
from orchestrator.lifecycle import Stage
from orchestrator.nextsteps import next_steps
from orchestrator.steps import Copy, Plan, Verify

Say = Callable[[str], None]


def _err(text: str) -> None:
    click.echo(text, err=True)


def _say(quiet: bool) -> Say:
    """Where a command's report goes: stdout as plain text (never rich markup: a path or a user name in
    square brackets is printed as it is), or nowhere with --quiet."""
    return (lambda _: None) if quiet else click.echo


class PathParam(click.Path):
    """Every path option and argument. A value no command can use (a newline in it, below a regular file,
    a symbolic link to nothing, a FIFO or a device for a file) is refused as the command line is read:
    one line naming the option, exit 2, nothing written. What shows only when the path is used (a
    read-only mount, no permission, /proc) is named the same way by `_Command`."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        problem = _unusable(Path(os.fsdecode(value)), self)  # first: click says "does not exist" for EACCES
        if problem:
            raise SpecError(_name(param), os.fsdecode(value), problem)
        return super().convert(value, param, ctx)


def _unusable(path: Path, kind: click.Path) -> str | None:
    if not str(path).isprintable():  # a newline, a control character, bytes that are not UTF-8
        return "is not a printable name (control characters, or bytes that are not UTF-8)"
    for at in (path, *path.parents):
        try:
            mode = at.stat().st_mode
        except (FileNotFoundError, NotADirectoryError):
            if at.is_symlink():
                where = "is" if at == path else f"is below {at},"
                return f"{where} a symbolic link to nothing ({os.readlink(at)})"
            continue
        except OSError as e:
            return f"cannot be reached: {e.strerror}"
        if at != path and not stat.S_ISDIR(mode):
            return f"is below {at}, which is not a folder"
        if at == path and not kind.dir_okay and not stat.S_ISREG(mode):
            return "is not a regular file"  # /dev/zero, a FIFO: read forever, or replaced by a rename
        if at == path and not kind.file_okay and not stat.S_ISDIR(mode):
            return "is not a folder"
        return None
    return None


def _name(param: click.Parameter | None) -> str:
    if isinstance(param, click.Option):
        return param.opts[0]
    return param.human_readable_name if param else "path"


# errno values that say the path given is wrong (exit 2); any other (a full disk) is a failure (exit 3).
_PATH_ERRNOS = {
    errno.ENOENT,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ELOOP,
    errno.ENAMETOOLONG,
    errno.EEXIST,
}


class _Command(click.Command):
    """Every command: an OSError that reaches here is one line, never a traceback, naming the path option
    it concerns (the path given, a file in it, or a folder above it)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OSError as e:
            raise _one_line(self, ctx, e) from None


def _one_line(command: click.Command, ctx: click.Context, e: OSError) -> UserError:
    reason = e.strerror or str(e)
    failed = Path(os.path.abspath(e.filename)) if isinstance(e.filename, str) else None
    for param in command.params:
        given = ctx.params.get(param.name or "")
        if failed is None or not isinstance(param.type, PathParam) or not isinstance(given, Path):
            continue
        where = Path(os.path.abspath(given))
        # The path itself, a folder above it, a file in it, or (a file option) its temporary copy beside it.
        beside = not param.type.dir_okay and failed.parent == where.parent
        if failed == where or failed in where.parents or where in failed.parents or beside:
            said = reason if failed == where else f"{reason} ({failed})"
            error = SpecError(_name(param), str(given), f"cannot be used: {said}")
            if e.errno not in _PATH_ERRNOS:
                error.status = ExitStatus.FAILED
            return error
    return RunError(f"{e.filename}: {reason}" if e.filename else reason)


class _Group(click.Group):
    command_class = _Command
    group_class = type  # `export` is a _Group too, so `export k8s` is a _Command


config_option = click.option(
    "--config",
    "config",
    type=PathParam(path_type=Path, dir_okay=False),
    help="Spec file (TOML). Default: the spec the output folder records; for a new folder, the embedded"
    " certs.toml (one node on localhost, user root).",
)


def load_spec(
    config: Path | None,
    out: Path | None,
    profile: str | None = None,
    key_type: str | None = None,
    check_files: bool = True,
    ui_files: bool = True,
) -> spec.Spec:
    """The spec a command works with: --config; else the one the output folder records; else, for a
    folder that holds no PKI yet, the embedded default. A PKI without a record is never guessed at.
    With `check_files`, the files it names from elsewhere are checked (a command that will use them);
    without `ui_files`, only [ca]'s (a command that signs but never copies an imported UI certificate)."""
    found = _spec_for(config, out, profile, key_type)
    if check_files:
        imports.check_files(found, ui=ui_files)
    return found


def _spec_for(config: Path | None, out: Path | None, profile: str | None, key_type: str | None) -> spec.Spec:
    if config is not None or out is None:
        return spec.load(config, profile, key_type)
    held = record.read(out)
    if held is not None:
        return held.spec(profile, key_type)
    if record.holds_a_pki(out):
        raise UserError(
            f"--config: {out} holds certificates but no record of the spec they were made from"
            f" ({names.RECORD}); name that spec with --config"
        )
    return spec.load(None, profile, key_type)


F = TypeVar("F", bound=Callable[..., Any])


def out_option(help: str, default: str | None = ".", required: bool = False) -> Callable[[F], F]:
    """`--out DIR`: every command's output folder, the current one unless said otherwise."""
    return click.option(
        "--out",
        type=PathParam(path_type=Path, file_okay=False),
        callback=_not_a_certs_dir,
        default=None if required else default,
        required=required,
        show_default=default is not None and not required,
        help=help,
    )


def _not_a_certs_dir(ctx: click.Context, param: click.Parameter, out: Path | None) -> Path | None:
    """A certs directory of an output folder (its certs/ or nodes/<name>/) is not one itself: given as
    --out, it would get a PKI of its own, CA key included, among the files handed out."""
    above = record.folder_above(out) if out is not None else None
    if above is not None:
        raise SpecError(
            "--out",
            str(out),
            f"is a certs directory of the output folder {above}: give --out {script.quote(above)}",
        )
    return out


key_type_option = click.option(
    "--key-type",
    type=click.Choice(spec.KEY_TYPES),
    help="Override the spec's key type: rsa (default, --key-bits in the spec) or ec (P-256).",
)
profile_option = click.option(
    "--profile",
    type=click.Choice(spec.PROFILES),
    help="Override the spec's profile: secure (default), docs (the v26.3 page exactly), docs-v19.",
)


def _help_without_command(ctx: click.Context) -> None:
    """A group named without a command (`crdb-certs`, `crdb-certs export`): the help, as `git` alone
    prints its usage: on stdout and not as an error; exit 2 (usage), as click's own no-command exit."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
        ctx.exit(ExitStatus.USAGE)


# invoke_without_command: the callback prints the help itself (click would make it an "error: ...").
@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"]},
    invoke_without_command=True,
    subcommand_metavar="COMMAND [ARGS]...",
)
@click.version_option(package_name="crdb-certs")
@click.option(
    "--openssl",
    "openssl_path",
    metavar="PATH",
    default=None,
    help=f"The openssl to run (a Homebrew or custom build) [default: ${openssl.ENV}, else openssl on PATH].",
)
@click.pass_context
def cli(ctx: click.Context, openssl_path: str | None) -> None:
    """CockroachDB certificates with openssl, the way the docs make them, without their mistakes."""
    if openssl_path is not None:
        openssl.choose(openssl_path)
    elif os.environ.get(openssl.ENV):
        openssl.choose(os.environ[openssl.ENV], openssl.ENV)
    _help_without_command(ctx)


@cli.command()
@config_option
@out_option("Output folder: certs/, my-safe-directory/, nodes/<name>/ are made in it.")
@profile_option
@key_type_option
@click.option(
    "--jobs", type=click.IntRange(1, 64), default=None, help="Keys generated at once [default: CPUs]."
)
@click.option(
    "--check",
    is_flag=True,
    help="Change nothing; say what `issue` would make, replace, repair or refuse; exit 1 if anything.",
)
@click.option(
    "--reissue",
    is_flag=False,
    flag_value=changes.ALL,
    default=None,
    metavar="[NAMES]",
    help="Replace the certificates that differ from the spec (all, or these nodes/users/ui,"
    " comma-separated); the old ones are kept in backup/.",
)
@click.option(
    "--prune", is_flag=True, help="Move the files of nodes and users no longer in the spec to backup/."
)
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
def issue(
    config: Path | None,
    out: Path,
    profile: str | None,
    key_type: str | None,
    jobs: int | None,
    check: bool,
    reissue: str | None,
    prune: bool,
    quiet: bool,
) -> int:
    """Make or complete the PKI. A second run with the same spec changes nothing.

    Nothing that exists is replaced or taken away unless --reissue or --prune says so.
    """
    say = _say(quiet)
    # Nothing touched since the last clean run with this spec: the same answer, without planning (stamp.py).
    given = stamp.source(config, out)
    stamp_key = stamp.key(*given, profile, key_type) if given else None
    named = (lambda: stamp.named_in(*given)) if given else None  # the spec parsed only if the rest matches
    if stamp_key is not None and reissue is None and not prune and runner.unchanged(out, stamp_key, named):
        (click.echo if check else say)(f"{out}: up to date" + ("" if check else ", nothing changed"))
        return ExitStatus.OK

    def input_key() -> str | None:
        """The run's input, as the next run will see it: without --config, the record it just wrote."""
        if config is not None:
            return stamp_key
        written = stamp.source(None, out)
        return stamp.key(*written, profile, key_type) if written else None

    the_spec = load_spec(config, out, profile, key_type)
    asked = changes.Asked(frozenset(_csv(reissue)), prune)
    if check:
        return _check_issue(the_spec, out, asked)

    def planner(where: Path) -> Plan:
        return runner.pending(the_spec, where, asked)

    def finish(result: runner.Result) -> bool:
        """The audit, under the run's lock: whether it looked at every certs directory and said nothing."""
        with phases.phase("audit"):
            clean = _audit_issued(out, result.plan, result.changed, say)
            runner.check_ca_keys(the_spec, out)  # a run with nothing to sign has not looked at them
        return clean

    def run(progress: runner.Progress | None, plan_for: Callable[[Path], Plan]) -> runner.Result:
        return runner.issue(
            the_spec,
            out,
            openssl.find,
            jobs or 0,
            progress=progress,
            planner=plan_for,
            backup=out / names.BACKUP_DIR,
            finish=finish,
            stamp_key=input_key,
        )

    if sys.stdout.isatty() and not quiet:
        import time

        from rich.progress import Progress, SpinnerColumn, TextColumn

        # Refreshed by each step, not by a thread of its own: runner._run forks, never beside another thread.
        columns = SpinnerColumn(), TextColumn("{task.description}")
        with Progress(*columns, transient=True, auto_refresh=False) as bar:
            counter = bar.add_task("issuing certificates …", total=None)
            done, total, started = 0, 0, time.monotonic()

            def counted(where: Path) -> Plan:
                """The plan, and its total: each certificate is verified once (a Verify step)."""
                nonlocal total
                todo = planner(where)
                total = sum(isinstance(step, Verify) for step in todo.steps)
                return todo

            drawn = 0.0

            def advance(cert: str) -> None:
                nonlocal done, drawn
                done += 1
                now = time.monotonic()
                if now - drawn < 0.1 and done < total:
                    return  # at most ten redraws a second, however many certificates: no redraw storm
                drawn = now
                left = (now - started) / done * (total - done)
                eta = f", about {_eta(left)} left" if done < total else ""
                bar.update(counter, description=f"{done}/{total} verified{eta}, last: {cert}", refresh=True)

            result = run(advance, counted)
    else:
        result = run(None, planner)
    made = [t.title for t in result.plan.work()]
    if not result.changed:
        say(f"{out}: up to date, nothing changed")
        return ExitStatus.OK
    for title in made:
        say(f"made {title}")
    for path in result.plan.drop:
        say(f"moved {path} out of the folder")
    if result.backup:
        say(f"the files replaced: kept in {result.backup} (delete it when you no longer need it)")
    if result.transcript:
        say(f"commands run: {result.transcript}")
    if not quiet:  # a line a node: not made to be thrown away (issue 16)
        say(next_steps(the_spec, out))
    return ExitStatus.OK


def _eta(seconds: float) -> str:
    """An estimate as a person reads it: whole seconds, then whole minutes."""
    return f"{max(1, round(seconds))} s" if seconds < 90 else f"{round(seconds / 60)} min"


def _check_issue(the_spec: spec.Spec, out: Path, asked: changes.Asked) -> int:
    """`issue --check`: the same planning and the same refusals as `issue` (so a refusal is the same
    error), then what it would do; with nothing to do, the same audit `issue` ends with."""
    todo = runner.pending(the_spec, out, asked)
    runner.refuse(todo, out)
    work = [f"would make: {t.title}" for t in todo.work()]
    # Configs and copies follow from a new certificate; alone, they are a repair worth naming.
    work = work or [f"would write: {path}" for path in todo.other_writes()]
    work += [f"would move out of the folder: {path}" for path in todo.drop]
    for line in work:
        click.echo(line)
    if work:
        return ExitStatus.FINDINGS
    _audit_issued(out, todo, (), click.echo)
    runner.check_ca_keys(the_spec, out)
    click.echo(f"{out}: up to date")
    return ExitStatus.OK


@cli.command(name="init")
@click.argument("file", type=PathParam(path_type=Path, dir_okay=False), default="certs.toml")
@click.option(
    "--node",
    "nodes",
    multiple=True,
    metavar="NAME=HOST,HOST",
    help="A node and the names and addresses it is reached by (repeat for each node)"
    " [default: node1=localhost,127.0.0.1].",
)
@click.option(
    "--user",
    "users",
    multiple=True,
    help="A SQL user to make a client certificate for (repeat) [default: root].",
)
@click.option("--kubernetes", "release", default=None, help="The Helm release (or operator cluster) name.")
@click.option("--namespace", default="default", show_default=True, help="Its namespace (with --kubernetes).")
@click.option("--profile", type=click.Choice(spec.PROFILES), default="secure", show_default=True)
@click.option("--layout", type=click.Choice(spec.LAYOUTS), default="standard", show_default=True)
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
def init_command(
    file: Path,
    nodes: tuple[str, ...],
    users: tuple[str, ...],
    release: str | None,
    namespace: str,
    profile: str,
    layout: str,
    force: bool,
) -> int:
    """Write a commented spec to start from (FILE, default certs.toml), which `issue` accepts as it is.

    Every optional key is in it, commented out with its default. An existing FILE is kept unless --force.
    """
    from orchestrator import init

    if release is None and namespace != "default":
        raise UserError(f"--namespace: {namespace!r} needs --kubernetes RELEASE")
    kubernetes = (release, namespace) if release is not None else None
    text = init.spec_text([init.parse_node(n) for n in nodes], list(users), profile, layout, kubernetes)
    init.write(file, text, force)
    click.echo(f"{file}: written; next: crdb-certs issue --config {script.quote(file)} --out DIR")
    return ExitStatus.OK


@cli.command(name="plan")
@config_option
@out_option("Print only what `issue --out DIR` would still run there (default: the whole run).", default=None)
@profile_option
@key_type_option
def plan_command(config: Path | None, out: Path | None, profile: str | None, key_type: str | None) -> int:
    """Print the whole run as a bash script: the docs' commands, configs as here-documents. Writes nothing."""
    the_spec = load_spec(config, out, profile, key_type, check_files=False)
    if out is None:
        click.echo(script.script(plan.build(the_spec)), nl=False)
    else:
        text = script.script(runner.pending(the_spec, out), folder=out, empty=False)
        click.echo(text, nl=False)
    return ExitStatus.OK


@cli.command()
@config_option
@out_option("Folder to write the .cnf files into.", required=True)
@profile_option
def render(config: Path | None, out: Path, profile: str | None) -> int:
    """Write only the openssl .cnf files, for review (of the spec OUT records, if it has one)."""
    configs = plan.build(load_spec(config, out, profile, check_files=False)).configs()
    for rel, text in configs.items():
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        click.echo(target)
    return ExitStatus.OK


@cli.command()
@config_option
@out_option("Output folder: keys go where `issue` puts them, requests to <out>/requests/.")
@profile_option
def csr(config: Path | None, out: Path, profile: str | None) -> int:
    """Make keys and CSRs for a CA that crdb-certs may not touch; then `crdb-certs import`."""
    the_spec = load_spec(config, out, profile)
    _require_hand_off(out, "csr")
    result = runner.issue(
        the_spec,
        out,
        openssl.find,
        planner=lambda where: handoff.build_requests(the_spec, state.inspect(where, plan.build(the_spec))),
    )
    full = plan.build(the_spec)
    click.echo("Send these requests to your CA; put what it returns into one folder, named as shown:")
    for task in full.tasks:
        if task.expect is not None and task.signer is not None:
            request = handoff.request_of(task)
            click.echo(f"  {out / request}  ->  {Path(request).stem}.crt")
    for ca in cas.signers(the_spec).all:
        click.echo(f"  (the CA certificate to trust)  ->  {ca.name}.crt")
    click.echo(f"What each certificate must contain (SANs, usages, CA:FALSE): {out / names.REQUESTS_SHEET}")
    click.echo(
        "Then: crdb-certs import <that folder>"
        + (f" --config {script.quote(config)}" if config else "")
        + f" --out {script.quote(out)}"
    )
    if not result.changed:
        click.echo("(every key and request already existed: nothing was changed)")
    return ExitStatus.OK


@cli.command(name="import")
@click.argument("returned", type=PathParam(path_type=Path, file_okay=False, exists=True))
@config_option
@out_option("The folder `crdb-certs csr` wrote to.")
@profile_option
@click.option(
    "--reissue",
    is_flag=True,
    help="Replace certificates installed before with the returned ones (the old ones kept in backup/).",
)
def import_command(returned: Path, config: Path | None, out: Path, profile: str | None, reissue: bool) -> int:
    """Install the certificates your CA returned for `crdb-certs csr`, checked, into the certs directories."""
    the_spec = load_spec(config, out, profile)
    _require_hand_off(out, "import")
    found = imports.check_returned(plan.build(the_spec), returned.resolve(), out)
    todo = handoff.build_import(the_spec, found)
    if not reissue:
        _refuse_to_replace_installed(out, todo)
    result = runner.issue(the_spec, out, openssl.find, planner=lambda _: todo, backup=out / names.BACKUP_DIR)
    _audit_issued(out, result.plan, result.changed, click.echo)
    click.echo(
        f"installed {len(found)} certificates" if result.changed else f"{out}: up to date, nothing changed"
    )
    click.echo(next_steps(the_spec, out))
    return ExitStatus.OK


def _require_hand_off(out: Path, command: str) -> None:
    """`csr` and `import` are for a CA crdb-certs may not touch; a folder with a CA of its own (made
    here, or yours via [ca]) would be switched to another CA, its record rewritten."""
    held = record.read(out)
    if held is not None and held.provenance is not record.Provenance.SIGNED_ELSEWHERE:
        raise UserError(
            f"{command}: {script.quote(out)} is signed by {held.provenance.about()}; `crdb-certs csr` and"
            " `import` are for a CA crdb-certs may not touch: `crdb-certs issue` makes what is missing"
            " there (use a new --out folder for a hand-off)"
        )


def _refuse_to_replace_installed(out: Path, todo: Plan) -> None:
    """What an outside CA returned replaces an installed certificate only with --reissue (changes.py's
    rule for `issue`): a certificate of another CA in the returned folder would otherwise switch CAs."""
    found = []
    for task in todo.tasks:
        for step in task.steps:
            if not isinstance(step, Copy) or not Path(step.src).is_absolute():
                continue
            try:
                same = (out / step.dst).read_bytes() == Path(step.src).read_bytes()
            except FileNotFoundError:
                continue  # not installed yet
            if not same:
                who = "CA" if step.dst.endswith(tuple(f"/{ca}" for ca in names.CA_FILES)) else task.title
                found.append(
                    changes.Difference(
                        who,
                        f"{step.dst} is installed already, and the returned {Path(step.src).name} differs",
                        "re-run import with --reissue to replace it (kept in backup/)",
                    )
                )
    if found:
        raise changes.Refused(out, found)


show_plan_option = click.option(
    "--plan", "show_plan", is_flag=True, help="Print what would run, as a bash script; change nothing."
)


@cli.command()
@config_option
@out_option("The output folder `issue` made.")
@click.option(
    "--within",
    default=None,
    help="Renew every certificate that expires within this long: 12h, 30d, 2w [default: 30d].",
)
@click.option(
    "--nodes", default=None, help="Renew exactly these nodes' certificates (names, comma-separated)."
)
@click.option("--clients", default=None, help="Renew exactly these users' certificates (comma-separated).")
@click.option(
    "--ui", is_flag=True, help="Renew the DB Console certificate (ui.crt), with --nodes/--clients or alone."
)
@click.option("--keep-keys", is_flag=True, help="Sign a new request made from each existing key.")
@show_plan_option
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
def renew(
    config: Path | None,
    out: Path,
    within: str | None,
    nodes: str | None,
    clients: str | None,
    ui: bool,
    keep_keys: bool,
    show_plan: bool,
    quiet: bool,
) -> int:
    """Re-issue node and client certificates with the same CA (new keys unless --keep-keys).

    The files replaced are kept in OUT/backup/<UTC time>/ until you delete them.
    """
    the_spec = load_spec(config, out, ui_files=False)
    node_names, users = _csv(nodes), _csv(clients)
    if within is not None and (node_names or users or ui):
        raise UserError(
            "--within: not with --nodes/--clients/--ui, which renew exactly the certificates named"
        )
    window = duration.parse("--within", within) if within is not None else None

    def planner(where: Path) -> Plan:
        chosen = lifecycle.select(the_spec, where, node_names, users, window, ui=ui)
        return lifecycle.renew_plan(the_spec, where, chosen, keep_keys)

    todo = planner(out)  # every mistake is reported before anything is touched
    if show_plan:
        click.echo(lifecycle.script_for(todo, out, "crdb-certs renew"), nl=False)
        return ExitStatus.OK
    if not todo.work():
        shown = duration.show(window or lifecycle.DEFAULT_WINDOW)
        if not quiet:
            click.echo(f"{out}: nothing expires within {shown}; nothing renewed")
        return ExitStatus.OK
    result = runner.issue(the_spec, out, openssl.find, planner=planner, backup=out / names.BACKUP_DIR)
    return _report_lifecycle(the_spec, out, config, result, Stage.RENEW, quiet)


@cli.command(name="rotate-ca")
@config_option
@out_option("The output folder `issue` made.")
@click.option(
    "--finish", is_flag=True, help="Drop the old CA from the CA files, once every certificate is re-issued."
)
@show_plan_option
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
def rotate_ca(config: Path | None, out: Path, finish: bool, show_plan: bool, quiet: bool) -> int:
    """Replace the CA: a new CA key and certificate, every leaf re-issued from it.

    Each ca.crt (ca-client.crt, ca-ui.crt) holds the new CA first and the old one after it, so every node
    trusts leaves of both while the new files are rolled out; then `rotate-ca --finish` drops the old CA.
    Every replaced file is kept in OUT/backup/<UTC time>/, the old CA key in
    OUT/my-safe-directory/backup/<UTC time>/. Run again, it completes a rotation that was interrupted.
    """
    the_spec = load_spec(config, out, check_files=False)  # it never uses them: [ca] is refused

    def planner(where: Path) -> Plan:
        return lifecycle.finish_plan(the_spec, where) if finish else lifecycle.rotate_plan(the_spec, where)

    todo = planner(out)  # every refusal comes before anything is touched
    stage = Stage.FINISH if finish else Stage.ROTATE
    if show_plan:
        click.echo(lifecycle.script_for(todo, out, f"crdb-certs rotate-ca ({stage})"), nl=False)
        return ExitStatus.OK
    result = runner.issue(the_spec, out, openssl.find, planner=planner, backup=out / names.BACKUP_DIR)
    return _report_lifecycle(the_spec, out, config, result, stage, quiet)


def _report_lifecycle(
    the_spec: spec.Spec, out: Path, config: Path | None, result: runner.Result, stage: Stage, quiet: bool
) -> int:
    say = _say(quiet)
    _audit_issued(out, result.plan, result.changed, say)
    if stage == Stage.FINISH:
        for ca in cas.signers(the_spec).all:
            say(f"{out / ca.cert}: the new CA only; the old CA is no longer trusted")
    elif stage == Stage.ROTATE:
        for ca in cas.signers(the_spec).all:
            say(f"{out / ca.cert}: the new CA, then the old one (both trusted)")
    for task in result.plan.work():
        if task.signer is not None:
            say(f"{'renewed' if stage == Stage.RENEW else 're-issued'} {task.title}")
    if result.backup:
        say(f"the files replaced: kept in {result.backup} (delete it when you no longer need it)")
    if stage == Stage.ROTATE:
        for ca in cas.signers(the_spec).all:
            # Found, not assumed: a re-run that completes a killed rotation kept it in an earlier run.
            kept = backups.find_key(out, ca.key, out / ca.cert, which=1)
            where = f"kept in {kept}" if kept else f"not found in {out / backups.SAFE_BACKUP}"
            say(f"the key of the old CA in {ca.cert}: {where} (beside the CA keys, never on a node)")
    nodes, users = lifecycle.touched(the_spec, result.plan)
    if stage != Stage.RENEW:
        nodes, users = [n.name for n in the_spec.nodes], [] if stage == Stage.FINISH else users
    say(lifecycle.rollout(the_spec, out, config, stage, nodes, users))
    return ExitStatus.OK


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else ()


@cli.command()
@config_option
@out_option("The output folder `issue` made.")
@click.option("--nodes", default=None, help="Revoke these nodes' certificates (names, comma-separated).")
@click.option("--clients", default=None, help="Revoke these users' certificates (comma-separated).")
@click.option("--ui", is_flag=True, help="Revoke the DB Console certificate (ui.crt).")
@click.option(
    "--serial",
    "serials",
    multiple=True,
    metavar="HEX",
    help="Revoke the certificate with this serial number (as index.txt shows it); repeatable.",
)
@click.option(
    "--reason",
    type=click.Choice(revocation.REASONS),
    default="unspecified",
    show_default=True,
    help="The reason the CRL and OCSP give.",
)
@click.option(
    "--crl-days",
    type=click.IntRange(1, 3660),
    default=revocation.CRL_DAYS,
    show_default=True,
    help="Days until the new CRL's nextUpdate.",
)
@show_plan_option
def revoke(
    config: Path | None,
    out: Path,
    nodes: str | None,
    clients: str | None,
    ui: bool,
    serials: tuple[str, ...],
    reason: str,
    crl_days: int,
    show_plan: bool,
) -> int:
    """Revoke certificates: `openssl ca -revoke` in their CA's database, the CRL made again.

    Every copy of a revoked certificate, and its key, leaves the certs directories (kept in
    OUT/backup/<UTC time>/); a later `issue` makes that node or user a new key and certificate.
    """
    the_spec = load_spec(config, out, ui_files=False)
    node_names, users = _csv(nodes), _csv(clients)

    def planner(where: Path) -> Plan:
        chosen = revocation.targets(the_spec, where, node_names, users, ui, serials)
        return revocation.revoke_plan(the_spec, where, chosen, reason, crl_days)

    todo = planner(out)  # every mistake is reported before anything is touched
    if show_plan:
        click.echo(revocation.script_for(todo, out), nl=False)
        return ExitStatus.OK
    chosen = revocation.targets(the_spec, out, node_names, users, ui, serials)
    result = runner.issue(the_spec, out, openssl.find, planner=planner, backup=out / names.BACKUP_DIR)
    for target in chosen:
        click.echo(f"revoked {target.shown} in {target.ca.database} ({reason})")
    for path in result.plan.drop:
        click.echo(f"moved {path} out of the certs directories")
    if result.backup:
        click.echo(f"the files taken out: kept in {result.backup}")
    crls = [t.title.removeprefix("CRL ") for t in result.plan.tasks if t.id.startswith("crl:")]
    for crl in crls:
        click.echo(f"made {out / crl}")
    for ca in {t.ca.name: t.ca for t in chosen}.values():
        if not revocation.can_sign_crls(out, ca):
            click.echo(f"no CRL: {revocation.no_crl_sign(out, ca)}")
    click.echo(revocation.after_revoke(the_spec, out, config, chosen, crls))
    return ExitStatus.OK


@cli.command()
@config_option
@out_option("The output folder `issue` made.")
@click.option(
    "--days",
    type=click.IntRange(1, 3660),
    default=revocation.CRL_DAYS,
    show_default=True,
    help="Days until the CRL's nextUpdate: make a new one before then (cron), or peers refuse everyone.",
)
def crl(config: Path | None, out: Path, days: int) -> int:
    """Make the CRL of every CA of the folder (OUT/crl/ca.crl, and ca-client.crl in split-ca)."""
    the_spec = load_spec(config, out, ui_files=False)
    todo = revocation.crl_plan(the_spec, out, days)  # refusals before anything is touched
    runner.issue(
        the_spec, out, openssl.find, planner=lambda where: revocation.crl_plan(the_spec, where, days)
    )
    for task in todo.tasks:
        click.echo(f"made {out / task.title.removeprefix('CRL ')} (next update in {days} days)")
    return ExitStatus.OK


@cli.group(name="ocsp", invoke_without_command=True, subcommand_metavar="COMMAND [ARGS]...")
@click.pass_context
def ocsp_group(ctx: click.Context) -> None:
    """The OCSP responder CockroachDB asks (security.ocsp.mode), and its preflight."""
    _help_without_command(ctx)


@ocsp_group.command(name="serve")
@config_option
@out_option("The output folder `issue` made (its CA databases are what is answered).")
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on, and only it.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8888, show_default=True, help="0: any free port."
)
def ocsp_serve(config: Path | None, out: Path, host: str, port: int) -> int:
    """Answer OCSP requests for every CA of the folder, until SIGTERM or Ctrl-C.

    Each answer is `openssl ocsp -index` on the CA database as it is at that moment (a revocation counts at
    once), signed by a responder certificate the CA delegates to (OUT/ocsp/, made on first use and
    renewed a week before it ends; that needs the CA key once): the CA key is never read while serving.
    """
    from orchestrator import ocsp

    the_spec = load_spec(config, out, ui_files=False)
    authorities = cas.signers(the_spec).all
    todo = revocation.responder_plan(the_spec, out)
    if todo.tasks:
        runner.issue(
            the_spec, out, openssl.find, planner=lambda where: revocation.responder_plan(the_spec, where)
        )
        for task in todo.tasks:
            click.echo(f"made {task.title}: {out / names.responder_cert(task.id.split(':', 1)[1])}")
    responder = ocsp.Responder(openssl.find(), ocsp.authorities(out, authorities))
    ocsp.serve(responder, host, port)
    return ExitStatus.OK


@ocsp_group.command(name="check")
@out_option("The output folder whose certificates are asked about (certs/ and nodes/*/).")
@click.option("--url", default=None, help="Ask this responder instead of the URL in each certificate.")
@click.option(
    "--timeout", type=click.IntRange(1, 60), default=5, show_default=True, help="Seconds per request."
)
def ocsp_check(out: Path, url: str | None, timeout: int) -> int:
    """Ask the OCSP responder about every leaf of the folder; exit 0 only if every answer is good, signed
    by a responder its CA vouches for, and fresh: then `security.ocsp.mode = strict` is safe to set."""
    from orchestrator import ocsp, validate

    if url is not None:
        url = validate.ocsp_url("--url", url)
    if not out.is_dir():
        raise UserError(f"--out: {out} is not a directory")
    problems, count = ocsp.check(out, openssl.find(), url, timeout)
    for line in problems:
        click.echo(line)
    if problems:
        return ExitStatus.FINDINGS
    click.echo(f"{count} certificates: each good, signed by a responder its CA vouches for, and fresh.")
    click.echo("Then, as root in `cockroach sql`:")
    click.echo("  SET CLUSTER SETTING security.ocsp.mode = strict;")
    return ExitStatus.OK


@cli.command(name="check")
@click.argument("target", type=PathParam(path_type=Path, exists=True, file_okay=False))
@click.option(
    "--within", default="30d", show_default=True, help="The window: 12h, 30d, 2w (hours, days, weeks)."
)
@click.option(
    "--format",
    "output",
    type=click.Choice(["text", "json", "prometheus"]),
    default="text",
    show_default=True,
    help="json: every certificate (orchestrator/check.schema.json); prometheus: one gauge sample per"
    " certificate, for node_exporter's textfile collector (`export alert-rules` alerts on them).",
)
def check_command(target: Path, within: str, output: str) -> int:
    """Exit 1 if a certificate in TARGET expires within the window (each listed), 0 if none does.

    TARGET is a certs directory, or an output folder (its certs/ and every nodes/<name>/ are checked).
    For cron and CI: exit 2 on a usage error. With --format json or prometheus every certificate is
    written, and the exit status is the same.
    """
    window = duration.parse("--within", within)
    now = datetime.now(UTC)
    with phases.phase("check"):
        found, seen = lifecycle.expiring(target, window, now)
        interrupted = lifecycle.interrupted_rotations(target)
    status = ExitStatus.FINDINGS if found or interrupted else ExitStatus.OK
    if output != "text":
        from orchestrator import monitoring

        every = lifecycle.inventory(target)
        if output == "json":
            report = monitoring.as_json(target, every, interrupted, now, window)
            click.echo(json.dumps(report, indent=2, ensure_ascii=False))
        else:
            click.echo(monitoring.prometheus(every, interrupted, now), nl=False)
        return status
    for line in interrupted:
        click.echo(line)
    for expiry in found:
        click.echo(expiry.line(now))
    if status == ExitStatus.OK:
        click.echo(f"{target}: none of {seen} certificates expires within {duration.show(window)}")
    return status


def from_option(help: str = "The output folder `issue` made.") -> Callable[[F], F]:
    """`--from DIR`: the output folder an export reads, the current one unless said otherwise."""
    return click.option(
        "--from",
        "source",
        type=PathParam(path_type=Path, file_okay=False),
        default=".",
        show_default=True,
        help=help,
    )


@cli.group(name="export", invoke_without_command=True, subcommand_metavar="COMMAND [ARGS]...")
@click.pass_context
def export_group(ctx: click.Context) -> None:
    """Write the certificates in a form another system reads."""
    _help_without_command(ctx)


@export_group.command(name="k8s")
@click.option(
    "--out",
    type=PathParam(path_type=Path, dir_okay=False),
    required=True,
    help="The YAML file to write (0600: it holds the private keys).",
)
@click.option(
    "--namespace",
    default=None,
    help="The namespace of every resource [default: the spec's [kubernetes] namespace, else none given].",
)
@config_option
@from_option()
@click.option(
    "--name-prefix",
    default=None,
    help="Secret names start with it [default: cockroachdb, the Helm chart's; --for operator: the"
    " [kubernetes] release].",
)
@click.option(
    "--for",
    "target",
    type=click.Choice(["helm", "operator", "cert-manager"]),
    default="helm",
    show_default=True,
    help="Who reads them: the Helm chart (provided Secrets), the CockroachDB operator, or cert-manager"
    " (an Issuer over this CA and the chart's Certificates).",
)
@click.option(
    "--include-ca-key",
    is_flag=True,
    help="--for cert-manager: put the CA key into the Issuer's Secret (it leaves this machine).",
)
def export_k8s(
    out: Path,
    namespace: str | None,
    config: Path | None,
    source: Path,
    name_prefix: str | None,
    target: str,
    include_ca_key: bool,
) -> int:
    """Kubernetes manifests: Secrets (kubernetes.io/tls: ca.crt, tls.crt, tls.key) per node and per user
    for the Helm chart or the operator, or a cert-manager Issuer and Certificates."""
    # Secrets are read from the folder; only cert-manager's Issuer takes the CA key, from [ca] if named.
    the_spec = load_spec(config, source, check_files=False)
    if target == "cert-manager":
        imports.check_files(the_spec, ui=False)
    from orchestrator import k8s

    done = k8s.export(the_spec, source, target, name_prefix, namespace, include_ca_key)
    k8s.write_private(out, k8s.manifest(done, source))
    if done.holds_ca_key:
        _err(
            f"WARNING: {out} holds the CA's private key, which now leaves this machine: whoever reads that"
            " file, or the Issuer's Secret in the cluster, can issue certificates for every node and user."
        )
    for line in done.made:
        click.echo(f"{out}: {line}")
    for line in done.handover:
        click.echo(line)
    shown = script.quote(out)
    click.echo(f"Then: kubectl apply -f {shown}, and delete {shown}: it holds private keys.")
    return ExitStatus.OK


@export_group.command(name="alert-rules")
@click.option(
    "--out",
    type=PathParam(path_type=Path, dir_okay=False),
    required=True,
    help="The rules file to write (YAML), for Prometheus' rule_files.",
)
def export_alert_rules(out: Path) -> int:
    """Prometheus alerting rules over `check --format prometheus`, with CockroachDB's own thresholds.

    A CA (or client or UI CA) under 366 days left, a node certificate under 183, the DB Console's under 20,
    a client certificate under 30; any certificate expired; samples not refreshed for 2 days; errors.
    """
    from orchestrator import monitoring

    out.write_text(monitoring.alert_rules(), encoding="utf-8")  # an OSError: one line naming --out
    click.echo(f"{out}: Prometheus alerting rules (test them: promtool check rules {script.quote(out)})")
    return ExitStatus.OK


@export_group.command(name="ansible")
@click.option(
    "--out",
    type=PathParam(path_type=Path, file_okay=False),
    required=True,
    help="The folder to write inventory.yml and deploy.yml into.",
)
@config_option
@from_option()
def export_ansible(out: Path, config: Path | None, source: Path) -> int:
    """An Ansible inventory and playbook that deliver each node's certs directory (nodes/<name>/) to its
    certs_dir over SSH, one node at a time: uploaded beside it, put in place in one rename, then the
    spec's [deploy] reload command. Idempotent: a node that holds the folder already is not touched.

    Each node needs `ssh = "user@host[:port]"` in the spec; `certs_dir` defaults to
    /var/lib/cockroach/certs. Run it with ansible-playbook, or `crdb-certs deploy` (which also probes).
    """
    from orchestrator import ansible

    the_spec = load_spec(config, source, check_files=False)
    inventory, book = ansible.write(the_spec, source, out)
    click.echo(f"{inventory}: {len(ansible.reach(the_spec))} node(s)")
    click.echo(f"{book}: run it: ansible-playbook -i {script.quote(inventory)} {script.quote(book)}")
    return ExitStatus.OK


@export_group.command(name="systemd")
@click.option(
    "--out",
    type=PathParam(path_type=Path, file_okay=False),
    required=True,
    help="The folder to write the .service and .timer into (e.g. /etc/systemd/system).",
)
@config_option
@from_option("The output folder `issue` made (autopilot's --out).")
@click.option(
    "--metrics",
    "metrics_file",
    type=PathParam(path_type=Path, dir_okay=False),
    default=None,
    help="autopilot's --metrics: a *.prom file in node_exporter's textfile directory.",
)
def export_systemd(out: Path, config: Path | None, source: Path, metrics_file: Path | None) -> int:
    """crdb-certs-autopilot.service (a oneshot running `crdb-certs autopilot`) and
    crdb-certs-autopilot.timer (daily, at a random moment within the hour, caught up after downtime).
    Enable it with `systemctl enable --now crdb-certs-autopilot.timer`.
    """
    from orchestrator import autopilot

    load_spec(config, source, check_files=False)  # a folder autopilot could not run on is refused now
    out.mkdir(parents=True, exist_ok=True)
    for name, text in autopilot.units(source, config, metrics_file).items():
        (out / name).write_text(text, encoding="utf-8")
        click.echo(f"{out / name}")
    click.echo(f"then: systemctl enable --now {autopilot.TIMER}")
    return ExitStatus.OK


@cli.command(name="deploy")
@config_option
@out_option("The output folder `issue` made.")
@click.option("--nodes", default=None, help="Deploy to exactly these nodes (names, comma-separated).")
@click.option(
    "--parallel",
    type=click.IntRange(1, 1000),
    default=1,
    show_default=True,
    help="Nodes delivered at once; each batch is probed before the next one starts.",
)
@click.option(
    "--check", is_flag=True, help="Ansible's check mode with a diff: what would change; nothing does."
)
def deploy_command(config: Path | None, out: Path, nodes: str | None, parallel: int, check: bool) -> int:
    """Deliver each node's certs directory (nodes/<name>/) to its certs_dir over SSH with Ansible, run the
    spec's [deploy] reload command there, and check with `probe` that the node serves the certificate
    this folder issued, one node at a time (--parallel N: N at a time).

    Stops at the first node that fails (exit 1, naming it and the reason); the nodes after it are not
    touched. The playbook is written to OUT/ansible/ (as `export ansible`). Ansible's own settings apply:
    ANSIBLE_PRIVATE_KEY_FILE, ANSIBLE_HOST_KEY_CHECKING, your ssh config, ansible.cfg.
    """
    import time

    from orchestrator import deploy

    the_spec = load_spec(config, out, check_files=False)
    started = time.monotonic()
    done = deploy.run(the_spec, out, _csv(nodes), parallel, check, click.echo)
    changed = sum(1 for d in done if d.changed)
    took = time.monotonic() - started
    if check:
        click.echo(f"check: {changed} of {len(done)} node(s) would change ({took:.1f}s); nothing was touched")
    else:
        click.echo(
            f"deployed: {changed} of {len(done)} node(s) changed, all serve their certificate ({took:.1f}s)"
        )
    return ExitStatus.OK


@cli.command(name="autopilot")
@config_option
@out_option("The output folder `issue` made.")
@click.option(
    "--within", default="30d", show_default=True, help="Renew what expires within this long: 12h, 30d, 2w."
)
@click.option(
    "--metrics",
    "metrics_file",
    type=PathParam(path_type=Path, dir_okay=False),
    default=None,
    help="Write the outcome here as Prometheus textfile metrics (a *.prom file node_exporter reads).",
)
def autopilot_command(config: Path | None, out: Path, within: str, metrics_file: Path | None) -> int:
    """Renew the node and client certificates that expire within the window (as `renew --within`), then
    deploy the nodes whose files changed, one at a time, each probed (as `deploy`). For a timer:
    `crdb-certs export systemd` writes one.

    A CA inside the window is never rotated unattended: exit 1 and the steps to rotate it. A node that
    fails stops the roll (exit 1, naming it). The replaced files are kept in OUT/backup/<UTC time>/.
    """
    from orchestrator import ansible, autopilot, deploy

    now = datetime.now(UTC)
    window = duration.parse("--within", within)
    if metrics_file is not None and not metrics_file.parent.is_dir():
        # Found now, not after renewing: a run whose outcome cannot be written changes nothing.
        raise SpecError("--metrics", str(metrics_file), "is in a folder that does not exist")
    renewed = 0

    def report(failed: bool) -> None:
        if metrics_file is not None:
            success = autopilot.previous_success(metrics_file) if failed else now.timestamp()
            autopilot.write_metrics(metrics_file, autopilot.metrics(now, success, renewed, failed))

    try:
        the_spec = load_spec(config, out, ui_files=False)
        reachable = {r.node.name for r in ansible.reach(the_spec)}  # refused before anything changes
        inside = autopilot.cas_inside(the_spec, out, window, now)
        if inside:
            click.echo(autopilot.rotation_steps(out, config, inside))
            report(failed=True)
            return ExitStatus.FINDINGS

        def planner(where: Path) -> Plan:
            chosen = lifecycle.select(the_spec, where, within=window, now=now)
            return lifecycle.renew_plan(the_spec, where, chosen)

        changed: list[str] = []
        if not planner(out).work():
            click.echo(f"{out}: nothing expires within {duration.show(window)}; nothing renewed")
        else:
            result = runner.issue(the_spec, out, openssl.find, planner=planner, backup=out / names.BACKUP_DIR)
            renewed = sum(1 for task in result.plan.work() if task.signer is not None)
            click.echo(f"renewed {renewed} certificate(s); the files replaced: kept in {result.backup}")
            changed, users = lifecycle.touched(the_spec, result.plan)
            for user in users:
                click.echo(f"give {user}'s clients their new {names.CERTS_DIR}/{names.client_cert(user)}")
        behind = [name for name in autopilot.stale(the_spec, out) if name not in changed]
        if behind:
            click.echo(f"still serving an older certificate: {', '.join(behind)}")
        changed += behind
        elsewhere = [name for name in changed if name not in reachable]
        if elsewhere:
            click.echo(f"not deployed: {', '.join(elsewhere)} (Kubernetes: `crdb-certs export k8s`)")
        to_deploy = tuple(name for name in changed if name in reachable)
        if to_deploy:
            deploy.run(the_spec, out, to_deploy, 1, False, click.echo)
    except (UserError, Interrupted):
        report(failed=True)
        raise
    report(failed=False)
    return ExitStatus.OK


certs_dir_argument = click.argument("certs_dir", type=PathParam(path_type=Path, file_okay=False))


@cli.command(name="audit")
@certs_dir_argument
@click.option(
    "--format",
    "output",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one object, described by orchestrator/audit.schema.json.",
)
@click.option(
    "--cert-principal-map",
    default=None,
    help="The same <cert-principal>:<db-principal>,… mapping the nodes are started with.",
)
@click.option(
    "--crl",
    type=PathParam(path_type=Path, dir_okay=False),
    default=None,
    help="A CRL to check the certificates against [default: the output folder's crl/*.crl].",
)
def audit_command(certs_dir: Path, output: str, cert_principal_map: str | None, crl: Path | None) -> int:
    """Check CERTS_DIR against CockroachDB's own rules: names, keys, chains, content.

    Works on any certs directory (crdb-certs, `cockroach cert`, the docs' openssl recipe, by hand).
    Exit 0 with no errors, 1 with errors, 2 for a usage error.
    """
    with phases.phase("audit"):
        report = audit.audit(certs_dir, principal_map=audit.parse_principal_map(cert_principal_map), crl=crl)
    if output == "json":
        click.echo(json.dumps(report.as_json(), indent=2, ensure_ascii=False))
    else:
        click.echo(report.text())
    return report.status


@cli.command(name="probe")
@click.argument("hosts", nargs=-1, required=True, metavar="HOST[:PORT]...")
@config_option
@click.option(
    "--out",
    type=PathParam(path_type=Path, file_okay=False),
    default=None,
    help="Judge against this output folder: certs/ca.crt, and what nodes/<name>/ holds for each node.",
)
@click.option(
    "--certs-dir",
    type=PathParam(path_type=Path, file_okay=False),
    default=None,
    help="Judge against this certs directory instead: its ca.crt and node.crt.",
)
@click.option("--user", default=None, help="Also log in as this user with client.<user>.crt (SQL port).")
@click.option("--database", default="defaultdb", show_default=True, help="The database --user asks for.")
@click.option("--http", is_flag=True, help="The DB Console port (plain TLS, default port 8080).")
@click.option(
    "--format",
    "output",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one object, described by orchestrator/probe.schema.json.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 300),
    default=5.0,
    show_default=True,
    help="Seconds for each connection, from connect to the last answer.",
)
@click.option(
    "--within", default="30d", show_default=True, help="expires-soon: a certificate expiring within this."
)
@click.option(
    "--cert-principal-map",
    default=None,
    help="The same <cert-principal>:<db-principal>,… mapping the nodes are started with.",
)
def probe_command(
    hosts: tuple[str, ...],
    config: Path | None,
    out: Path | None,
    certs_dir: Path | None,
    user: str | None,
    database: str,
    http: bool,
    output: str,
    timeout: float,
    within: str,
    cert_principal_map: str | None,
) -> int:
    """What each running node serves, judged: chain, host name, dates, whether it is the certificate the
    folder issued (a node that never reloaded serves an older one), and the principal it carries.

    HOST[:PORT] (default port 26257, or 8080 with --http; IPv6 as [::1]:26257); many hosts are probed at
    once. Exit 0 when all holds; 1 with one line per problem (untrusted, hostname, expired, expires-soon,
    stale, client-refused); 2 for a usage error or a host that could not be reached (refused, timeout,
    not TLS).
    """
    from orchestrator import probe, validate

    if out is not None and certs_dir is not None:
        raise UserError("--certs-dir: not with --out (one folder to compare with)")
    if user is not None and http:
        raise UserError("--user: not with --http (the DB Console does not speak the SQL protocol)")
    port = probe.HTTP_PORT if http else probe.SQL_PORT
    targets = [probe.parse_target(h, port) for h in hosts]
    folder = probe.Folder()
    if out is not None:
        the_spec = load_spec(config, out, check_files=False)
        folder = probe.from_output(the_spec, out, http)
    elif certs_dir is not None:
        if not certs_dir.is_dir():
            raise UserError(f"--certs-dir: {certs_dir} is not a directory")
        folder = probe.from_certs_dir(certs_dir, http)
    options = probe.Options(
        http=http,
        timeout=timeout,
        within=duration.parse("--within", within),
        principal_map=audit.parse_principal_map(cert_principal_map),
    )
    if user is not None:
        name = validate.user("--user", user)
        options = replace(options, user=name, database=database, client=probe.client_context(folder, name))
    found = probe.probe_all(targets, folder, options)
    if output == "json":
        click.echo(json.dumps(probe.as_json(found), indent=2, ensure_ascii=False))
    else:
        click.echo(probe.text(found))
    return probe.status(found)


@cli.command(name="list")
@certs_dir_argument
@click.option(
    "--format",
    "output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table: as `cockroach cert list`, plus days left and status (valid, revoked, expired).",
)
@click.option(
    "--crl",
    type=PathParam(path_type=Path, dir_okay=False),
    default=None,
    help="A CRL to check the certificates against [default: the output folder's crl/*.crl].",
)
def list_command(certs_dir: Path, output: str, crl: Path | None) -> int:
    """The `cockroach cert list` table for CERTS_DIR, plus the days each certificate has left."""
    from orchestrator import certlist

    found = certlist.listing(certs_dir, crl=crl)
    if output == "json":
        click.echo(json.dumps(found.as_json(), indent=2, ensure_ascii=False))
    elif not sys.stdout.isatty():  # a pipe or a file: plain columns, not padded to a terminal's width
        click.echo(found.plain())
    else:
        from rich.console import Console

        Console(highlight=False).print(found.table())
    if found.fatal:
        _err(f"error: {found.fatal}")
        return ExitStatus.FINDINGS
    return ExitStatus.OK


@cli.command(name="diff")
@config_option
@profile_option
@click.option(
    "--against",
    type=click.Choice(spec.PROFILES),
    default="docs",
    show_default=True,
    help="The profile to compare with.",
)
def diff_command(config: Path | None, profile: str | None, against: str) -> int:
    """Show how two profiles' openssl configs differ for the same spec (unified diff).

    Default: the spec's profile (secure unless it says otherwise) against the docs' exact configs.
    """
    import difflib

    mine = spec.load(config, profile)
    theirs = spec.load(config, against)
    new, old = plan.build(mine).configs(), plan.build(theirs).configs()
    shown = False
    for rel in sorted(set(new) | set(old)):
        lines = difflib.unified_diff(
            old.get(rel, "").splitlines(keepends=True),
            new.get(rel, "").splitlines(keepends=True),
            fromfile=f"{against}/{rel}",
            tofile=f"{mine.profile}/{rel}",
        )
        text = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
        if text:
            click.echo(text, nl=False)
            shown = True
    if not shown:
        click.echo(f"{mine.profile} and {against}: the same configs")
    return ExitStatus.FINDINGS if shown else ExitStatus.OK  # as diff(1): 1 when they differ


def _audit_issued(out: Path, todo: Plan, changed: tuple[str, ...], say: Say) -> bool:
    """Audit every certs directory the run wrote (when it wrote nothing, every one the last clean run's
    audit did not see as it is now: a no-op run is then a health check); any error fails the run.
    Adding one node to 200 thus audits two folders, not 201. True when every one is audited clean now
    or was then (Plan.still_clean)."""
    found = (bundles.folder_of(path, todo.bundles) for path in changed)  # by parent folder: issue 16
    written = {folder for folder in found if folder is not None}
    still_clean = set() if changed else set(todo.still_clean)
    audited = written or set(todo.bundles) - still_clean
    failed, clean = [], audited | still_clean >= set(todo.bundles)
    for folder in sorted(audited):  # findings in the same order every run
        report = audit.audit(out / folder)
        if report.errors:
            _err(report.text(("error",)))
            failed.append(f"{folder} ({len(report.errors)} error{'s' if len(report.errors) > 1 else ''})")
        elif report.count("warning"):
            say(report.text(("warning",)))
        clean = clean and not report.errors and not report.count("warning")
    if failed:
        raise audit.AuditFailed(
            f"audit: CockroachDB would refuse {', '.join(failed)} in {out}: see the findings above"
            " (`crdb-certs audit <dir>` repeats them)"
        )
    return clean


def main(argv: list[str] | None = None) -> int:
    try:
        status = cli.main(args=argv, prog_name="crdb-certs", standalone_mode=False)
    except click.ClickException as e:
        # One line, like every other user mistake; `--help` has the rest.
        _err(f"error: {e.format_message()}")
        return ExitStatus.USAGE
    except click.exceptions.Abort:
        _err("aborted")
        return ExitStatus.FAILED
    except UserError as e:
        _err(f"error: {e}")
        return e.status
    except Interrupted as e:
        _err("interrupted")
        return e.status
    finally:
        openssl.choose(None)  # a choice made by one command line is not the next one's (tests run many)
        phases.write()
    return int(status or 0)
