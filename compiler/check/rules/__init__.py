"""The safety rules of `expc check` (DESIGN §6): registry and the pairing framework.

A rule is one small function over one old/new pair of views of an object; the
framework pairs objects by key over both sides and calls every rule for its kinds.
Its docstring is its documentation (`expc rules CODE`) and must show what it
breaks and what to do instead. Codes are stable and never reused.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from expc.check.views import RAN, View
from expc.diagnostics import Severity, Span


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


@dataclass
class Context:
    previous: dict[str, View]
    current: dict[str, View]
    # From the ledger of both sides: every key and salt ever released, groups gone live.
    released_keys: set[str] = field(default_factory=set)
    released_salts: dict[str, str] = field(default_factory=dict)
    live: set[str] = field(default_factory=set)
    # Release-wide facts for the rules of kind "release".
    ledger_edits: list[str] = field(default_factory=list)
    # Why the current ledger cannot be compared (missing or broken), with its place.
    ledger_problem: tuple[str, Span] | None = None
    unused_acknowledgements: list[tuple[str, str, str]] = field(default_factory=list)

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


RuleCheck = Callable[[str, View | None, View | None, Context], Iterator[Change]]


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    severity: Severity
    kinds: frozenset[str]
    check: RuleCheck

    @property
    def doc(self) -> str:
        return inspect.cleandoc(self.check.__doc__ or "")

    @property
    def summary(self) -> str:
        return " ".join(self.doc.split("\n\n", 1)[0].split())


RULES: dict[str, Rule] = {}


def rule(
    code: str, name: str, severity: Severity, kinds: tuple[str, ...]
) -> Callable[[RuleCheck], RuleCheck]:
    def register(check: RuleCheck) -> RuleCheck:
        if code in RULES or any(r.name == name for r in RULES.values()):
            raise RuntimeError(f"rule {code} {name} registered twice")
        RULES[code] = Rule(code, name, severity, frozenset(kinds), check)
        return check

    return register


def find(code_or_name: str) -> Rule | None:
    """A rule by its code or name, in any case (`c101`, `C101`)."""
    wanted = code_or_name.strip().lower()
    for candidate in RULES.values():
        if wanted in (candidate.code.lower(), candidate.name):
            return candidate
    return None


def run_rules(context: Context) -> Iterator[tuple[Rule, str, Change]]:
    """Every rule over every object of either side, in a stable order."""
    for key in sorted(set(context.previous) | set(context.current)):
        before, after = context.previous.get(key), context.current.get(key)
        kind = (after or before).kind  # type: ignore[union-attr]
        for code in sorted(RULES):
            found = RULES[code]
            if kind in found.kinds:
                for change in found.check(key, before, after, context):
                    yield found, key, change


def run_release_rules(context: Context) -> Iterator[tuple[Rule, str, Change]]:
    """The rules about the release as a whole (kind "release"), called once."""
    for code in sorted(RULES):
        found = RULES[code]
        if "release" in found.kinds:
            for change in found.check("", None, None, context):
                yield found, "", change


# Importing the families registers their rules.
from expc.check.rules import experiments, groups, lifecycle  # noqa: E402,F401
