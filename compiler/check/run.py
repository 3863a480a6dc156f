"""`expc check --against REF` (DESIGN §6): compare two releases and judge the change."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expc import api
from expc.check.previous import Side, read_ledger_file, resolve
from expc.check.rules import Change, Context, Rule, run_release_rules, run_rules
from expc.check.views import View, expected_share, views
from expc.diagnostics import Severity, Span, printable
from expc.outputs import ledger
from expc.outputs.ledger import Ledger, LedgerFile
from expc.reading.model import Project


@dataclass(frozen=True)
class Finding:
    rule: Rule
    key: str
    severity: Severity
    message: str
    span: Span
    fingerprint: str
    previous_span: Span | None = None
    accepted: str | None = None  # the acknowledgement's reason
    deleted_from: str | None = None  # for an object this change deleted: the previous side
    paste_into: str = "project.yaml"  # the file an acknowledgement of it goes into

    @property
    def blocking(self) -> bool:
        return self.severity is Severity.ERROR and self.accepted is None

    @property
    def instead(self) -> str:
        doc = self.rule.doc
        return " ".join(doc.split("instead:", 1)[1].split()) if "instead:" in doc else ""

    def snippet(self) -> str:
        return (
            "acknowledge:\n"
            f"  - rule: {self.rule.code}\n"
            f'    fingerprint: "{self.fingerprint}"\n'
            "    reason: <why this is acceptable>"
        )


@dataclass
class CheckResult:
    previous: Side
    current: Side
    findings: list[Finding]
    before: dict[str, View] = field(default_factory=dict)
    after: dict[str, View] = field(default_factory=dict)

    @property
    def blocking(self) -> bool:
        return any(f.blocking for f in self.findings)

    def changed_objects(self) -> dict[str, list[str]]:
        """Keys added, removed and changed, by comparing the two bundles' flags."""
        old = {f["key"]: f for f in self.previous.bundle["flags"]}
        new = {f["key"]: f for f in self.current.bundle["flags"]}
        return {
            "added": sorted(set(new) - set(old)),
            "removed": sorted(set(old) - set(new)),
            "changed": sorted(k for k in set(old) & set(new) if old[k] != new[k]),
        }

    def affected_groups(self) -> list[str]:
        changed = self.changed_objects()
        touched = set(changed["added"]) | set(changed["removed"]) | set(changed["changed"])
        groups = set()
        for side in (self.before, self.after):
            for key in touched:
                view = side.get(key)
                if view is None:
                    continue
                if view.kind in ("mutex", "holdout"):
                    groups.add(key)
                groups.update(view.groups)
        return sorted(groups)

    def shares(self, group: str) -> list[tuple[str, str | None, str | None]]:
        """(experiment, share before, share after) for the members of a group."""
        from expc.check.views import percent

        members: set[str] = set()
        for side in (self.before, self.after):
            members.update(
                k
                for k, v in side.items()
                if v.kind == "experiment" and (group in v.groups or group in v.holdouts)
            )
        rows = []
        for key in sorted(members):
            old, new = self.before.get(key), self.after.get(key)
            rows.append(
                (
                    key,
                    percent(expected_share(old, self.before)) if old else None,
                    percent(expected_share(new, self.after)) if new else None,
                )
            )
        return rows


def fingerprint(code: str, key: str, change: Change) -> str:
    material = json.dumps([code, key, change.before, change.after], sort_keys=True, default=str)
    return hashlib.sha256(material.encode("utf-8")).hexdigest()[:16]


def _settings(side: Side) -> tuple[set[str], dict[str, str]]:
    """Rule settings from the previous side, so a change cannot switch off its own check."""
    project = side.snapshot.project if side.snapshot else None
    if not isinstance(project, Project):
        return set(), {}
    return set(project.check.disable), dict(project.check.severity)


def _span(side: Side | None, key: str) -> Span | None:
    if side is None or side.snapshot is None:
        return None
    loaded = side.snapshot.objects.get(key)
    return loaded.span("key") if loaded is not None else None


def _acknowledgements(side: Side) -> list[tuple[str, str, str, str]]:
    """(owner key, rule, fingerprint, reason) declared on the current side."""
    if side.snapshot is None:
        return []
    return [
        (key, a.rule, a.fingerprint, a.reason)
        for key, loaded in sorted(side.snapshot.objects.items())
        for a in loaded.definition.acknowledge
    ]


def _ledger_problem(current: LedgerFile, previous: Ledger, path: str) -> tuple[str, Span] | None:
    """Why the current ledger cannot stand for the history, if it cannot: deleting or
    breaking it is exactly the edit the ledger rule exists to catch."""
    if current.error is not None:
        return (
            f"generated/ledger.json is not a ledger ({current.error.message})",
            current.error.span,
        )
    if current.missing and not previous.empty:
        return (
            "generated/ledger.json is missing, but the previous release has one with "
            f"{len(previous.released)} released keys; restore it from git, only `expc "
            "compile` writes it",
            Span(path),
        )
    return None


def _relations(side: Side, container: str, key: str) -> set[str]:
    if side.snapshot is None or side.snapshot.catalog is None:
        return set()
    graph = side.snapshot.catalog.graph
    if not graph.has_edge(container, key):
        return set()
    return {r.relation for r in graph.edges[container, key]["references"]}


def _reference_span(
    side: Side | None, container: str, key: str, known: frozenset[str] = frozenset()
) -> Span | None:
    """The place in `container`'s file that names `key` (a slot, a holdout member),
    preferring a reference that is not among `known` (the other side's): the new line."""
    if side is None or side.snapshot is None or side.snapshot.catalog is None:
        return None
    catalog = side.snapshot.catalog
    for target in [key, *catalog.groups_above(key)]:  # a holdout may name a group above
        if catalog.graph.has_edge(container, target):
            references = catalog.graph.edges[container, target]["references"]
            return min(references, key=lambda r: r.relation in known).span  # type: ignore[no-any-return]
    return _span(side, container)


def _locate(change: Change, key: str, current: Side, previous: Side) -> tuple[Span, Side] | None:
    """Where a change that lives in another object's file is shown, and on which side."""
    for container in change.where:
        for side, other in ((current, previous), (previous, current)):
            known = frozenset(_relations(other, container, key))
            span = _reference_span(side, container, key, known)
            if span is not None:
                return span, side
    return None


def run(definitions: Path, against: str) -> CheckResult:
    if not against.strip():
        raise api.UsageError(
            "--against is empty; give a git revision, a definitions directory or a bundle file"
        )
    definitions_display = api.display_root(str(definitions))
    snapshot = api.load_snapshot(definitions, definitions_display)
    if snapshot.has_errors:
        raise InvalidDefinitionsError(snapshot)
    ledger_path = api.ledger_path(definitions)
    ledger_display = api.display_root(str(ledger_path))
    current_ledger = read_ledger_file(ledger_path, ledger_display)
    current = Side("current", api.bundle(snapshot), snapshot, current_ledger)
    previous = resolve(definitions, against, snapshot)
    before, after = views(previous.bundle), views(current.bundle)
    context = Context(
        before,
        after,
        released_keys=set(previous.ledger.released),
        released_salts={
            **previous.ledger.released_salts(),
            **{v.salt: k for k, v in before.items()},
        },
        live=set(previous.ledger.live),
        ledger_edits=[]
        if current_ledger.error or current_ledger.missing
        else ledger.edited_entries(previous.ledger, current_ledger.ledger),
        ledger_problem=_ledger_problem(current_ledger, previous.ledger, ledger_display),
    )
    disabled, severities = _settings(previous)
    declared = _acknowledgements(current)
    raw = [(found, change.about or key, change) for found, key, change in run_rules(context)]
    raw = [item for item in raw if not _disabled(item[0], disabled)]
    matched, unused = match_acknowledgements(raw, declared)
    context.unused_acknowledgements = unused
    release_wide = [
        (found, change.about or key, change) for found, key, change in run_release_rules(context)
    ]
    findings = []
    for found, key, change in [*raw, *[r for r in release_wide if not _disabled(r[0], disabled)]]:
        severity = change.severity or found.severity
        override = severities.get(found.code) or severities.get(found.name)
        if override is not None and change.severity is None:
            severity = Severity(override)
        current_span = _span(current, key)
        previous_span = _span(previous, key)
        located = _locate(change, key, current, previous)
        if change.span is not None:
            span, side = change.span, current
        elif located is not None:
            span, side = located
        elif current_span is not None:
            span, side = current_span, current
        else:
            span, side = previous_span or Span(ledger_display), previous
        deleted_from = previous.label if side is previous else None
        if span != current_span and span != previous_span:
            previous_span = None  # shown in another object's file: the note would mislead
        paste_into = (
            span.path
            if side is current and change.span is None
            else (current_span.path if current_span else f"{definitions_display}/project.yaml")
        )
        findings.append(
            Finding(
                found,
                key,
                severity,
                printable(change.message),
                span,
                fingerprint(found.code, key, change),
                previous_span,
                matched.get(id(change)),
                deleted_from,
                paste_into,
            )
        )
    findings.sort(key=lambda f: (f.span.path, f.span.line, f.rule.code, f.message))
    return CheckResult(previous, current, findings, before, after)


def _disabled(found: Rule, disabled: set[str]) -> bool:
    return found.code in disabled or found.name in disabled


Declared = tuple[str, str, str, str]  # (owner key, rule, fingerprint, reason)


def match_acknowledgements(
    raised: list[tuple[Rule, str, Change]], declared: list[Declared]
) -> tuple[dict[int, str], list[tuple[str, str, str]]]:
    """Which findings an acknowledgement accepts (by `id` of the change: its reason),
    and the acknowledgements that accept nothing (owner, rule, fingerprint)."""
    accepted: dict[int, str] = {}
    used: set[int] = set()
    for found, key, change in raised:
        print_ = fingerprint(found.code, key, change)
        for index, (owner, rule_name, ack_print, reason) in enumerate(declared):
            if (
                rule_name in (found.code, found.name)
                and ack_print == print_
                and owner in (key, *change.where, "project")
            ):
                accepted[id(change)] = printable(reason)
                used.add(index)
    unused = [
        (owner, rule_name, ack_print)
        for index, (owner, rule_name, ack_print, _reason) in enumerate(declared)
        if index not in used
    ]
    return accepted, unused


class InvalidDefinitionsError(Exception):
    def __init__(self, snapshot: api.Snapshot) -> None:
        super().__init__("the definitions do not validate")
        self.snapshot = snapshot


def as_json(result: CheckResult) -> dict[str, Any]:
    return {
        "version": 1,
        "against": result.previous.label,
        "blocking": result.blocking,
        "changes": result.changed_objects(),
        "findings": [
            {
                "code": f.rule.code,
                "name": f.rule.name,
                "severity": str(f.severity),
                "object": f.key,
                "message": f.message,
                "path": f.span.path,
                "line": f.span.line,
                "column": f.span.column,
                "previous": None if f.previous_span is None else str(f.previous_span),
                "fingerprint": f.fingerprint,
                "accepted": f.accepted,
                "instead": f.instead,
            }
            for f in result.findings
        ],
    }
