"""The plan's vocabulary: the steps that the runner executes and the script prints, the task that groups
the steps making one artefact, and the plan that orders the tasks. Paths are relative to the output folder.
Each is a frozen dataclass with __slots__: about ten a node, held for the whole run, without a __dict__
each (~0.4 KB a node less: issue 16, peak memory).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum

from orchestrator import names
from orchestrator.certcheck import Expect
from orchestrator.spec import Spec


class Kind(Enum):
    """What an openssl command makes: the runner schedules by it, nothing reads the argv to find out."""

    KEY = "key"  # genrsa / genpkey: depends on nothing but mkdir, so keys are made in parallel
    REQUEST = "request"  # req -new: a CSR from a key (made in the same chain as its key)
    KEY_AND_REQUEST = "key and request"  # req -new -newkey: both in one command, in parallel like a key
    SELF_SIGN = "self-sign"  # req -x509: a CA certificate
    SIGN = "sign"  # ca: a certificate signed with a CA's key, one at a time (the CA database)
    CONVERT = "convert"  # pkcs8, x509: another form of a file that exists
    REVOKE = "revoke"  # ca -revoke, ca -gencrl: the CA database and its CRL, in order like a signature


@dataclass(frozen=True, slots=True)
class Run:
    """An openssl command, argv as the docs write it."""

    argv: tuple[str, ...]
    kind: Kind
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()

    @property
    def keygen(self) -> bool:
        return self.kind in (Kind.KEY, Kind.KEY_AND_REQUEST)


@dataclass(frozen=True, slots=True)
class MakeDirs:
    paths: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Write:
    """A file with known content: a config (here-document), `touch index.txt`, `echo '01' > serial.txt`."""

    path: str
    text: str


@dataclass(frozen=True, slots=True)
class Chmod:
    mode: int
    path: str


@dataclass(frozen=True, slots=True)
class Remove:
    patterns: tuple[str, ...]  # `rm -f`; a pattern may hold a `*`


@dataclass(frozen=True, slots=True)
class Copy:
    """`cp -p`; with a mode (keys), the copy is made private first and then given that mode."""

    src: str  # relative to the output folder, or absolute for a file given in the spec (an import)
    dst: str
    mode: int | None = None


@dataclass(frozen=True, slots=True)
class Append:
    """`cat src >> dst`: how a CA file becomes a rotation bundle (the new CA first, the old one after it)."""

    src: str
    dst: str


@dataclass(frozen=True, slots=True)
class Verify:
    """Read the certificate back and compare it with what was asked for."""

    expect: Expect


@dataclass(frozen=True, slots=True)
class RandomSerial:
    """128 random bits (hex) into a CA's serial file before a signature, as `cockroach cert` draws them:
    no serial is ever issued twice. The script prints `openssl rand -out F -hex 16`; the runner draws
    the same from Python's CSPRNG, saving a process per certificate."""

    path: str


Step = Run | MakeDirs | Write | Chmod | Remove | Copy | Append | Verify | RandomSerial


def reads(step: Step) -> tuple[str, ...]:
    """The files a step reads (relative to the output folder, or absolute for a file named in the spec)."""
    match step:
        case Run(reads=paths):
            return paths
        case Copy(src=src):
            return (src,)
        case Append(src=src, dst=dst):
            return (src, dst)
        case Verify(expect=e):
            return tuple(p for p in (e.cert, e.key, e.issuer) if p)
    return ()


def writes(step: Step) -> tuple[str, ...]:
    match step:
        case Run(writes=paths):
            return paths
        case Write(path=path) | Copy(dst=path) | Append(dst=path) | RandomSerial(path=path):
            return (path,)
    return ()


def is_config(step: Step) -> bool:
    """A file rendered from the spec alone (an openssl config, the folder's record): written first, and
    only where it differs."""
    return isinstance(step, Write) and (step.path.endswith(".cnf") or step.path == names.RECORD)


@dataclass(frozen=True, slots=True)
class Task:
    """The steps that make one artefact; the unit that is skipped when the artefact is up to date."""

    id: str
    title: str
    steps: tuple[Step, ...]
    expect: Expect | None = None  # the certificate it makes; fresh when that is present and right
    signer: str | None = None  # the id of the CA task whose key signs it (or whose database this is)
    creates: tuple[str, ...] = ()  # without expect: needed when one of these files is missing
    # A CA database whose loss a reset cannot repair: with counted serials (docs profiles) a reset would
    # number the next certificate 01 again under the same CA, reusing an issuer+serial pair.
    irreplaceable: bool = False


@dataclass(frozen=True, slots=True)
class Plan:
    spec: Spec
    tasks: tuple[Task, ...]
    # Each certs directory to hand out: folder -> files it must hold.
    bundles: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Files and folders the run takes away (after keeping them in the backup): a node's files in certs/
    # once certs/ is no longer that node's folder, and what `issue --prune` removes.
    drop: tuple[str, ...] = ()
    # Every certificate task of the spec (fresh ones included) -> the digest of what it expects
    # (stamp.expect_digest): what a clean run's stamp vouches for, so the next run need not check again.
    expects: dict[str, str] = field(default_factory=dict)
    # Each node's task -> the digest of what it is made from and the files that are it (runner.pending): what
    # a stamp holds to vouch for the task whole next time.
    inputs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # The settings of the record the plan leaves (record.Settings.held): what the stamp holds of it.
    recorded: list[str | None] | None = None
    # For a plan that writes nothing: the certs directories the last clean run's audit found clean and
    # that are as they were then (stamp.Vouch.still_clean). Its run need not audit them again.
    still_clean: frozenset[str] = frozenset()

    @property
    def steps(self) -> Iterator[Step]:
        for task in self.tasks:
            yield from task.steps

    def configs(self) -> dict[str, str]:
        return {s.path: s.text for s in self.steps if isinstance(s, Write) and s.path.endswith(".cnf")}

    def expectations(self) -> list[Expect]:
        return [t.expect for t in self.tasks if t.expect is not None]

    def leaves(self) -> list[Task]:
        """The certificates crdb-certs signs (node, client, client.node, UI): not the CAs."""
        return [t for t in self.tasks if t.expect is not None and t.signer is not None]

    def work(self) -> list[Task]:
        """The tasks that make a certificate (not only render its config)."""
        return [t for t in self.tasks if t.expect is not None and not all(is_config(s) for s in t.steps)]

    def other_writes(self) -> list[str]:
        """The files the plan writes outside `work()`: configs that differ from the spec, copies into the
        certs directories, CA databases (what `issue --check` reports besides certificates)."""
        making = {t.id for t in self.work()}
        found = (p for t in self.tasks if t.id not in making for s in t.steps for p in writes(s))
        return list(dict.fromkeys(found))
