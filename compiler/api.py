"""The library behind every command: each function returns data and never prints.

load (YAML with positions) -> validate (typed models) -> graph -> lint -> emit
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from expc import codes
from expc.diagnostics import Diagnostic, Severity, make, sorted_diagnostics
from expc.outputs import ledger
from expc.outputs.bundle import build_bundle, canonical_json, vectors_json
from expc.outputs.bundle_types import Bundle
from expc.outputs.files import changed_files
from expc.outputs.owners import codeowners
from expc.outputs.schema import schemas
from expc.outputs.targets import TARGET_FILES, builder
from expc.outputs.vectors import build_vectors
from expc.pipeline.link import Catalog, Reference, build
from expc.pipeline.lint import lint
from expc.pipeline.parallel import map_files
from expc.pipeline.traffic import TrafficRow, effective_traffic, traffic_rows
from expc.pipeline.validate import check_object
from expc.reading.load import (
    Loaded,
    decode_source,
    definition_files,
    key_of,
    load_object,
    read_raw,
    read_source,
    refuse_name,
)
from expc.reading.model import Project
from expc.reading.source import SourceFile


class UsageError(Exception):
    """A problem with how expc was called, not with the definitions (exit 2)."""


class TargetError(Exception):
    """The definitions are valid but a requested target cannot express them (exit 1)."""


@dataclass
class Snapshot:
    """One validated set of definitions."""

    root: Path
    objects: dict[str, Loaded] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    catalog: Catalog | None = None
    # path below the definitions directory -> its object, to reuse unchanged files
    by_relative: dict[str, Loaded] = field(default_factory=dict)
    # keys (file names) of files that failed to load: their own errors say why, so
    # references to them are not reported again as unknown
    invalid_keys: set[str] = field(default_factory=set)

    @property
    def project(self) -> Project | None:
        loaded = self.objects.get("project")
        if loaded is not None and isinstance(loaded.definition, Project):
            return loaded.definition
        for loaded in self.objects.values():
            if isinstance(loaded.definition, Project):
                return loaded.definition
        return None

    @property
    def default_by(self) -> str:
        project = self.project
        return project.bucketing.by if project else "user_id"

    @property
    def has_errors(self) -> bool:
        return any(d.severity is Severity.ERROR for d in self.diagnostics)


def output_root(definitions: Path) -> Path:
    """The folder that holds the definitions folder: `generated/` is written beside it,
    wherever expc is run from."""
    return definitions.resolve().parent


def default_out_dir(definitions: Path) -> Path:
    return output_root(definitions) / "generated"


def ledger_path(definitions: Path) -> Path:
    """Where the ledger of a definitions folder lives (`generated/ledger.json`)."""
    return default_out_dir(definitions) / ledger.LEDGER_NAME


def ledger_path_in_repository(definitions: Path, top: Path) -> str:
    """The ledger's path relative to the repository root `top`, as git names it."""
    return ledger_path(definitions).relative_to(top.resolve()).as_posix()


def repository_root(definitions: Path) -> Path:
    """The nearest folder above the definitions that holds `.git`, else the folder that
    holds the definitions: paths written into outputs (CODEOWNERS) are relative to it,
    so they do not depend on where expc is run from."""
    resolved = definitions.resolve()
    for folder in resolved.parents:
        if (folder / ".git").exists():
            return folder
    return resolved.parent


def display_root(directory: str) -> str:
    """Paths in messages are relative to the working directory when they can be, so
    that GitHub annotations (relative to the repository root) land on the file."""
    relative = os.path.relpath(directory)
    return directory if relative.startswith("..") else Path(relative).as_posix()


def _display_prefix(root: Path, display_root: str | None) -> str:
    base = root.as_posix() if display_root is None else display_root
    return "" if base in ("", ".") else base.rstrip("/") + "/"


Outcome = tuple[str, Loaded | None, list[Diagnostic]]


def _load_one(job: tuple[Path, str, str]) -> Outcome:
    path, relative, display = job
    return _check_source(read_source(path, display), relative)


def _load_blob(job: tuple[str, str, bytes]) -> Outcome:
    relative, display, raw = job
    refused = refuse_name(display)
    if refused is not None:
        return relative, None, [refused]
    return _check_source(decode_source(raw, display), relative)


def _check_source(source: SourceFile | Diagnostic, relative: str) -> Outcome:
    if isinstance(source, Diagnostic):
        return relative, None, [source]
    loaded = load_object(source)
    if isinstance(loaded, list):
        return relative, None, loaded
    problems = list(check_object(loaded, relative))
    return relative, loaded, problems


def load_snapshot(
    root: Path, display_root: str | None = None, reuse: Snapshot | None = None
) -> Snapshot:
    """Read, validate, link and lint every definition below `root`.

    With `reuse` (a valid snapshot of another release), files whose bytes are the same
    at the same path take its already validated objects instead of being parsed again:
    the two sides of a check share almost every file.
    """
    if not root.is_dir():
        raise UsageError(f"{root}: no such definitions directory")
    prefix = _display_prefix(root, display_root)
    listed = [(path, relative, prefix + relative) for path, relative in definition_files(root)]
    if not listed:
        # An empty or mistyped folder must not compile into an empty bundle that
        # replaces a released one: that is how a production configuration gets wiped.
        raise UsageError(f"{root}: no definitions found (no .yaml files below it); check the path")
    if reuse is not None:
        blobs, unreadable = [], []
        for path, relative, display in listed:
            raw = read_raw(path, display)
            if isinstance(raw, Diagnostic):
                unreadable.append((relative, None, [raw]))
            else:
                blobs.append((relative, display, raw))
        return load_snapshot_from_blobs(root, blobs, reuse, unreadable)
    snapshot = Snapshot(root)
    with collection_paused():
        _collect(snapshot, map_files(_load_one, listed))
    return _link(snapshot)


def load_snapshot_from_blobs(
    root: Path,
    files: Sequence[tuple[str, str, bytes]],
    reuse: Snapshot | None = None,
    failed: Sequence[Outcome] = (),
) -> Snapshot:
    """The same as `load_snapshot`, for files already in memory (read from git):
    (path relative to the definitions directory, path to show, content). `failed`
    holds the outcomes of files that could not be read."""
    snapshot = Snapshot(root)
    reused: list[Outcome] = list(failed)
    to_parse = []
    for relative, display, raw in files:
        earlier = reuse.by_relative.get(relative) if reuse is not None else None
        if earlier is not None and earlier.source.text.encode("utf-8") == raw:
            reused.append(
                (relative, Loaded(SourceFile(display, earlier.source.text), earlier.definition), [])
            )
        else:
            to_parse.append((relative, display, raw))
    with collection_paused():
        _collect(snapshot, [*reused, *map_files(_load_blob, to_parse)])
    return _link(snapshot)


def _link(snapshot: Snapshot) -> Snapshot:
    catalog, problems = build(snapshot.objects, snapshot.invalid_keys)
    snapshot.diagnostics.extend(problems)
    snapshot.catalog = catalog
    if not snapshot.has_errors:
        snapshot.diagnostics.extend(lint(catalog, snapshot.project))
    snapshot.diagnostics = sorted_diagnostics(snapshot.diagnostics)
    return snapshot


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


def _collect(snapshot: Snapshot, results: Iterable[Outcome]) -> None:
    for relative, loaded, problems in sorted(results, key=lambda outcome: outcome[0]):
        snapshot.diagnostics.extend(problems)
        if loaded is None:
            snapshot.invalid_keys.add(key_of(relative))
            continue
        snapshot.by_relative[relative] = loaded
        key = loaded.definition.key
        earlier = snapshot.objects.get(key)
        if earlier is not None:
            snapshot.diagnostics.append(
                make(
                    codes.DUPLICATE_OBJECT,
                    f"key '{key}' is already used by {earlier.source.path}; keys are unique "
                    "across all kinds, rename one",
                    loaded.span("key"),
                )
            )
            continue
        snapshot.objects[key] = loaded


def traffic_report(snapshot: Snapshot) -> dict[str, Fraction]:
    """Expected share of all users each experiment enrols once it runs (DESIGN §4)."""
    if snapshot.catalog is None or snapshot.has_errors:
        return {}
    return effective_traffic(snapshot.catalog)


def traffic_table(snapshot: Snapshot) -> list[TrafficRow]:
    """`expc traffic`: every experiment's state and share now (stopped ones: none)."""
    if snapshot.catalog is None or snapshot.has_errors:
        return []
    return traffic_rows(snapshot.catalog)


def bundle(snapshot: Snapshot, source_commit: str | None = None) -> Bundle:
    return _compiled(snapshot, source_commit)[0]


def _compiled(snapshot: Snapshot, source_commit: str | None) -> tuple[Bundle, str]:
    if snapshot.catalog is None or snapshot.has_errors:
        raise UsageError("definitions have errors; run 'expc validate' and fix them first")
    with collection_paused():
        return build_bundle(snapshot.catalog, snapshot.default_by, source_commit)


def outputs(
    snapshot: Snapshot,
    source_commit: str | None = None,
    targets: Sequence[str] = (),
    ledger_before: ledger.Ledger | None = None,
) -> dict[str, str]:
    """Relative path under the output directory -> exact file content.

    `targets` are written besides those the project asks for on every compile;
    `ledger_before` is the ledger already in the output directory, which is appended to.
    """
    document, text = _compiled(snapshot, source_commit)
    files = {"bundle.json": text}
    history = ledger.updated(ledger_before or ledger.Ledger.new(), document)
    files[ledger.LEDGER_NAME] = canonical_json(history.to_json())
    definitions_path = snapshot.root.resolve().relative_to(repository_root(snapshot.root))
    files["CODEOWNERS"] = codeowners(snapshot.by_relative, definitions_path.as_posix())
    project_targets = snapshot.project.targets if snapshot.project else []
    for name in sorted({*project_targets, *targets}):
        if name not in TARGET_FILES:
            raise UsageError(f"unknown target '{name}'; available: {', '.join(TARGET_FILES)}")
        try:
            files[TARGET_FILES[name]] = canonical_json(builder(name)(document))
        except ValueError as error:
            raise TargetError(f"target {name}: {error}") from error
    with collection_paused():
        files["vectors.json"] = vectors_json(build_vectors(document))
    for name, schema in schemas().items():
        files[f"schema/{name}"] = canonical_json(schema)
    return files


def current_ledger(out_dir: Path) -> tuple[ledger.Ledger, list[Diagnostic]]:
    """The ledger `compile` appends to: empty when there is none yet, and an E014
    diagnostic (never an empty history) when the file is not a ledger."""
    path = out_dir / ledger.LEDGER_NAME
    display = display_root(str(path))
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ledger.Ledger.new(), []
    except OSError as error:
        raise UsageError(f"{display}: cannot be read ({error.strerror})") from error
    try:
        return ledger.parse(text, display), []
    except ledger.LedgerError as error:
        return ledger.Ledger.new(), [make(codes.INVALID_LEDGER, error.message, error.span)]


def stale_files(out_dir: Path, files: dict[str, str]) -> list[str]:
    """Files under `out_dir` that are missing or differ from what compile would write."""
    return list(changed_files(out_dir, files))


def graph_edges(snapshot: Snapshot) -> Iterable[tuple[str, str, str]]:
    """(from, to, relation) in a stable order, for `expc graph`; an experiment that
    holds several slots of a group has one edge naming them all ("slots 2, 3")."""
    if snapshot.catalog is None:
        return []
    graph = snapshot.catalog.graph
    return sorted((a, b, _relation(graph.edges[a, b]["references"])) for a, b in graph.edges)


def _relation(references: Sequence[Reference]) -> str:
    relations = [reference.relation for reference in references]
    if len(relations) > 1 and all(r.startswith("slot ") for r in relations):
        return "slots " + ", ".join(r.removeprefix("slot ") for r in relations)
    return ", ".join(dict.fromkeys(relations))
