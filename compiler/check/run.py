"""`expc check --against REF` (DESIGN §6): compare two releases and judge the change.

    read both sides -> views -> object rules -> acknowledgements matched
        -> release-wide rules -> every finding a located diagnostic

Each step takes what the one before returned; nothing is set aside for a later step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from expc.check import acknowledgements
from expc.check.locate import Locator
from expc.check.previous import Side, read_ledger_file, resolve
from expc.check.rules import Context, Raised, ReleaseFacts, run_release_rules, run_rules
from expc.check.views import View, expected_share, views
from expc.diagnostics import CheckFacts, Code, Diagnostic, Severity, Span, make
from expc.errors import UsageError
from expc.outputs import ledger
from expc.outputs.layout import Layout
from expc.outputs.release import bundle_of
from expc.pipeline import snapshot as pipeline
from expc.render import Report
from expc.shares import percent


@dataclass(frozen=True)
class CheckResult:
    previous: Side
    current: Side
    findings: tuple[Diagnostic, ...]
    before: dict[str, View]
    after: dict[str, View]

    @property
    def blocking(self) -> bool:
        return any(f.blocking for f in self.findings)

    def report(self) -> Report:
        blocking = sum(f.blocking for f in self.findings)
        verdict = "blocked" if self.blocking else "safe"
        return Report(
            self.findings,
            f"{verdict}: {blocking} blocking, {len(self.findings) - blocking} other finding(s) "
            f"against {self.previous.label}",
            items="findings",
            document={
                "against": self.previous.label,
                "blocking": self.blocking,
                "changes": self.changed_objects(),
            },
        )

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
        """(experiment, share before, share after) for the experiments of a group."""
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


@dataclass(frozen=True)
class Settings:
    """Rule settings, read from the previous side: a change cannot switch off its own
    check (`project.yaml`: `check: {disable: [...], severity: {CODE: warning}}`)."""

    disabled: frozenset[str] = frozenset()
    severities: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, side: Side) -> Settings:
        project = side.snapshot.project if side.snapshot else None
        if project is None:
            return cls()
        return cls(frozenset(project.check.disable), tuple(project.check.severity.items()))

    def enabled(self, code: Code) -> bool:
        return code.id not in self.disabled and code.name not in self.disabled

    def severity(self, code: Code, chosen_by_rule: Severity | None) -> Severity:
        if chosen_by_rule is not None:  # a rule softening one finding (a notice) decides
            return chosen_by_rule
        named = dict(self.severities)
        override = named.get(code.id) or named.get(code.name)
        return Severity(override) if override else code.severity


class InvalidDefinitionsError(Exception):
    """The current definitions do not validate: their diagnostics say why (exit 1)."""

    def __init__(self, rejected: pipeline.Rejected) -> None:
        super().__init__("the definitions do not validate")
        self.rejected = rejected


def _ledger_problem(
    current: ledger.LedgerFile, previous: ledger.Ledger, path: str
) -> tuple[str, Span] | None:
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


def run(definitions: Path, against: str) -> CheckResult:
    """Read the current definitions, resolve the previous release, compare them."""
    if not against.strip():
        raise UsageError(
            "--against is empty; give a git revision, a definitions directory or a bundle file"
        )
    shown = pipeline.shown_path(str(definitions))
    current_read = pipeline.read(definitions, shown)
    if isinstance(current_read, pipeline.Rejected):
        raise InvalidDefinitionsError(current_read)
    ledger_path = Layout.beside(definitions).ledger
    ledger_shown = pipeline.shown_path(str(ledger_path))
    current_ledger = read_ledger_file(ledger_path, ledger_shown)
    current = Side("current", bundle_of(current_read), current_read, current_ledger)
    previous = resolve(definitions, against, current_read)
    locator = Locator(current, previous, ledger_shown, f"{shown}/project.yaml")
    return compare(current, previous, locator)


def compare(current: Side, previous: Side, locator: Locator) -> CheckResult:
    before, after = views(previous.bundle), views(current.bundle)
    history = previous.ledger
    context = Context(
        before,
        after,
        released_keys=frozenset(history.released),
        released_salts={**history.released_salts(), **{v.salt: k for k, v in before.items()}},
        live=frozenset(history.live),
    )
    settings = Settings.of(previous)
    raised = [r for r in run_rules(context) if settings.enabled(r.code)]
    declared = acknowledgements.declared_in(current.snapshot) if current.snapshot else []
    matching = acknowledgements.match(raised, declared)
    current_ledger = current.ledger_file
    facts = ReleaseFacts(
        ledger_edits=()
        if current_ledger.error or current_ledger.missing
        else tuple(ledger.edited_entries(history, current_ledger.ledger)),
        ledger_problem=_ledger_problem(current_ledger, history, locator.ledger),
        unused_acknowledgements=tuple((a.owner, a.rule, a.fingerprint) for a in matching.unused),
    )
    findings = [
        _finding(r, matching.accepted.get(position), settings, locator)
        for position, r in enumerate(raised)
    ]
    # The release as a whole (the ledger, unused acknowledgements) cannot be accepted:
    # acknowledging a broken history would switch off the guard it is.
    findings += [
        _finding(r, None, settings, locator, acceptable=False)
        for r in run_release_rules(facts)
        if settings.enabled(r.code)
    ]
    findings.sort(key=lambda f: (f.span.path, f.span.line, f.code.id, f.message))
    return CheckResult(previous, current, tuple(findings), before, after)


def _finding(
    raised: Raised,
    accepted: str | None,
    settings: Settings,
    locator: Locator,
    acceptable: bool = True,
) -> Diagnostic:
    code, key, change = raised
    place = locator.place(key, change)
    facts = CheckFacts(
        key=key,
        fingerprint=acknowledgements.fingerprint(code.id, key, change),
        paste_into=place.paste_into,
        previous=place.previous,
        accepted=accepted,
        acceptable=acceptable,
    )
    return make(
        code,
        change.message,
        place.span,
        place.notes,
        check=facts,
        severity=settings.severity(code, change.severity),
    )
