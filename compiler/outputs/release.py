"""The compile stage: a valid snapshot to the exact content of every output file.

    bundle.json, vectors.json, ledger.json, CODEOWNERS, schema/*, targets

Nothing here writes; `files.write_outputs` replaces all of these or none.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from expc import codes
from expc.diagnostics import Diagnostic, make
from expc.errors import TargetError, UsageError
from expc.outputs import layout, ledger
from expc.outputs.bundle import build_bundle, canonical_json, vectors_json
from expc.outputs.bundle_types import Bundle
from expc.outputs.owners import codeowners
from expc.outputs.schema import schemas
from expc.outputs.targets import builder
from expc.outputs.vectors import build_vectors
from expc.pipeline.snapshot import Snapshot, collection_paused


def compiled(snapshot: Snapshot, source_commit: str | None = None) -> tuple[Bundle, str]:
    """The bundle and the exact text of `bundle.json`."""
    with collection_paused():
        return build_bundle(snapshot.catalog, snapshot.default_by, source_commit)


def bundle_of(snapshot: Snapshot, source_commit: str | None = None) -> Bundle:
    return compiled(snapshot, source_commit)[0]


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
    document, text = compiled(snapshot, source_commit)
    files = {layout.BUNDLE: text}
    files[layout.LEDGER] = canonical_json(ledger.updated(history, document).to_json())
    definitions = snapshot.root.resolve()
    within = definitions.relative_to(layout.repository_root(definitions)).as_posix()
    files[layout.CODEOWNERS] = codeowners(snapshot.by_relative, within)
    project_targets = snapshot.project.targets if snapshot.project else []
    for name in sorted({*project_targets, *targets}):
        if name not in layout.TARGETS:
            raise UsageError(f"unknown target '{name}'; available: {', '.join(layout.TARGETS)}")
        try:
            files[layout.TARGETS[name]] = canonical_json(builder(name)(document))
        except ValueError as error:
            raise TargetError(f"target {name}: {error}") from error
    with collection_paused():
        files[layout.VECTORS] = vectors_json(build_vectors(document))
    for name, schema in schemas().items():
        files[layout.schema_file(name)] = canonical_json(schema)
    return files


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
