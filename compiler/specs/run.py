"""Specs run against the current definitions: each environment's bundle is compiled in
memory (never read from a stale `generated/`), every case is evaluated, `at` users are
found, and `shares` and `exclusive` are checked on one simulation per environment.

A spec that cannot run (a name the bundle lacks, a malformed matrix, no user for an
`at`) makes the whole run `Invalid`, with every such problem located; otherwise the
run is a list of outcomes, passed or failed, each failure one located diagnostic.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

from expc.diagnostics import Diagnostic, Span, make, sorted_diagnostics
from expc.outputs.bundle_types import Bundle, Flag
from expc.outputs.release import bundle_of
from expc.pipeline.link import Catalog
from expc.pipeline.snapshot import Snapshot
from expc.pipeline.traffic import effective_share
from expc.sdk.evaluate import Evaluator, Result
from expc.shares import percent
from expc.specs import codes, draws
from expc.specs.expand import Concrete, Expected, expand, shown_value
from expc.specs.load import SpecFile
from expc.specs.resolve import Names, case_problems, check_problems, environments
from expc.specs.simulation import Counts, Simulations
from expc.tools.simulate import Share

CASE, SHARE, EXCLUSIVE = "case", "share", "exclusive"


@dataclass(frozen=True)
class Outcome:
    """One check of a spec in one environment, passed or failed."""

    spec: str
    span: Span  # where it is written
    environment: str | None
    kind: str  # CASE, SHARE or EXCLUSIVE
    title: str
    detail: str = ""  # the id found for `at`, the share observed
    failures: tuple[Diagnostic, ...] = ()
    user: Mapping[str, Any] | None = None  # a case's user, as evaluated

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass(frozen=True)
class SpecRun:
    files: tuple[str, ...]  # the spec files read
    outcomes: tuple[Outcome, ...]
    users: int  # simulated users per environment; 0 when nothing was simulated
    environments: tuple[str, ...] = ()  # those that ran, when the definitions declare any
    searched: tuple[str, ...] = ()  # where spec files were looked for

    @property
    def failures(self) -> list[Diagnostic]:
        return [d for outcome in self.outcomes for d in outcome.failures]

    @property
    def passed(self) -> int:
        return sum(outcome.passed for outcome in self.outcomes)

    @property
    def failed(self) -> int:
        return len(self.outcomes) - self.passed


@dataclass(frozen=True)
class Invalid:
    """Specs that cannot run; nothing was run."""

    diagnostics: tuple[Diagnostic, ...]


@dataclass
class _Environment:
    """One environment's bundle and what is made from it, each made once."""

    name: str | None
    bundle: Bundle
    names: Names
    evaluator: Evaluator = field(init=False)

    def __post_init__(self) -> None:
        self.evaluator = Evaluator.from_compiled(self.bundle)


@dataclass(frozen=True)
class _Planned:
    spec: SpecFile
    environment: str | None
    cases: list[Concrete]


def run(
    snapshot: Snapshot,
    specs: Sequence[SpecFile],
    environment: str | None,
    selects: Callable[[str], bool],
    users: int,
    unreadable: Sequence[Diagnostic] = (),
) -> SpecRun | Invalid:
    """Every spec (in `environment` alone when one is given) against the definitions;
    only the checks whose name `selects` accepts run. `unreadable` are the problems of
    spec files that could not be read: with any, the rest are checked but not run."""
    kinds = {key: loaded.definition.kind for key, loaded in snapshot.objects.items()}
    prepared: dict[str | None, _Environment] = {}

    def prepare(name: str | None) -> _Environment:
        if name not in prepared:
            bundle = bundle_of(snapshot, name)
            prepared[name] = _Environment(name, bundle, Names(bundle, kinds))
        return prepared[name]

    problems: list[Diagnostic] = list(unreadable)
    plans: list[_Planned] = []
    for spec in specs:
        named, found = environments(spec, snapshot.names)
        cases, malformed = expand(spec)
        problems += found + malformed
        for name in named:
            if environment is not None and name != environment:
                continue
            names = prepare(name).names
            for case in cases:
                problems += case_problems(names, case)
            problems += check_problems(names, spec)
            plans.append(_Planned(spec, name, cases))
    if problems:
        return Invalid(tuple(sorted_diagnostics(problems)))
    outcomes: list[Outcome] = []
    checks = {id(plan): list(_checks(plan.spec, selects)) for plan in plans}
    simulations = Simulations(users, _simulated_per_environment(plans, checks))
    for plan in plans:
        env = prepare(plan.environment)
        for case in plan.cases:
            if selects(f"{plan.spec.path} {case.title}"):
                outcome = _case(env, case)
                if isinstance(outcome, Diagnostic):
                    problems.append(outcome)
                else:
                    outcomes.append(outcome)
        if checks[id(plan)]:
            catalog = snapshot.environment(plan.environment).catalog
            outcomes += _simulated(env, plan.spec, checks[id(plan)], simulations, catalog)
    if problems:
        return Invalid(tuple(sorted_diagnostics(problems)))
    return SpecRun(
        tuple(spec.path for spec in specs),
        tuple(outcomes),
        users if any(checks.values()) else 0,
        tuple(name for name in snapshot.names if any(p.environment == name for p in plans)),
    )


# --- cases --------------------------------------------------------------------------


def _case(env: _Environment, case: Concrete) -> Outcome | Diagnostic:
    """The case evaluated; a Diagnostic (the spec cannot run) when no user lands in
    its `at` ranges."""
    spec = case.spec
    user = dict(case.user)
    detail = drawn = ""
    if case.at:
        chosen = [draws.draw(env.names.flags[flag], p) for flag, p in case.at.items()]
        found = draws.user_for(chosen)
        if found is None:
            return make(
                codes.NO_USER_FOUND,
                f"{case.title}: these draws together hold about 1 in "
                f"{round(1 / draws.together(chosen)):,} users, too few to find one among "
                f"{draws.SEARCH_LIMIT:,} ids; name fewer flags or wider ranges",
                spec.span(*case.place, "at"),
            )
        for flag in case.at:
            user[env.names.flags[flag]["bucketing"]["by"]] = found
        landed = ", ".join(f"{d.flag} {_percent_text(case.at[d.flag])}: {d.lands}" for d in chosen)
        detail = f"user {found} ({landed})"
        drawn = f"at: {landed}; expc chose the id {found}"
    results = env.evaluator.evaluate(user)
    failures = []
    for expected in case.expected:
        actual = results[expected.flag]
        if not _meets(expected, actual):
            failures.append(_case_failure(env, case, user, expected, actual, drawn))
    title_span = spec.span(*case.place)
    return Outcome(spec.path, title_span, env.name, CASE, case.title, detail, tuple(failures), user)


def _meets(expected: Expected, actual: Result) -> bool:
    if "variant" in expected.given and actual.variant != expected.variant:
        return False
    if "reason" in expected.given and actual.reason != expected.reason:
        return False
    return "payload" not in expected.given or _same(actual.payload, expected.payload)


def _same(one: Any, other: Any) -> bool:
    # As JSON: `true` is not `1`, which Python's == would say it is.
    return json.dumps(one, sort_keys=True) == json.dumps(other, sort_keys=True)


def _result_text(result: Result, with_payload: bool) -> str:
    what = "not enrolled" if result.variant is None else f"variant {result.variant}"
    text = f"{what}, reason {result.reason}"
    if with_payload:
        text += f", payload {shown_value(result.payload)}"
    return text


def _case_failure(
    env: _Environment,
    case: Concrete,
    user: Mapping[str, Any],
    expected: Expected,
    actual: Result,
    drawn: str,
) -> Diagnostic:
    with_payload = "payload" in expected.given
    got = _result_text(actual, with_payload)
    notes = [
        f"case: {case.title}" + (f" (in {env.name})" if env.name else ""),
        f"user: {shown_value(dict(user))}",
        *([drawn] if drawn else []),
        f"expected: {expected.describe()}",
        f"actual:   {got}",
        *_trace(env.evaluator, env.names.flags, user, expected.flag),
    ]
    return make(
        codes.CASE_FAILED,
        f"{expected.flag}: expected {expected.describe()}; got {got}",
        case.spec.span(*expected.place, key=True),
        notes,
    )


def _chain(flags: Mapping[str, Flag], key: str) -> set[str]:
    """The flag and every flag it requires, directly or not."""
    chain: set[str] = set()
    pending = [key]
    while pending:
        current = pending.pop()
        if current not in chain:
            chain.add(current)
            pending.extend(r["flag"] for r in flags[current]["requires"])
    return chain


def _trace(
    evaluator: Evaluator, flags: Mapping[str, Flag], user: Mapping[str, Any], *keys: str
) -> list[str]:
    """`expc eval --explain` for these flags and those they require, in order."""
    chain = set().union(*(_chain(flags, key) for key in keys))
    _results, steps = evaluator.explain(dict(user))
    width = max(len(key) for key in chain)
    what = "they require" if len(keys) > 1 else "it requires"
    lines = [f"trace ({', '.join(keys)} and what {what}):"]
    lines += [f"  {s.flag:{width}}  {s.what:9} {s.detail}" for s in steps if s.flag in chain]
    return lines


# --- shares and exclusive -----------------------------------------------------------


@dataclass(frozen=True)
class _Check:
    kind: str
    index: int
    title: str


def _percent_text(value: Decimal) -> str:
    return f"{value.normalize():f}%"


def _checks(spec: SpecFile, selects: Callable[[str], bool]) -> Iterator[_Check]:
    for index, share in enumerate(spec.spec.shares):
        if share.variant is not None and share.share is not None:
            what = f"variant {share.variant} {_percent_text(share.share)}"
        else:
            assert share.enrolled is not None
            what = f"enrolled {_percent_text(share.enrolled)}"
        title = share.description or f"share: {share.flag} {what}"
        if selects(f"{spec.path} {title}"):
            yield _Check(SHARE, index, title)
    for index, group in enumerate(spec.spec.exclusive):
        title = f"exclusive: {', '.join(group)}"
        if selects(f"{spec.path} {title}"):
            yield _Check(EXCLUSIVE, index, title)


def _simulated_per_environment(
    plans: Sequence[_Planned], checks: Mapping[int, list[_Check]]
) -> dict[str | None, tuple[set[str], set[tuple[str, ...]]]]:
    """Every flag of a `shares` check and every `exclusive` list, per environment: one
    simulation per environment serves all of its specs. Users are evaluated once for
    the holdouts and groups several specs share (the most of the time goes there)."""
    wanted: dict[str | None, tuple[set[str], set[tuple[str, ...]]]] = {}
    for plan in plans:
        keys, lists = wanted.setdefault(plan.environment, (set(), set()))
        for check in checks[id(plan)]:
            if check.kind == SHARE:
                keys.add(plan.spec.spec.shares[check.index].flag)
            else:
                lists.add(tuple(plan.spec.spec.exclusive[check.index]))
    return wanted


def _simulated(
    env: _Environment,
    spec: SpecFile,
    checks: list[_Check],
    simulations: Simulations,
    catalog: Catalog,
) -> list[Outcome]:
    counts = simulations.counts(env.name, env.bundle)
    outcomes = []
    for check in checks:
        if check.kind == SHARE:
            outcomes.append(_share(env, spec, check, counts, catalog))
        else:
            outcomes.append(_exclusive(env, spec, check, counts))
    return outcomes


def _share(
    env: _Environment, spec: SpecFile, check: _Check, counts: Counts, catalog: Catalog
) -> Outcome:
    declared = spec.spec.shares[check.index]
    expected = declared.share if declared.variant is not None else declared.enrolled
    assert expected is not None
    if declared.variant is not None:
        observed = counts.variants[declared.flag].get(declared.variant, 0)
        what = f"variant {declared.variant}"
    else:
        observed = counts.enrolled(declared.flag)
        what = "enrolled"
    share = Share(declared.flag, what, observed, counts.users, Fraction(expected) / 100)
    low, high = share.interval
    detail = (
        f"observed {share.share:.2%} of {counts.users:,} simulated users, "
        f"interval [{low:.2%}, {high:.2%}]"
    )
    span = spec.span("shares", check.index)
    failures: tuple[Diagnostic, ...] = ()
    if not share.ok:
        notes = [f"simulated users: sim-0 .. sim-{counts.users - 1}, targeting off"]
        experiment = declared.flag in catalog.experiments() and declared.variant is None
        if experiment and not catalog.experiment(declared.flag).prerequisites:
            given = percent(effective_share(catalog, declared.flag), trim=True)
            notes.append(
                f"the definitions give {declared.flag} {given} of all users once it "
                "runs (expc traffic)"
            )
        failures = (
            make(
                codes.SHARE_OUTSIDE,
                f"{declared.flag} {what}: expected {_percent_text(expected)} of all users; "
                f"observed {share.share:.2%} of {counts.users:,} simulated users, whose "
                f"interval [{low:.2%}, {high:.2%}] (z = 4) does not hold it",
                span,
                notes,
            ),
        )
    return Outcome(spec.path, span, env.name, SHARE, check.title, detail, failures)


def _exclusive(env: _Environment, spec: SpecFile, check: _Check, counts: Counts) -> Outcome:
    group = tuple(spec.spec.exclusive[check.index])
    overlap = counts.overlaps[group]
    span = spec.span("exclusive", check.index)
    detail = f"{overlap.users:,} of {counts.users:,} simulated users in two or more"
    failures: tuple[Diagnostic, ...] = ()
    if overlap.users:
        notes = [f"{user} is in {', '.join(inside)}" for user, inside in overlap.first]
        first_user, inside = overlap.first[0]
        user = counts.user(first_user)
        notes += _trace(counts.evaluator, counts.flags, user, *inside)
        failures = (
            make(
                codes.NOT_EXCLUSIVE,
                f"{overlap.users:,} of {counts.users:,} simulated users are in two or more "
                f"of {', '.join(group)}, said to be exclusive",
                span,
                notes,
            ),
        )
    return Outcome(spec.path, span, env.name, EXCLUSIVE, check.title, detail, failures)
