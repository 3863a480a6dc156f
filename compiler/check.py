"""`expc check --against REF` (DESIGN §6): compare two releases and judge the change."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compiler import api, ledger
from compiler.diagnostics import Severity, Span
from compiler.model import Project
from compiler.previous import LEDGER_NAME, Side, read_ledger, resolve
from compiler.rules import Change, Context, Rule, run_release_rules, run_rules
from compiler.views import View, expected_share, views


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
            f"    fingerprint: {self.fingerprint}\n"
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
        from compiler.views import percent

        members: set[str] = set()
        for side in (self.before, self.after):
            members.update(k for k, v in side.items() if group in v.groups or group in v.holdouts)
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


def run(definitions: Path, against: str) -> CheckResult:
    snapshot = api.load_snapshot(definitions, api.display_root(str(definitions)))
    if snapshot.has_errors:
        raise InvalidDefinitionsError(snapshot)
    current_ledger_path = definitions.parent / "generated" / LEDGER_NAME
    current = Side("current", api.bundle(snapshot), snapshot, read_ledger(current_ledger_path))
    previous = resolve(definitions, against, snapshot)
    before, after = views(previous.bundle), views(current.bundle)
    context = Context(
        before,
        after,
        released_keys=set(previous.ledger.get("released", {})),
        released_salts={
            **ledger.released_salts(previous.ledger),
            **{v.salt: k for k, v in before.items()},
        },
        live=set(previous.ledger.get("live", {})),
        ledger_edits=ledger.edited_entries(previous.ledger, current.ledger)
        if current.ledger
        else [],
    )
    disabled, severities = _settings(previous)
    acknowledgements = _acknowledgements(current)
    used: set[int] = set()
    findings: list[Finding] = []
    results = list(run_rules(context))

    def record(found: Rule, key: str, change: Change) -> None:
        key = change.about or key
        if found.code in disabled or found.name in disabled:
            return
        severity = change.severity or found.severity
        override = severities.get(found.code) or severities.get(found.name)
        if override is not None and change.severity is None:
            severity = Severity(override)
        print_ = fingerprint(found.code, key, change)
        accepted = None
        for index, (owner, rule_name, ack_print, reason) in enumerate(acknowledgements):
            if (
                rule_name in (found.code, found.name)
                and ack_print == print_
                and owner in (key, "project")
            ):
                accepted = reason
                used.add(index)
        current_span = _span(current, key)
        previous_span = _span(previous, key)
        span = current_span or previous_span or Span(str(current_ledger_path))
        deleted_from = previous.label if current_span is None and previous_span else None
        findings.append(
            Finding(
                found,
                key,
                severity,
                change.message,
                span,
                print_,
                previous_span,
                accepted,
                deleted_from,
            )
        )

    for found, key, change in results:
        record(found, key, change)
    context.unused_acknowledgements = [
        (owner, rule_name, ack_print)
        for index, (owner, rule_name, ack_print, _reason) in enumerate(acknowledgements)
        if index not in used
    ]
    for found, key, change in run_release_rules(context):
        record(found, key, change)
    findings.sort(key=lambda f: (f.span.path, f.span.line, f.rule.code, f.message))
    return CheckResult(previous, current, findings, before, after)


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
