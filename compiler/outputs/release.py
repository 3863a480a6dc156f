"""The compile stage: a valid snapshot to the exact content of every output file.

    bundle.json, vectors.json, targets   (in <env>/ for each declared environment)
    ledger.json, CODEOWNERS, schema/*

Nothing here writes; `files.write_outputs` replaces all of these or none.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from expc import codes
from expc.diagnostics import Diagnostic, make
from expc.errors import TargetError, UsageError
from expc.outputs import layout, ledger
from expc.outputs.bundle import SharedFlags, build_bundle, canonical_json, vectors_json
from expc.outputs.bundle_types import Bundle
from expc.outputs.owners import codeowners
from expc.outputs.private import Hiding, PrivateValueError
from expc.outputs.schema import schemas
from expc.outputs.targets import builder
from expc.outputs.vectors import build_vectors
from expc.pipeline.environments import varying
from expc.pipeline.snapshot import Snapshot, collection_paused
from expc.reading.model import Holdout, Mutex


def compiled(
    snapshot: Snapshot, source_commit: str | None = None
) -> list[tuple[str | None, Bundle, str]]:
    """Every environment's name, bundle and the exact text of its `bundle.json`, in
    promotion order (one unnamed environment without declared ones). Flags that are
    the same in several environments are built once."""
    shared = SharedFlags()
    hiding = Hiding.of(snapshot.project)
    built = []
    with collection_paused():
        for environment in snapshot.environments:
            document, text = build_bundle(
                environment.catalog,
                snapshot.default_by,
                source_commit,
                environment.name,
                shared,
                varying(environment, snapshot.objects),
                hiding,
            )
            built.append((environment.name, document, text))
    return built


def bundle_of(
    snapshot: Snapshot, environment: str | None = None, source_commit: str | None = None
) -> Bundle:
    """One environment's bundle (`None`: the only one of a release without them)."""
    with collection_paused():
        return build_bundle(
            snapshot.environment(environment).catalog,
            snapshot.default_by,
            source_commit,
            environment,
            hiding=Hiding.of(snapshot.project),
        )[0]


def release_files(
    snapshot: Snapshot,
    history: ledger.Ledger,
    source_commit: str | None = None,
    targets: Sequence[str] = (),
) -> dict[str, str]:
    """Path under the output folder -> exact content, for every output of a compile.

    `targets` are written besides those the project asks for; `history` is the ledger
    already in the output folder, which this release is appended to.
    """
    bundles = compiled(snapshot, source_commit)
    project_targets = snapshot.project.targets if snapshot.project else []
    chosen = sorted({*project_targets, *targets})
    for name in chosen:
        if name not in layout.TARGETS:
            raise UsageError(f"unknown target '{name}'; available: {', '.join(layout.TARGETS)}")
    files = {}
    for environment, document, text in bundles:
        files[layout.in_environment(environment, layout.BUNDLE)] = text
        for name in chosen:
            try:
                target = canonical_json(builder(name)(document))
            except ValueError as error:
                where = f" ({environment})" if environment else ""
                place = _place(snapshot, environment, error)
                raise TargetError(f"{place}target {name}{where}: {error}") from error
            files[layout.in_environment(environment, layout.TARGETS[name])] = target
        with collection_paused():
            vectors = vectors_json(build_vectors(document))
        files[layout.in_environment(environment, layout.VECTORS)] = vectors
    updated = ledger.updated(history, [document for _name, document, _text in bundles])
    files[layout.LEDGER] = canonical_json(updated.to_json())
    definitions = snapshot.root.resolve()
    within = definitions.relative_to(layout.repository_root(definitions)).as_posix()
    files[layout.CODEOWNERS] = codeowners(snapshot.by_relative, within)
    for name, schema in schemas().items():
        files[layout.schema_file(name)] = canonical_json(schema)
    return files


def _place(snapshot: Snapshot, environment: str | None, error: ValueError) -> str:
    """`file:line:col: ` of what a target refused, when it says which flag and part."""
    if not isinstance(error, PrivateValueError):
        return ""
    loaded = snapshot.environment(environment).objects.get(error.flag)
    if loaded is None:
        return ""
    field = error.part
    if field == "overrides":
        definition = loaded.definition
        if isinstance(definition, Mutex):
            field = "pinned"
        elif isinstance(definition, Holdout):
            included = definition.include.users or definition.include.cohorts
            field = "include" if included else "exclude"
    return f"{loaded.span(field)}: "


def read_history(path: Path, shown: str) -> tuple[ledger.Ledger, list[Diagnostic]]:
    """The ledger a compile appends to: empty when there is none yet, and an E014
    diagnostic (never an empty history) when the file is not a ledger."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ledger.Ledger.new(), []
    except OSError as error:
        raise UsageError(f"{shown}: cannot be read ({error.strerror})") from error
    try:
        return ledger.parse(text, shown), []
    except ledger.LedgerError as error:
        return ledger.Ledger.new(), [make(codes.INVALID_LEDGER, error.message, error.span)]
