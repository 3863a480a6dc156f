"""The previous release for `expc check --against REF`: a git revision, a directory of
definitions, or a released bundle file.

A git revision is read with plumbing only: `git ls-tree` lists the definition files
at that revision and one `git cat-file --batch` process returns all of them; nothing
is checked out or cloned.
"""

from __future__ import annotations

import posixpath
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from expc import codes
from expc.diagnostics import Diagnostic, Span, make
from expc.errors import UsageError
from expc.outputs.bundle_types import Bundle
from expc.outputs.layout import LEDGER, Layout, in_repository
from expc.outputs.ledger import Ledger, LedgerError, LedgerFile, parse, read_text
from expc.outputs.release import compiled
from expc.pipeline.snapshot import Rejected, Snapshot, read, read_blobs
from expc.render import diagnostic_text
from expc.sdk.evaluate import BundleError, Evaluator, parse_bundle


@dataclass(frozen=True)
class Side:
    """One side of a check: a bundle per environment, where its definitions came from,
    its ledger."""

    label: str
    # (environment, its bundle) in promotion order; one (None, bundle) without them
    bundles: tuple[tuple[str | None, Bundle], ...]
    snapshot: Snapshot | None = None  # None for a released bundle file
    ledger_file: LedgerFile = field(default_factory=LedgerFile.absent)

    @classmethod
    def of(cls, label: str, snapshot: Snapshot, ledger_file: LedgerFile) -> Side:
        bundles = tuple((name, document) for name, document, _text in compiled(snapshot))
        return cls(label, bundles, snapshot, ledger_file)

    @property
    def ledger(self) -> Ledger:
        return self.ledger_file.ledger

    @property
    def names(self) -> tuple[str, ...]:
        """The declared environments (a released bundle file: the one it is for)."""
        return tuple(name for name, _bundle in self.bundles if name is not None)

    def bundle(self, environment: str | None) -> Bundle:
        return dict(self.bundles)[environment]


def _git(repository: Path, *arguments: str, stdin: bytes | None = None) -> bytes:
    result = subprocess.run(
        ["git", "-C", str(repository), *arguments],
        input=stdin,
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        raise GitError(result.stderr.decode("utf-8", "replace").strip())
    return result.stdout


class GitError(Exception):
    pass


def _missing_revision_hint(repository: Path, revision: str) -> str:
    try:
        shallow = _git(repository, "rev-parse", "--is-shallow-repository").strip() == b"true"
    except GitError:
        shallow = False
    hint = (
        "this is a shallow clone: check out with `fetch-depth: 0` "
        "(actions/checkout) or run `git fetch origin "
        f"{revision}`"
        if shallow
        else f"check the name, or fetch it: `git fetch origin {revision}`"
    )
    return f"git revision '{revision}' is not in this repository; {hint}"


def _file_name(raw: bytes) -> str:
    # Undecodable bytes become the same escapes os.walk gives for a file on disk, so a
    # name that is not UTF-8 gets the same located diagnostic from either source.
    return raw.decode("utf-8", "surrogateescape")


def from_git(definitions: Path, revision: str, reuse: Snapshot | None = None) -> Side:
    definitions = definitions.resolve()
    try:
        top = Path(_git(definitions, "rev-parse", "--show-toplevel").decode().strip())
    except GitError as error:
        raise UsageError(f"{definitions} is not in a git repository ({error})") from error
    if revision.startswith("-"):
        raise UsageError(f"'{revision}' is not a git revision")
    try:
        commit = _git(top, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
    except GitError:
        raise UsageError(_missing_revision_hint(top, revision)) from None
    commit_id = commit.decode().strip()
    prefix = definitions.relative_to(top).as_posix()
    listing = _git(top, "ls-tree", "-r", "-z", "--full-tree", commit_id, "--", prefix)
    tree: dict[str, tuple[bytes, str]] = {}  # path -> (mode, blob)
    for record in listing.split(b"\0"):
        if not record:
            continue
        meta, path = record.split(b"\t", 1)
        mode, kind, blob = meta.split()
        if kind == b"blob":
            tree[_file_name(path)] = (mode, blob.decode())
    wanted = [name for name in sorted(tree) if _is_listed(name, prefix)]
    blobs = dict(zip(wanted, _cat_files(top, [tree[name][1] for name in wanted]), strict=True))
    files, refused = [], []
    for name in wanted:
        relative = name[len(prefix) + 1 :] if prefix not in ("", ".") else name
        raw = blobs[name]
        if tree[name][0] == _LINK:
            # A link's blob is its target: read the file it leads to, as on disk, or
            # refuse it when it leads outside the definitions.
            target = posixpath.normpath(posixpath.join(posixpath.dirname(name), _file_name(raw)))
            if not _is_inside(target, prefix) or target not in tree:
                refused.append((relative, None, [_link_outside(name, _file_name(raw))]))
                continue
            raw = _cat_files(top, [tree[target][1]])[0]
        files.append((relative, name, raw))
    snapshot = read_blobs(definitions, files, reuse, refused)
    label = f"{revision} ({commit_id[:12]})"
    ledger_path = in_repository(Layout.beside(definitions).ledger, top)
    try:
        text: str | None = _git(top, "show", f"{commit_id}:{ledger_path}").decode(
            "utf-8", "replace"
        )
    except GitError:
        text = None
    return _side(label, snapshot, _previous_ledger(text, f"{label}:{ledger_path}"))


_LINK = b"120000"


def _is_inside(path: str, prefix: str) -> bool:
    return prefix in ("", ".") or path.startswith(prefix + "/")


def _is_listed(name: str, prefix: str) -> bool:
    """A definition file as the directory listing would see it: below the definitions,
    not hidden, named like YAML (`.yml` is listed so that it is refused by name)."""
    relative = name[len(prefix) + 1 :] if prefix not in ("", ".") else name
    if not _is_inside(name, prefix) or any(p.startswith(".") for p in relative.split("/")):
        return False
    return relative.lower().endswith((".yaml", ".yml"))


def _link_outside(name: str, target: str) -> Diagnostic:
    return make(
        codes.OUTSIDE_DEFINITIONS,
        f"this file is a link to '{target}', outside the definitions directory (or to "
        "nothing), where changes are not reviewed with the definitions; move the file into "
        "the definitions directory instead of linking to it",
        Span(name),
    )


def _cat_files(top: Path, blobs: list[str]) -> list[bytes]:
    """Every blob's content from one `git cat-file --batch` process."""
    if not blobs:
        return []
    output = _git(top, "cat-file", "--batch", stdin="".join(b + "\n" for b in blobs).encode())
    contents = []
    position = 0
    for _ in blobs:
        header_end = output.index(b"\n", position)
        size = int(output[position:header_end].split()[2])
        start = header_end + 1
        contents.append(output[start : start + size])
        position = start + size + 1  # the content is followed by a newline
    return contents


def _previous_ledger(text: str | None, path: str) -> LedgerFile:
    """The previous side's ledger is the history the check relies on: a broken one
    stops the check (exit 2) rather than being taken for an empty history."""
    if text is None:
        return LedgerFile.absent()
    try:
        return LedgerFile(parse(text, path))
    except LedgerError as error:
        raise UsageError(
            f"the previous side's ledger is broken: {error}; compare against a release "
            "whose ledger is intact"
        ) from error


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as error:
        raise UsageError(f"{path}: cannot be read ({error.strerror})") from error


def read_ledger_file(path: Path, display: str) -> LedgerFile:
    """The current side's ledger: missing or broken is recorded, not raised (the check
    reports it as a finding). `display` is the path shown in messages."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return LedgerFile.absent()
    except OSError as error:
        problem = LedgerError(Span(display), f"cannot be read ({error.strerror})")
        return LedgerFile(Ledger.new(), error=problem)
    return read_text(text, display)


def _side(label: str, snapshot: Snapshot | Rejected, ledger_file: LedgerFile) -> Side:
    if isinstance(snapshot, Rejected):
        first = next(d for d in snapshot.diagnostics if d.blocking)
        raise UsageError(
            f"the previous side ({label}) does not validate: {diagnostic_text(first)}; "
            "compare against a revision that compiled"
        )
    return Side.of(label, snapshot, ledger_file)


def from_directory(definitions: Path, reuse: Snapshot | None = None) -> Side:
    snapshot = read(definitions, reuse=reuse)
    ledger = Layout.beside(definitions).ledger
    return _side(str(definitions), snapshot, _previous_ledger(_read(ledger), str(ledger)))


_BUNDLE = TypeAdapter(Bundle)


def from_bundle_file(path: Path) -> Side:
    try:
        document: Any = parse_bundle(path)
        _BUNDLE.validate_python(document, strict=True)
        Evaluator.from_compiled(document)  # requirements in order, ranges usable
    except (BundleError, ValidationError) as error:
        raise UsageError(f"{path}: not a usable bundle: {_first_problem(error)}") from error
    # A bundle of a declared environment (generated/production/bundle.json) has the
    # ledger one folder up, beside the environments' folders.
    environment = document["release"].get("environment")
    ledger = (path.parent if environment is None else path.parent.parent) / LEDGER
    history = _previous_ledger(_read(ledger), str(ledger))
    return Side(str(path), ((environment, document),), None, history)


def _first_problem(error: Exception) -> str:
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"{where}: {first['msg']}"
    return str(error)


def resolve(definitions: Path, against: str, current: Snapshot | None = None) -> Side:
    """Pick the kind of previous side `against` names: a file, a directory, or git.
    Files unchanged from `current` are not parsed again."""
    candidate = Path(against)
    if candidate.is_file():
        return from_bundle_file(candidate)
    if candidate.is_dir():
        return from_directory(candidate, current)
    return from_git(definitions, against, current)
