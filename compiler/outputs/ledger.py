"""`generated/ledger.json`: append-only memory of what releases contained (DESIGN §6).

It remembers every key and salt ever released, when each group or holdout went live
(first had a member that ran), by the content id of that release and, with declared
environments, in which environment (`live_in`), and every change a
person acknowledged, with the release that carried it. `expc compile` appends to it;
`expc check` reads the previous side's copy, so that facts survive deletions, and
fails a change that edits or drops past entries.

The ledger is a guard, so it is read strictly: a file of the wrong shape is a located
error (`LedgerError`), never silently an empty history. Its JSON Schema is published
as `generated/schema/ledger.schema.json`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from expc.diagnostics import Span
from expc.outputs.bundle_types import Bundle
from expc.reading.model import RAN

_Text = Annotated[str, Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Released(_Strict):
    kind: _Text
    salt: _Text
    first_release: _Text


class Acknowledged(_Strict):
    """A blocked change a person accepted, and the first release that carried it."""

    key: _Text
    rule: _Text
    fingerprint: _Text
    reason: _Text
    release: _Text


class Ledger(_Strict):
    version: Literal[1]
    released: dict[str, Released]
    # group or holdout -> the release in which it went live: without environments, and
    # before they were declared (which counts for every environment)
    live: dict[str, _Text]
    # environment -> group or holdout -> the release in which it went live there
    live_in: dict[str, dict[str, _Text]] = {}
    acknowledged: list[Acknowledged] = []

    @classmethod
    def new(cls) -> Ledger:
        """The history before the first release."""
        return cls(version=1, released={}, live={})

    @property
    def empty(self) -> bool:
        return not (self.released or self.live or self.live_in or self.acknowledged)

    def live_keys(self, environment: str | None) -> frozenset[str]:
        """What has gone live in an environment, or (for `None`, a release without
        environments) in any: the history recorded before environments counts for
        each of them, and a repository that stops declaring them forgets nothing."""
        if environment is None:
            found = set(self.live)
            for entries in self.live_in.values():
                found.update(entries)
            return frozenset(found)
        return frozenset(self.live) | frozenset(self.live_in.get(environment, {}))

    def released_salts(self) -> dict[str, str]:
        return {entry.salt: key for key, entry in self.released.items()}

    def to_json(self) -> dict[str, Any]:
        """The file's content; `live_in` and `acknowledged` appear once they hold one."""
        document = self.model_dump(mode="json", exclude={"acknowledged", "live_in"})
        if self.live_in:
            document["live_in"] = self.live_in
        if self.acknowledged:
            document["acknowledged"] = [a.model_dump(mode="json") for a in self.acknowledged]
        return document


class LedgerError(Exception):
    """A ledger file that is not a ledger; `span` points into it."""

    def __init__(self, span: Span, message: str) -> None:
        super().__init__(f"{span}: {message}")
        self.span = span
        self.message = message


def _fix(path: str) -> str:
    return f"restore it from git (`git checkout -- {path}`); only `expc compile` writes it"


def parse(text: str, path: str) -> Ledger:
    """A ledger from the text of its file, or `LedgerError` located in that text."""
    from expc.reading.source import SourceFile  # positions only for a broken file

    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise LedgerError(
            Span(path, error.lineno, error.colno),
            f"not valid JSON ({error.msg}); {_fix(path)}",
        ) from error
    except RecursionError as error:
        raise LedgerError(Span(path), f"nested too deeply; {_fix(path)}") from error
    try:
        return Ledger.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        line, column = SourceFile(path, text).locate(first["loc"])
        raise LedgerError(
            Span(path, line, column),
            f"not a ledger: {where}: {_plain(first['msg'])}; {_fix(path)}",
        ) from error


def schema() -> dict[str, Any]:
    return Ledger.model_json_schema()


def updated(ledger: Ledger, bundles: Sequence[Bundle]) -> Ledger:
    """The ledger after releasing `bundles` (one per environment, in promotion order):
    old entries untouched, new ones added. A group or holdout goes live in an
    environment when an experiment that requires it has run there. A release is named
    by its first bundle's content id."""
    release = bundles[0]["release"]["content_id"]
    released = dict(ledger.released)
    for flag in sorted(bundles[0]["flags"], key=lambda f: f["key"]):
        released.setdefault(
            # Built from a bundle this process compiled: already valid, so not checked
            # again (a hundred thousand entries took half a second to validate).
            flag["key"],
            Released.model_construct(
                kind=flag["kind"], salt=flag["bucketing"]["salt"], first_release=release
            ),
        )
    live = dict(ledger.live)
    live_in = {name: dict(entries) for name, entries in ledger.live_in.items()}
    for bundle in bundles:
        environment = bundle["release"].get("environment")
        # History from before environments were declared counts for every one of them.
        recorded = live if environment is None else live_in.setdefault(environment, {})
        for key in went_live(bundle):
            if key not in ledger.live:
                recorded.setdefault(key, bundle["release"]["content_id"])
    known = {(a.key, a.rule, a.fingerprint) for a in ledger.acknowledged}
    acknowledged = list(ledger.acknowledged)
    for entry in bundles[0].get("audit", []):
        identity = (entry["key"], entry["rule"], entry["fingerprint"])
        if identity not in known:
            known.add(identity)
            acknowledged.append(Acknowledged(**entry, release=release))
    return Ledger(
        version=1,
        released=dict(sorted(released.items())),
        live=dict(sorted(live.items())),
        live_in={
            name: dict(sorted(live_in[name].items())) for name in sorted(live_in) if live_in[name]
        },
        acknowledged=acknowledged,
    )


def went_live(bundle: Bundle) -> set[str]:
    """The groups and holdouts of `bundle` required by an experiment that has run."""
    containers = {f["key"] for f in bundle["flags"] if f["kind"] in ("mutex", "holdout")}
    return {
        requirement["flag"]
        for flag in bundle["flags"]
        if flag["kind"] == "experiment" and flag["state"] in RAN
        for requirement in flag["requires"]
        if requirement["flag"] in containers
    }


def edited_entries(previous: Ledger, current: Ledger) -> list[str]:
    """Past entries the current ledger changed or dropped."""
    problems = [
        f"released.{key}"
        for key, entry in sorted(previous.released.items())
        if current.released.get(key) != entry
    ]
    problems += [
        f"live.{key}"
        for key, entry in sorted(previous.live.items())
        if current.live.get(key) != entry
    ]
    problems += [
        f"live_in.{name}.{key}"
        for name, entries in sorted(previous.live_in.items())
        for key, entry in sorted(entries.items())
        if current.live_in.get(name, {}).get(key) != entry
    ]
    kept = set(current.acknowledged)
    problems += [
        f"acknowledged.{entry.key}.{entry.fingerprint}"
        for entry in previous.acknowledged
        if entry not in kept
    ]
    return problems


@dataclass(frozen=True)
class LedgerFile:
    """A side's ledger as read: its content, or that it is missing, or why it is broken."""

    ledger: Ledger
    missing: bool = False
    error: LedgerError | None = None

    @classmethod
    def absent(cls) -> LedgerFile:
        return cls(Ledger.new(), missing=True)


def read_text(text: str | None, path: str) -> LedgerFile:
    """`text` is None when the file does not exist."""
    if text is None:
        return LedgerFile.absent()
    try:
        return LedgerFile(parse(text, path))
    except LedgerError as error:
        return LedgerFile(Ledger.new(), error=error)


def _plain(message: str) -> str:
    # pydantic names its model classes ("or instance of Released"); users see JSON.
    return re.sub(r" or instance of \w+", "", message)
