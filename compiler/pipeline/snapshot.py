"""The pipeline of one release, as pure stages with one typed product:

    read (files -> typed models) -> validate (one object) -> link (the graph)
        -> lint (across objects) -> Snapshot, or Rejected with its diagnostics

A `Snapshot` is valid by construction (it has a catalog, and no diagnostic of it
blocks); the compile stage (`outputs.release`) takes one. Files are read on every core
when there are many (`parallel`), and through the cache of read-and-validated files
(`cache`) when one is given.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from expc import codes
from expc.diagnostics import Diagnostic, Severity, make, sorted_diagnostics
from expc.errors import UsageError
from expc.pipeline.link import Catalog, build
from expc.pipeline.lint import lint
from expc.pipeline.parallel import map_files
from expc.pipeline.validate import check_object
from expc.reading.listing import definition_files, key_of, read_raw, refuse_name
from expc.reading.load import Loaded, decode_source, load_object, read_source
from expc.reading.model import Project
from expc.reading.source import SourceFile


class NoDefinitionsError(UsageError):
    """The folder does not exist or holds no definition file (a usage error)."""


@dataclass(frozen=True)
class Snapshot:
    """A valid release: every definition read, validated, linked and linted."""

    root: Path
    objects: Mapping[str, Loaded]
    # path below the definitions folder -> its object, to reuse unchanged files
    by_relative: Mapping[str, Loaded]
    catalog: Catalog
    diagnostics: tuple[Diagnostic, ...]  # warnings and notices: none blocks

    @property
    def project(self) -> Project | None:
        return _project(self.objects)

    @property
    def default_by(self) -> str:
        project = self.project
        return project.bucketing.by if project else "user_id"

    @property
    def flag_count(self) -> int:
        """Experiments, groups and holdouts: what becomes a flag of the bundle."""
        return sum(o.definition.kind not in ("cohort", "project") for o in self.objects.values())


@dataclass(frozen=True)
class Rejected:
    """A release that does not validate: at least one diagnostic blocks."""

    root: Path
    diagnostics: tuple[Diagnostic, ...]
    objects: Mapping[str, Loaded] = field(default_factory=dict)


def _project(objects: Mapping[str, Loaded]) -> Project | None:
    loaded = objects.get("project")
    if loaded is not None and isinstance(loaded.definition, Project):
        return loaded.definition
    for loaded in objects.values():
        if isinstance(loaded.definition, Project):
            return loaded.definition
    return None


def shown_path(directory: str) -> str:
    """Paths in messages are relative to the working directory when they can be, so
    that GitHub annotations (relative to the repository root) land on the file."""
    relative = os.path.relpath(directory)
    return directory if relative.startswith("..") else Path(relative).as_posix()


def _display_prefix(root: Path, display_root: str | None) -> str:
    base = root.as_posix() if display_root is None else display_root
    return "" if base in ("", ".") else base.rstrip("/") + "/"


# (path below the definitions folder, the object or None, its diagnostics)
Outcome = tuple[str, Loaded | None, list[Diagnostic]]


def _read_one(job: tuple[Path, str, str]) -> Outcome:
    path, relative, display = job
    return _checked(read_source(path, display), relative)


def _read_blob(job: tuple[str, str, bytes]) -> Outcome:
    relative, display, raw = job
    refused = refuse_name(display)
    if refused is not None:
        return relative, None, [refused]
    return _checked(decode_source(raw, display), relative)


def _checked(source: SourceFile | Diagnostic, relative: str) -> Outcome:
    if isinstance(source, Diagnostic):
        return relative, None, [source]
    loaded = load_object(source)
    if isinstance(loaded, list):
        return relative, None, loaded
    return relative, loaded, list(check_object(loaded, relative))


def read(
    root: Path, display_root: str | None = None, reuse: Snapshot | None = None
) -> Snapshot | Rejected:
    """Read, validate, link and lint every definition below `root`.

    With `reuse` (a valid snapshot of another release), files whose bytes are the same
    at the same path take its already validated objects instead of being parsed again:
    the two sides of a check share almost every file.
    """
    if not root.is_dir():
        raise NoDefinitionsError(f"{root}: no such definitions directory")
    prefix = _display_prefix(root, display_root)
    listed = [(path, relative, prefix + relative) for path, relative in definition_files(root)]
    if not listed:
        # An empty or mistyped folder must not compile into an empty bundle that
        # replaces a released one: that is how a production configuration gets wiped.
        raise NoDefinitionsError(
            f"{root}: no definitions found (no .yaml files below it); check the path"
        )
    if reuse is not None:
        blobs, unreadable = [], []
        for path, relative, display in listed:
            raw = read_raw(path, display)
            if isinstance(raw, Diagnostic):
                unreadable.append((relative, None, [raw]))
            else:
                blobs.append((relative, display, raw))
        return read_blobs(root, blobs, reuse, unreadable)
    with collection_paused():
        outcomes = map_files(_read_one, listed)
    return _linked(root, outcomes)


def read_blobs(
    root: Path,
    files: Sequence[tuple[str, str, bytes]],
    reuse: Snapshot | None = None,
    failed: Sequence[Outcome] = (),
) -> Snapshot | Rejected:
    """`read`, for files already in memory (read from git): (path relative to the
    definitions folder, path to show, content). `failed` holds the outcomes of files
    that could not be read."""
    outcomes: list[Outcome] = list(failed)
    to_parse = []
    for relative, display, raw in files:
        earlier = reuse.by_relative.get(relative) if reuse is not None else None
        if earlier is not None and earlier.source.text.encode("utf-8") == raw:
            outcomes.append(
                (relative, Loaded(SourceFile(display, earlier.source.text), earlier.definition), [])
            )
        else:
            to_parse.append((relative, display, raw))
    with collection_paused():
        outcomes += map_files(_read_blob, to_parse)
    return _linked(root, outcomes)


def _linked(root: Path, outcomes: Iterable[Outcome]) -> Snapshot | Rejected:
    """Collect the objects, link them, and lint them when nothing is wrong."""
    objects: dict[str, Loaded] = {}
    by_relative: dict[str, Loaded] = {}
    diagnostics: list[Diagnostic] = []
    # Keys of files that failed to load: their own errors say why, so references to
    # them are not reported again as unknown.
    invalid_keys: set[str] = set()
    for relative, loaded, problems in sorted(outcomes, key=lambda outcome: outcome[0]):
        diagnostics.extend(problems)
        if loaded is None:
            invalid_keys.add(key_of(relative))
            continue
        by_relative[relative] = loaded
        key = loaded.definition.key
        earlier = objects.get(key)
        if earlier is not None:
            diagnostics.append(
                make(
                    codes.DUPLICATE_OBJECT,
                    f"key '{key}' is already used by {earlier.source.path}; keys are unique "
                    "across all kinds, rename one",
                    loaded.span("key"),
                )
            )
            continue
        objects[key] = loaded
    catalog, problems = build(objects, invalid_keys)
    diagnostics.extend(problems)
    if any(d.severity is Severity.ERROR for d in diagnostics):
        return Rejected(root, tuple(sorted_diagnostics(diagnostics)), objects)
    diagnostics.extend(lint(catalog, _project(objects)))
    ordered = tuple(sorted_diagnostics(diagnostics))
    if any(d.severity is Severity.ERROR for d in ordered):
        return Rejected(root, ordered, objects)
    return Snapshot(root, objects, by_relative, catalog, ordered)


@contextmanager
def collection_paused() -> Iterator[None]:
    """Loading creates millions of objects that all stay alive; the cyclic garbage
    collector would scan them again and again for nothing (a third of load time)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
