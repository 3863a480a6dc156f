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
from expc.check.pairing import Comparison, Removed, pair
from expc.check.previous import Side, read_ledger_file, resolve
from expc.check.rules import Context, Raised, ReleaseFacts, run_release_rules, run_rules
from expc.diagnostics import CheckFacts, Code, Diagnostic, Severity, Span, make
from expc.errors import UsageError
from expc.outputs import ledger
from expc.outputs.layout import Layout
from expc.pipeline import snapshot as pipeline
from expc.render import Report


@dataclass(frozen=True)
class CheckResult:
    previous: Side
    current: Side
    findings: tuple[Diagnostic, ...]
    # every environment of the current side with the state it was judged against
    comparisons: tuple[Comparison, ...]
    removed: tuple[Removed, ...] = ()  # environments the change removes

    @property
    def blocking(self) -> bool:
        return any(f.blocking for f in self.findings)

    @property
    def environments(self) -> bool:
        """Whether the current side declares environments."""
        return self.comparisons[0].name is not None

    def report(self) -> Report:
        blocking = sum(f.blocking for f in self.findings)
        verdict = "blocked" if self.blocking else "safe"
        document: dict[str, object] = {
            "against": self.previous.label,
            "blocking": self.blocking,
            "changes": self.changed_objects(),
        }
        if self.environments:
            document["environments"] = {
                c.name: {"new": c.new, "changes": c.changed_objects()} for c in self.comparisons
            }
            document["removed_environments"] = [r.name for r in self.removed]
        return Report(
            self.findings,
            f"{verdict}: {blocking} blocking, {len(self.findings) - blocking} other finding(s) "
            f"against {self.previous.label}",
            items="findings",
            document=document,
        )

    def changed_objects(self) -> dict[str, list[str]]:
        """Keys added, removed and changed in any environment."""
        found: dict[str, set[str]] = {"added": set(), "removed": set(), "changed": set()}
        for comparison in self.comparisons:
            if comparison.new:
                continue  # all "added": the environment is, not its objects
            for what, keys in comparison.changed_objects().items():
                found[what].update(keys)
        return {what: sorted(keys) for what, keys in found.items()}


@dataclass(frozen=True)
class Settings:
    """Rule settings, read from the previous side: a change cannot switch off its own
    check (`project.yaml`: `check: {disable: [...], severity: {CODE: warning},
    environments: {staging: {blocking: false}}}`)."""

    disabled: frozenset[str] = frozenset()
    severities: tuple[tuple[str, str], ...] = ()
    relaxed: frozenset[str] = frozenset()  # environments whose findings are warnings

    @classmethod
    def of(cls, side: Side) -> Settings:
        project = side.snapshot.project if side.snapshot else None
        if project is None:
            return cls()
        check = project.check
        relaxed = frozenset(n for n, e in check.environments.items() if not e.blocking)
        return cls(frozenset(check.disable), tuple(check.severity.items()), relaxed)

    def enabled(self, code: Code) -> bool:
        return code.id not in self.disabled and code.name not in self.disabled

    def severity(
        self, code: Code, chosen_by_rule: Severity | None, environments: tuple[str, ...] = ()
    ) -> Severity:
        if chosen_by_rule is not None:  # a rule softening one finding (a notice) decides
            return chosen_by_rule
        named = dict(self.severities)
        override = named.get(code.id) or named.get(code.name)
        severity = Severity(override) if override else code.severity
        if severity is Severity.ERROR and environments and self.relaxes(environments):
            return Severity.WARNING
        return severity

    def relaxes(self, environments: tuple[str, ...]) -> bool:
        return all(name in self.relaxed for name in environments)


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
    current = Side.of("current", current_read, current_ledger)
    previous = resolve(definitions, against, current_read)
    locator = Locator(current, previous, ledger_shown, f"{shown}/project.yaml")
    return compare(current, previous, locator)


def compare(current: Side, previous: Side, locator: Locator) -> CheckResult:
    history = previous.ledger
    settings = Settings.of(previous)
    comparisons, removed = pair(current, previous)
    raised_in: list[tuple[str | None, list[Raised]]] = []
    for comparison in comparisons:
        context = Context(
            comparison.before,
            comparison.after,
            released_keys=frozenset(history.released),
            released_salts={
                **history.released_salts(),
                **{v.salt: k for k, v in comparison.before.items()},
            },
            live=comparison.live,
        )
        found = [r for r in run_rules(context) if settings.enabled(r.code)]
        raised_in.append((comparison.name, found))
    raised = _merged(raised_in, settings)
    early = ReleaseFacts(
        removed_environments=tuple(
            (r.name, r.running, locator.environments_span()) for r in removed
        )
    )
    raised += [r for r in run_release_rules(early, acceptable=True) if settings.enabled(r.code)]
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
        for r in run_release_rules(facts, acceptable=False)
        if settings.enabled(r.code)
    ]
    findings.sort(key=lambda f: (f.span.path, f.span.line, f.code.id, f.message))
    return CheckResult(previous, current, tuple(findings), tuple(comparisons), tuple(removed))


def _merged(raised_in: list[tuple[str | None, list[Raised]]], settings: Settings) -> list[Raised]:
    """One finding for a change found in several environments, naming them all (in
    promotion order), unless their settings make it blocking in some and not others."""
    merged: dict[tuple[object, ...], Raised] = {}
    for name, found in raised_in:
        for raised in found:
            code, key, change, _environments = raised
            identity = (
                code.id,
                key,
                change.message,
                acknowledgements.fingerprint(code.id, key, change),
                name is not None and settings.relaxes((name,)),
            )
            seen = merged.get(identity)
            where = (name,) if name is not None else ()
            if seen is None:
                merged[identity] = raised._replace(environments=where)
            else:
                merged[identity] = seen._replace(environments=seen.environments + where)
    return list(merged.values())


def _finding(
    raised: Raised,
    accepted: str | None,
    settings: Settings,
    locator: Locator,
    acceptable: bool = True,
) -> Diagnostic:
    code, key, change, environments = raised
    place = locator.place(key, change)
    facts = CheckFacts(
        key=key,
        fingerprint=acknowledgements.fingerprint(code.id, key, change, environments),
        paste_into=place.paste_into,
        previous=place.previous,
        accepted=accepted,
        acceptable=acceptable,
        environments=environments,
    )
    message = change.message
    notes = place.notes
    if environments:
        message += f" (in {', '.join(environments)})"
    severity = settings.severity(code, change.severity, environments)
    if severity is not settings.severity(code, change.severity):
        settings_of = " and ".join(f"check.environments.{name}" for name in environments)
        notes = (
            *notes,
            f"a warning, not an error: the previous release's project.yaml sets "
            f"blocking: false in {settings_of}",
        )
    return make(code, message, place.span, notes, check=facts, severity=severity)
