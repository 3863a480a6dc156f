"""`expc promote KEY --from staging --to production` (DESIGN §10).

Copies the runtime fields whose value differs between two environments (except
`overrides` and `pinned`, which name test users) into the target environment's block
of the object's file. A field whose source value is the object's own base value is
removed from the target block instead, so the target inherits it as the source does.

The file is edited with ruamel.yaml's round-trip mode, which keeps comments, key order
and quoting; its indentation is the one that reproduces the file unchanged. The result
is read, validated and checked against the definitions as they are before anything
is written: a promotion that would not validate, or that the safety check blocks, is
refused with the reasons.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedBase, CommentedMap
from ruamel.yaml.error import YAMLError

from expc.diagnostics import Diagnostic
from expc.errors import UsageError
from expc.pipeline.snapshot import Gathered, Rejected, Snapshot, read_gathered
from expc.reading.load import did_you_mean
from expc.reading.model import RUNTIME_FIELDS, at_environment

# Fields naming test users: what QA sees in staging must not reach production.
NOT_PROMOTED = frozenset({"overrides", "pinned"})
# (mapping, sequence, offset) indentations tried, the common ones first
_INDENTS = ((2, 4, 2), (2, 2, 0), (4, 4, 2), (4, 6, 4), (2, 2, 2), (4, 4, 0))


@dataclass(frozen=True)
class Promotion:
    """What promoting one object does to its file."""

    key: str
    source: str
    target: str
    path: Path  # the object's file
    shown: str  # its path as messages show it
    copied: tuple[str, ...]  # fields set in the target block
    inherited: tuple[str, ...]  # fields removed from it (the base value applies)
    before: str
    after: str

    @property
    def changes(self) -> bool:
        return self.before != self.after

    def diff(self) -> str:
        return "".join(
            difflib.unified_diff(
                self.before.splitlines(keepends=True),
                self.after.splitlines(keepends=True),
                f"a/{self.shown}",
                f"b/{self.shown}",
            )
        )


def plan(snapshot: Snapshot, key: str, source: str, target: str) -> Promotion:
    """The promotion of `key` from `source` to `target`, not yet checked or written."""
    names = snapshot.names
    if not names:
        raise UsageError("the definitions declare no environments; there is nothing to promote")
    for option, name in (("--from", source), ("--to", target)):
        if name not in names:
            raise UsageError(
                f"{option} {name}: no such environment (declared: {', '.join(names)})"
                + did_you_mean(name, list(names))
            )
    if source == target:
        raise UsageError(f"--from and --to both name '{source}'; promote between two")
    loaded = snapshot.objects.get(key)
    if loaded is None or loaded.definition.kind == "project":
        raise UsageError(f"no object '{key}'" + did_you_mean(key, sorted(snapshot.objects)))
    relative = next(r for r, found in snapshot.by_relative.items() if found is loaded)
    definition = loaded.definition
    base = definition.model_dump()
    there = at_environment(definition, source).model_dump()
    here = at_environment(definition, target).model_dump()
    fields = [f for f in RUNTIME_FIELDS[definition.kind] if f not in NOT_PROMOTED]
    differing = [f for f in fields if there[f] != here[f]]
    copied = tuple(f for f in differing if there[f] != base[f])
    inherited = tuple(f for f in differing if there[f] == base[f])
    text = loaded.source.text
    after = _edited(text, names, source, target, copied, inherited) if differing else text
    return Promotion(
        key,
        source,
        target,
        snapshot.root / relative,
        loaded.source.path,
        copied,
        inherited,
        text,
        after,
    )


def problems(
    snapshot: Snapshot, gathered: Gathered, promotion: Promotion
) -> tuple[str, list[Diagnostic]]:
    """Why the promoted definitions may not be written, and in a few words what that
    is: what does not validate, else what the safety check blocks, judged against the
    definitions before the promotion. No diagnostics: it may be written."""
    from expc.check.locate import Locator
    from expc.check.previous import Side, read_ledger_file
    from expc.check.run import compare
    from expc.outputs.layout import Layout

    relative = promotion.path.relative_to(snapshot.root).as_posix()
    files = tuple(
        (name, shown, promotion.after.encode("utf-8") if name == relative else raw)
        for name, shown, raw in gathered.files
    )
    promoted = read_gathered(dataclasses.replace(gathered, files=files), reuse=snapshot)
    if isinstance(promoted, Rejected):
        return "would not validate", [d for d in promoted.diagnostics if d.blocking]
    ledger_path = Layout.beside(snapshot.root).ledger
    history = read_ledger_file(ledger_path, str(ledger_path))
    before = Side.of("the definitions before promotion", snapshot, history)
    after = Side.of("promoted", promoted, history)
    project = f"{gathered.display_prefix}project.yaml"
    result = compare(after, before, Locator(after, before, str(ledger_path), project))
    return "would be blocked by the safety check", [f for f in result.findings if f.blocking]


def _edited(
    text: str,
    names: tuple[str, ...],
    source: str,
    target: str,
    copied: tuple[str, ...],
    inherited: tuple[str, ...],
) -> str:
    yaml = _round_trip(text)
    try:
        document = yaml.load(text)
    except YAMLError as error:  # pragma: no cover - the file was read and validated
        raise UsageError(f"cannot edit the file: {error}") from error
    blocks = document.setdefault("environments", CommentedMap())
    if target not in blocks:
        later = [i for i, name in enumerate(blocks) if name in names[names.index(target) :]]
        blocks.insert(later[0] if later else len(blocks), target, CommentedMap())
    block = blocks[target]
    for field in copied:
        block[field] = _without_comments(copy.deepcopy(blocks[source][field]))
    for field in inherited:
        block.pop(field, None)
    if not block:
        del blocks[target]
    if not blocks:
        del document["environments"]
    out = io.StringIO()
    yaml.dump(document, out)
    result = out.getvalue()
    return result if text.endswith("\n") else result.removesuffix("\n")


def _round_trip(text: str) -> YAML:
    """A round-trip YAML whose indentation writes `text` back unchanged (the first
    one tried when none does)."""
    for mapping, sequence, offset in _INDENTS:
        yaml = _yaml(mapping, sequence, offset)
        out = io.StringIO()
        try:
            yaml.dump(yaml.load(text), out)
        except YAMLError:  # pragma: no cover - the file was read and validated
            break
        if out.getvalue() in (text, text + "\n"):
            return yaml
    return _yaml(*_INDENTS[0])


def _yaml(mapping: int, sequence: int, offset: int) -> YAML:
    yaml = YAML(typ="rt", pure=True)
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long line the file wrote on one
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    return yaml


def _without_comments(value: Any) -> Any:
    """A copied value without the comments that travelled with it: in the source
    block they may describe the lines after it."""
    if isinstance(value, CommentedBase):
        value.ca.items.clear()
        value.ca.comment = None
        value.ca.end = None
        children: Iterable[Any] = value.values() if isinstance(value, dict) else value  # type: ignore[assignment]
        for child in children:
            _without_comments(child)
    return value
