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
from typing import Any

from expc import codes
from expc.diagnostics import Diagnostic, Severity, Span, make, sorted_diagnostics
from expc.errors import UsageError
from expc.pipeline.cache import FileCache
from expc.pipeline.environments import Environment, block_problems, declared, in_each
from expc.pipeline.link import Catalog
from expc.pipeline.parallel import map_files
from expc.pipeline.validate import check_object
from expc.reading.listing import definition_files, key_of, read_raw, refuse_name
from expc.reading.load import Loaded, decode_source, load_values
from expc.reading.model import AnyDefinition, Project
from expc.reading.source import SourceFile
from expc.reading.yaml_values import SourceError


class NoDefinitionsError(UsageError):
    """The folder does not exist or holds no definition file (a usage error)."""


@dataclass(frozen=True)
class Snapshot:
    """A valid release: every definition read, validated, linked and linted, in every
    environment it declares (one unnamed environment when it declares none)."""

    root: Path
    objects: Mapping[str, Loaded]  # as written, before any environment's values
    # path below the definitions folder -> its object, to reuse unchanged files
    by_relative: Mapping[str, Loaded]
    environments: tuple[Environment, ...]  # in promotion order
    diagnostics: tuple[Diagnostic, ...]  # warnings and notices: none blocks

    @property
    def names(self) -> tuple[str, ...]:
        """The declared environments, in promotion order; none without environments."""
        return tuple(e.name for e in self.environments if e.name is not None)

    def environment(self, name: str | None) -> Environment:
        """One environment; `None` names the only one of a release without them."""
        for environment in self.environments:
            if environment.name == name:
                return environment
        raise KeyError(name)

    @property
    def catalog(self) -> Catalog:
        """What linking found about the structure (groups, slots, holdouts), which is
        the same in every environment; runtime links are per environment."""
        return self.environments[0].catalog

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
# What reading a file's bytes gives, lean enough to cross from a helper process: the
# path below the folder, the definition (its text stays with the bytes this process
# holds), the diagnostics, and the values to cache (None: nothing worth keeping).
Parsed = tuple[str, AnyDefinition | None, list[Diagnostic], dict[str, Any] | None]


def _parse_blob(job: tuple[str, str, bytes, bool]) -> Parsed:
    relative, display, raw, keep_values = job
    refused = refuse_name(display)
    if refused is not None:
        return relative, None, [refused], None
    source = decode_source(raw, display)
    if isinstance(source, Diagnostic):
        return relative, None, [source], None
    try:
        values = source.parse()
    except SourceError as error:
        span = Span(source.path, error.line, error.column)
        return relative, None, [make(error.code, error.message, span)], None
    _relative, loaded, problems = _checked(source, values, relative)
    definition = loaded.definition if loaded is not None else None
    kept = values if keep_values and definition is not None and not problems else None
    return relative, definition, problems, kept


def _checked(source: SourceFile, values: dict[str, Any], relative: str) -> Outcome:
    loaded = load_values(source, values)
    if isinstance(loaded, list):
        return relative, None, loaded
    return relative, loaded, list(check_object(loaded, relative))


@dataclass(frozen=True)
class Gathered:
    """The definition files of a folder, read but not parsed."""

    root: Path
    display_prefix: str
    files: tuple[tuple[str, str, bytes], ...]  # (path below the folder, shown, bytes)
    unreadable: tuple[Outcome, ...]  # files refused before they were read


def gather(root: Path, display_root: str | None = None) -> Gathered:
    """List and read every definition file below `root` (`NoDefinitionsError` when
    there is no such folder or no definition in it)."""
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
    files, unreadable = [], []
    for path, relative, display in listed:
        raw = read_raw(path, display)
        if isinstance(raw, Diagnostic):
            unreadable.append((relative, None, [raw]))
        else:
            files.append((relative, display, raw))
    return Gathered(root, prefix, tuple(files), tuple(unreadable))


def read(
    root: Path,
    display_root: str | None = None,
    reuse: Snapshot | None = None,
    cache: FileCache | None = None,
) -> Snapshot | Rejected:
    """Read, validate, link and lint every definition below `root`.

    With `reuse` (a valid snapshot of another release), files whose bytes are the same
    at the same path take its already validated objects instead of being parsed again:
    the two sides of a check share almost every file. Files read before come from the
    cache of read-and-validated files (`cache`; by default the folder's own).
    """
    return read_gathered(gather(root, display_root), reuse, cache)


def read_gathered(
    gathered: Gathered, reuse: Snapshot | None = None, cache: FileCache | None = None
) -> Snapshot | Rejected:
    if cache is None:
        cache = FileCache.for_definitions(gathered.root)
    return read_blobs(gathered.root, gathered.files, reuse, gathered.unreadable, cache)


def read_blobs(
    root: Path,
    files: Sequence[tuple[str, str, bytes]],
    reuse: Snapshot | None = None,
    failed: Sequence[Outcome] = (),
    cache: FileCache | None = None,
) -> Snapshot | Rejected:
    """`read`, for files already in memory (read from git): (path relative to the
    definitions folder, path to show, content). `failed` holds the outcomes of files
    that could not be read."""
    cache = cache or FileCache(None)
    outcomes: list[Outcome] = list(failed)
    to_parse = []
    keys: dict[str, str] = {}
    with collection_paused():
        for relative, display, raw in files:
            earlier = reuse.by_relative.get(relative) if reuse is not None else None
            if earlier is not None and earlier.source.text.encode("utf-8") == raw:
                source = SourceFile(display, earlier.source.text)
                outcomes.append((relative, Loaded(source, earlier.definition), []))
                continue
            key = keys[relative] = cache.key(relative, raw)
            values = cache.get(key)
            if values is None:
                to_parse.append((relative, display, raw, cache.path is not None))
                continue
            # Read and checked before without a diagnostic, by this very code (the
            # cache's key holds it): the same values, typed again, nothing to report.
            source = SourceFile(display, raw.decode("utf-8").removeprefix("\ufeff"))
            loaded = load_values(source, values)
            if isinstance(loaded, Loaded):
                outcomes.append((relative, loaded, []))
            else:  # an entry that no longer validates: read the file again
                to_parse.append((relative, display, raw, cache.path is not None))
        parsed = map_files(_parse_blob, to_parse)
        for (relative, display, raw, _keep), (_, definition, problems, values) in zip(
            to_parse, parsed, strict=True
        ):
            made: Loaded | None = None
            if definition is not None:
                # The text of a file that was read within the limits: safe to compose.
                text = raw.decode("utf-8").removeprefix("\ufeff")
                made = Loaded(SourceFile(display, text, _read=True), definition)
            outcomes.append((relative, made, problems))
            if values is not None:
                cache.put(keys[relative], values)
    cache.save()
    return _linked(root, outcomes)


def _linked(root: Path, outcomes: Iterable[Outcome]) -> Snapshot | Rejected:
    """Collect the objects, link them, and lint them when nothing is wrong."""
    objects: dict[str, Loaded] = {}
    by_relative: dict[str, Loaded] = {}
    diagnostics: list[Diagnostic] = []
    # Keys of files that failed to load: their own errors say why, so references to
    # them are not reported again as unknown.
    invalid_keys: set[str] = set()
    checked: dict[str, list[Diagnostic]] = {}  # one-object diagnostics, by key
    for relative, loaded, problems in sorted(outcomes, key=lambda outcome: outcome[0]):
        if loaded is None:
            diagnostics.extend(problems)
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
            diagnostics.extend(problems)
            continue
        objects[key] = loaded
        checked[key] = problems
    project = _project(objects)
    names = declared(project)
    # A project.yaml that failed to load declares nothing we know of: judging every
    # `environments:` block against "no environments" would blame the wrong files.
    project_unread = project is None and "project" in invalid_keys
    blocked = [] if project_unread else block_problems(objects, names)
    relatives = {loaded.definition.key: relative for relative, loaded in by_relative.items()}
    nothing_blocks = not any(d.severity is Severity.ERROR for d in [*diagnostics, *blocked])
    environments, problems = in_each(
        objects, names, checked, relatives, invalid_keys, project, nothing_blocks
    )
    ordered = tuple(sorted_diagnostics([*diagnostics, *blocked, *problems]))
    if any(d.severity is Severity.ERROR for d in ordered):
        return Rejected(root, ordered, objects)
    return Snapshot(root, objects, by_relative, environments, ordered)


@contextmanager
def collection_paused(restore: bool = True) -> Iterator[None]:
    """Loading creates millions of objects that all stay alive; the cyclic garbage
    collector would scan them again and again for nothing (a third of load time).
    With `restore` false the collector stays off afterwards (a process about to end)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled and restore:
            gc.enable()
