"""The safety rules of `expc check` (DESIGN §6): registry and the pairing framework.

A rule is one small function over one old/new pair of views of an object; the
framework pairs objects by key over both sides and calls every rule for its kinds,
with the pair narrowed to what the rule reads: `Changed` (on both sides), `Added`,
`Removed`, or `Present` (added or changed). A rule may also say `when` it applies
(`running_on_both_sides`). Release-wide rules look at the release as a whole instead.

A rule's docstring is its documentation (`expc rules CODE`) and must show what it
breaks and what to do instead; its code joins the one registry of codes
(`diagnostics.CODES`). Codes are stable and never reused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from expc.check.views import View
from expc.diagnostics import Code, Severity, Span, define, find_code
from expc.reading.model import RAN


@dataclass(frozen=True)
class Change:
    """What a rule found: the message, and the values its fingerprint covers."""

    message: str
    before: Any = None
    after: Any = None
    severity: Severity | None = None  # a rule may soften one finding (e.g. a notice)
    about: str | None = None  # for release-wide rules: the object the finding is about
    # Objects whose files hold the change (a group's slot list, a holdout's members), in
    # order of preference: the finding is located on the line of that file that names
    # the object, where the pull request changed it, rather than on the object's own.
    where: tuple[str, ...] = ()
    span: Span | None = None  # an exact place when the rule knows it (a ledger line)


@dataclass(frozen=True)
class Context:
    """Both sides of the check and the history the rules consult; never changes."""

    previous: dict[str, View]
    current: dict[str, View]
    # From the previous side's ledger: every key and salt ever released, groups gone live.
    released_keys: frozenset[str] = frozenset()
    released_salts: dict[str, str] = field(default_factory=dict)
    live: frozenset[str] = frozenset()

    def has_run(self, key: str) -> bool:
        view = self.previous.get(key)
        return view is not None and view.state in RAN

    def is_live(self, key: str) -> bool:
        """A group or holdout is live once any member ran in a release."""
        if key in self.live:
            return True
        view = self.previous.get(key)
        if view is None:
            return False
        if view.kind == "mutex":
            return any(self.has_run(m) for members in view.members.values() for m in members)
        return any(key in v.holdouts and self.has_run(v.key) for v in self.previous.values())


@dataclass(frozen=True)
class ReleaseFacts:
    """What the release-wide rules look at, once the object rules have run."""

    # Environments the change removes: (name, experiments running there before,
    # where the current side declares its environments).
    removed_environments: tuple[tuple[str, tuple[str, ...], Span], ...] = ()
    ledger_edits: tuple[str, ...] = ()
    # Why the current ledger cannot be compared (missing or broken), with its place.
    ledger_problem: tuple[str, Span] | None = None
    # Acknowledgements that matched no finding: (owner key, rule, fingerprint).
    unused_acknowledgements: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True)
class Changed:
    """An object on both sides."""

    key: str
    before: View
    after: View


@dataclass(frozen=True)
class Added:
    """An object only on the current side."""

    key: str
    after: View


@dataclass(frozen=True)
class Removed:
    """An object only on the previous side."""

    key: str
    before: View


@dataclass(frozen=True)
class Present:
    """An object on the current side, new or not."""

    key: str
    before: View | None
    after: View


Pair = Changed | Added | Removed | Present


def running_on_both_sides(pair: Changed) -> bool:
    return pair.before.running and pair.after.running


@dataclass(frozen=True)
class Rule:
    code: Code
    kinds: frozenset[str]
    on: type[Pair]
    when: Callable[[Any], bool] | None
    check: Callable[[Any, Context], Iterator[Change]]

    def pair(self, key: str, before: View | None, after: View | None) -> Pair | None:
        """The pair this rule reads, or None when the object is not of that shape."""
        if self.on is Changed and before is not None and after is not None:
            return Changed(key, before, after)
        if self.on is Added and before is None and after is not None:
            return Added(key, after)
        if self.on is Removed and before is not None and after is None:
            return Removed(key, before)
        if self.on is Present and after is not None:
            return Present(key, before, after)
        return None


@dataclass(frozen=True)
class ReleaseRule:
    code: Code
    check: Callable[[ReleaseFacts], Iterator[Change]]
    # Whether an acknowledgement can accept its findings: not for those about the
    # ledger or acknowledgements themselves, which would switch off the guard.
    acceptable: bool = False


RULES: dict[str, Rule] = {}
RELEASE_RULES: dict[str, ReleaseRule] = {}


def rule(
    code: str,
    name: str,
    severity: Severity,
    kinds: tuple[str, ...],
    on: type[Pair],
    when: Callable[[Any], bool] | None = None,
) -> Callable[[Callable[[Any, Context], Iterator[Change]]], Any]:
    """Register a rule over one object's pair of views; its docstring documents it."""

    def register(check: Callable[[Any, Context], Iterator[Change]]) -> Any:
        registered = define(code, name, severity, _summary(check), check.__doc__ or "")
        RULES[code] = Rule(registered, frozenset(kinds), on, when, check)
        return check

    return register


def release_rule(
    code: str, name: str, severity: Severity, acceptable: bool = False
) -> Callable[[Callable[[ReleaseFacts], Iterator[Change]]], Any]:
    """Register a rule about the release as a whole (environments, the ledger,
    acknowledgements)."""

    def register(check: Callable[[ReleaseFacts], Iterator[Change]]) -> Any:
        registered = define(code, name, severity, _summary(check), check.__doc__ or "")
        RELEASE_RULES[code] = ReleaseRule(registered, check, acceptable)
        return check

    return register


def _summary(check: Callable[..., Any]) -> str:
    return " ".join((check.__doc__ or "").strip().split("\n\n", 1)[0].split())


class Raised(NamedTuple):
    """One change a rule found, about one object, and the environments it holds in
    (none in a release without environments)."""

    code: Code
    key: str
    change: Change
    environments: tuple[str, ...] = ()


def run_rules(context: Context) -> Iterator[Raised]:
    """Every object rule over every object of either side, in a stable order."""
    for key in sorted(set(context.previous) | set(context.current)):
        before, after = context.previous.get(key), context.current.get(key)
        kind = (after or before).kind  # type: ignore[union-attr]
        for code in sorted(RULES):
            found = RULES[code]
            pair = found.pair(key, before, after) if kind in found.kinds else None
            if pair is None or (found.when is not None and not found.when(pair)):
                continue
            for change in found.check(pair, context):
                yield Raised(found.code, change.about or key, change)


def run_release_rules(facts: ReleaseFacts, acceptable: bool) -> Iterator[Raised]:
    """The release-wide rules whose findings can (or cannot) be acknowledged."""
    for code in sorted(RELEASE_RULES):
        if RELEASE_RULES[code].acceptable != acceptable:
            continue
        for change in RELEASE_RULES[code].check(facts):
            yield Raised(RELEASE_RULES[code].code, change.about or "", change)


def documented(code_or_name: str) -> Code | None:
    """A rule's code by its code or name, in any case; None for other codes."""
    code = find_code(code_or_name)
    if code is None or (code.id not in RULES and code.id not in RELEASE_RULES):
        return None
    return code


def all_rules() -> list[Code]:
    codes = [r.code for r in RULES.values()] + [r.code for r in RELEASE_RULES.values()]
    return sorted(codes, key=lambda code: code.id)


# Importing the families registers their rules.
from expc.check.rules import experiments, groups, lifecycle  # noqa: E402,F401
