"""Where a finding of the check is shown: on the line the pull request changed.

A change to a group's slots or a holdout's members lives in the group's or holdout's
file, so it is shown on the line there that names the experiment (preferring a line
the other side does not have: the new one), not on the experiment's own file. A
deleted object is shown in the previous release's file, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from expc.check.previous import Side
from expc.check.rules import Change
from expc.diagnostics import Span
from expc.reading.model import Project


@dataclass(frozen=True)
class Place:
    span: Span
    notes: tuple[str, ...]
    previous: Span | None  # the object in the previous release, when shown as itself
    paste_into: str  # where an acknowledgement of the finding goes


@dataclass(frozen=True)
class Locator:
    current: Side
    previous: Side
    ledger: str  # the ledger's path, for findings about the release as a whole
    project_file: str  # project.yaml, for acknowledgements of deleted objects

    def place(self, key: str, change: Change) -> Place:
        current_span = _span(self.current, key)
        previous_span = _span(self.previous, key)
        located = self._in_other_files(key, change)
        if change.span is not None:
            span, side = change.span, self.current
        elif located is not None:
            span, side = located
        elif current_span is not None:
            span, side = current_span, self.current
        else:
            span, side = previous_span or Span(self.ledger), self.previous
        notes: tuple[str, ...] = ()
        if side is self.previous:
            notes = (f"this file is in {self.previous.label}; the change deletes it",)
        elif previous_span is not None and span == current_span and previous_span != span:
            notes = (f"previous: {previous_span}",)
        shown_as_itself = span in (current_span, previous_span)
        if side is self.current and change.span is None:
            paste_into = span.path
        else:
            paste_into = current_span.path if current_span else self.project_file
        return Place(span, notes, previous_span if shown_as_itself else None, paste_into)

    def environments_span(self) -> Span:
        """Where the current side declares its environments (project.yaml)."""
        snapshot = self.current.snapshot
        project = snapshot.objects.get("project") if snapshot is not None else None
        if project is None:
            return Span(self.project_file)
        if isinstance(project.definition, Project) and project.definition.environments:
            return project.span("environments")
        return project.span("key")

    def _in_other_files(self, key: str, change: Change) -> tuple[Span, Side] | None:
        for container in change.where:
            for side, other in ((self.current, self.previous), (self.previous, self.current)):
                span = _reference_span(side, container, key, _labels(other, container, key))
                if span is not None:
                    return span, side
        return None


def _span(side: Side, key: str) -> Span | None:
    if side.snapshot is None:
        return None
    loaded = side.snapshot.objects.get(key)
    return loaded.span("key") if loaded is not None else None


def _labels(side: Side, container: str, key: str) -> frozenset[str]:
    if side.snapshot is None:
        return frozenset()
    return frozenset(r.label for r in side.snapshot.catalog.references(container, key))


def _reference_span(side: Side, container: str, key: str, known: frozenset[str]) -> Span | None:
    """The place in `container`'s file that names `key` (a slot, a holdout member),
    preferring a reference that is not among `known` (the other side's): the new line."""
    if side.snapshot is None:
        return None
    catalog = side.snapshot.catalog
    for target in [key, *catalog.groups_above(key)]:  # a holdout may name a group above
        references = catalog.references(container, target)
        if references:
            return min(references, key=lambda r: r.label in known).span
    return _span(side, container)
