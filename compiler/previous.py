"""The previous release for `expc check --against REF`: a git revision, a directory of
definitions, or a released bundle file.

A git revision is read with plumbing only: `git ls-tree` lists the definition files
at that revision and one `git cat-file --batch` process returns all of them; nothing
is checked out or cloned.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compiler import api
from compiler.bundle_types import Bundle
from compiler.evaluate import BundleError, parse_bundle

LEDGER_NAME = "ledger.json"


@dataclass
class Side:
    """One side of a check: its bundle, and where its definitions came from."""

    label: str
    bundle: Bundle
    snapshot: api.Snapshot | None = None
    ledger: dict[str, Any] = field(default_factory=dict)


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


def from_git(definitions: Path, revision: str, reuse: api.Snapshot | None = None) -> Side:
    definitions = definitions.resolve()
    try:
        top = Path(_git(definitions, "rev-parse", "--show-toplevel").decode().strip())
    except GitError as error:
        raise api.UsageError(f"{definitions} is not in a git repository ({error})") from error
    try:
        commit = _git(top, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
    except GitError:
        raise api.UsageError(_missing_revision_hint(top, revision)) from None
    commit_id = commit.decode().strip()
    prefix = definitions.relative_to(top).as_posix()
    listing = _git(top, "ls-tree", "-r", "-z", "--full-tree", commit_id, "--", prefix)
    entries = []
    for record in listing.split(b"\0"):
        if not record:
            continue
        meta, path = record.split(b"\t", 1)
        _mode, kind, blob = meta.split()
        name = path.decode("utf-8")
        if kind == b"blob" and name.endswith(".yaml"):
            entries.append((blob.decode(), name))
    blobs = _cat_files(top, [blob for blob, _ in entries])
    files = []
    for (_blob, name), raw in zip(entries, blobs, strict=True):
        relative = name[len(prefix) + 1 :] if prefix not in ("", ".") else name
        if any(part.startswith(".") for part in relative.split("/")):
            continue
        files.append((relative, name, raw))
    snapshot = api.load_snapshot_from_blobs(definitions, files, reuse)
    ledger = _git_ledger(top, commit_id, prefix)
    return _side(f"{revision} ({commit_id[:12]})", snapshot, ledger)


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


def _git_ledger(top: Path, commit: str, definitions_prefix: str) -> dict[str, Any]:
    parent = Path(definitions_prefix).parent.as_posix()
    path = f"{'' if parent == '.' else parent + '/'}generated/{LEDGER_NAME}"
    try:
        return dict(json.loads(_git(top, "show", f"{commit}:{path}")))
    except (GitError, ValueError):
        return {}


def _side(label: str, snapshot: api.Snapshot, ledger: dict[str, Any]) -> Side:
    if snapshot.has_errors:
        first = next(d for d in snapshot.diagnostics if d.blocking)
        raise api.UsageError(
            f"the previous side ({label}) does not validate: {first.to_text()}; "
            "compare against a revision that compiled"
        )
    return Side(label, api.bundle(snapshot), snapshot, ledger)


def from_directory(definitions: Path, reuse: api.Snapshot | None = None) -> Side:
    snapshot = api.load_snapshot(definitions, reuse=reuse)
    ledger_file = definitions.parent / "generated" / LEDGER_NAME
    return _side(str(definitions), snapshot, read_ledger(ledger_file))


def from_bundle_file(path: Path) -> Side:
    try:
        document = parse_bundle(path)
    except BundleError as error:
        raise api.UsageError(f"{path}: {error}") from error
    return Side(str(path), document, None, read_ledger(path.parent / LEDGER_NAME))  # type: ignore[arg-type]


def read_ledger(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def resolve(definitions: Path, against: str, current: api.Snapshot | None = None) -> Side:
    """Pick the kind of previous side `against` names: a file, a directory, or git.
    Files unchanged from `current` are not parsed again."""
    candidate = Path(against)
    if candidate.is_file():
        return from_bundle_file(candidate)
    if candidate.is_dir():
        return from_directory(candidate, current)
    return from_git(definitions, against, current)
