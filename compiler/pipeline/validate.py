"""Checks on one object that need more than its shape: sums, limits, names inside it."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from decimal import Decimal

from expc import codes
from expc.diagnostics import Diagnostic, make
from expc.outputs.targets import NAMES as TARGET_NAMES
from expc.reading.load import Loaded, did_you_mean
from expc.reading.model import (
    AllOf,
    AnyOf,
    Audience,
    Cohort,
    Condition,
    Experiment,
    Holdout,
    Mutex,
    Project,
)
from expc.sdk.bucketing import FULL, basis_points
from expc.sdk.conditions import as_version
from expc.shares import basis_share, percent, variant_shares

MAX_SLOTS = 20
KNOWN_TARGETS = frozenset(TARGET_NAMES)
VALUELESS_OPS = {"exists", "not_exists"}
NUMBER_OPS = {"lt", "lte", "gt", "gte"}
VERSION_OPS = {"version_lt", "version_lte", "version_gt", "version_gte"}
SINGLE_VALUE_OPS = NUMBER_OPS | VERSION_OPS | {"is", "is_not"}


def _percent(bp: int) -> str:
    return percent(basis_share(bp))


def check_object(loaded: Loaded, relative: str) -> Iterator[Diagnostic]:
    """`relative` is the file's '/'-separated path below the definitions directory."""
    definition = loaded.definition
    name = relative.rsplit("/", 1)[-1]
    stem = name.removesuffix(".yaml")
    if stem != definition.key:
        yield make(
            codes.KEY_MISMATCH,
            f"key '{definition.key}' differs from the file name '{name}'; "
            f"rename the file to '{definition.key}.yaml' or set key: {stem}",
            loaded.span("key"),
        )
    if isinstance(definition, Project) and relative != "project.yaml":
        yield make(
            codes.PROJECT_MISPLACED,
            "the project object belongs in definitions/project.yaml; move it there",
            loaded.span("kind"),
        )
    if isinstance(definition, Project):
        for index, target in enumerate(definition.targets):
            if target not in KNOWN_TARGETS:
                known = ", ".join(sorted(KNOWN_TARGETS)) or "none yet"
                yield make(
                    codes.INVALID_VALUE,
                    f"unknown target '{target}'; targets available in this version: {known}",
                    loaded.span("targets", index),
                )
    if isinstance(definition, Experiment):
        yield from _check_experiment(loaded, definition)
    elif isinstance(definition, Mutex):
        yield from _check_mutex(loaded, definition)
    elif isinstance(definition, Holdout):
        both = set(definition.include.users) & set(definition.exclude.users)
        for user in sorted(both):
            yield make(
                codes.INVALID_VALUE,
                f"user '{user}' is both included and excluded; keep one of the two",
                loaded.span("exclude"),
            )
    elif isinstance(definition, Cohort) and definition.match is not None:
        yield from _check_conditions(loaded, definition.match, ("match",))


def _check_experiment(loaded: Loaded, experiment: Experiment) -> Iterator[Diagnostic]:
    names = [v.key for v in experiment.variants]
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name in seen:
            yield make(
                codes.DUPLICATE_VARIANT,
                f"variant '{name}' is declared twice; give each variant its own key",
                loaded.span("variants", index, "key"),
            )
        seen.add(name)
    yield from _check_weights(loaded, experiment)
    if experiment.rollout is not None:
        if experiment.state != "concluded":
            yield make(
                codes.ROLLOUT_MISUSE,
                f"rollout is only allowed in state 'concluded', not '{experiment.state}'; "
                "set state: concluded or remove rollout",
                loaded.span("rollout"),
            )
        if experiment.rollout not in names:
            yield make(
                codes.ROLLOUT_MISUSE,
                f"rollout names variant '{experiment.rollout}', which this experiment does "
                f"not have{did_you_mean(experiment.rollout, names)}",
                loaded.span("rollout"),
            )
    for variant in experiment.overrides:
        if variant not in names:
            yield make(
                codes.UNKNOWN_VARIANT,
                f"overrides name variant '{variant}', which this experiment does not "
                f"have{did_you_mean(variant, names)}",
                loaded.span("overrides", variant, key=True),
            )
    yield from _check_audiences(loaded, dict(experiment.overrides), "overrides")
    if experiment.targeting is not None:
        yield from _check_conditions(loaded, experiment.targeting, ("targeting",))


def _check_weights(loaded: Loaded, experiment: Experiment) -> Iterator[Diagnostic]:
    explicit = [v.weight for v in experiment.variants if v.weight is not None]
    given = sum(basis_points(w) for w in explicit)
    omitted = len(experiment.variants) - len(explicit)
    shares = variant_shares(experiment)
    if not omitted and given != FULL:
        yield make(
            codes.WEIGHTS_NOT_100,
            f"variant weights sum to {_percent(given)}, not 100%; adjust them, or omit "
            "weights to split evenly",
            loaded.span("variants"),
        )
    elif omitted and (given > FULL or min(shares) == 0):
        yield make(
            codes.WEIGHTS_NOT_100,
            f"explicit weights sum to {_percent(given)}, leaving nothing for the "
            f"{omitted} variant(s) without a weight; lower them so the rest is positive",
            loaded.span("variants"),
        )


def _check_mutex(loaded: Loaded, group: Mutex) -> Iterator[Diagnostic]:
    slots = group.slots
    if len(slots) > MAX_SLOTS:
        yield make(
            codes.TOO_MANY_SLOTS,
            f"{len(slots)} slots; a group holds at most {MAX_SLOTS}: nest a group in a "
            "slot to subdivide it further",
            loaded.span("slots", MAX_SLOTS),
        )
    for index, slot in enumerate(slots):
        if slot.experiment is not None and slot.group is not None:
            yield make(
                codes.EMPTY_SLOT_MEMBER,
                f"slot {index + 1} names both an experiment and a group; a slot holds at "
                "most one member",
                loaded.span("slots", index),
            )
    given = sum(basis_points(s.percent) for s in slots if s.percent is not None)
    if given > FULL:
        yield make(
            codes.SLOTS_OVER_100,
            f"slot percents sum to {_percent(given)}, over 100%; lower them",
            loaded.span("slots"),
        )
    for number in group.pinned:
        if number > len(slots):
            yield make(
                codes.INVALID_VALUE,
                f"pinned: slot {number} does not exist; slots are numbered 1 to {len(slots)}",
                loaded.span("pinned", str(number), key=True),
            )
    yield from _check_audiences(
        loaded, {str(number): audience for number, audience in group.pinned.items()}, "pinned"
    )


def _check_audiences(
    loaded: Loaded, audiences: dict[str, Audience], field: str
) -> Iterator[Diagnostic]:
    """A user or cohort may be sent to one place only (one slot, one variant)."""
    verb, place_word = ("pinned to", "slot") if field == "pinned" else ("overridden to", "variant")
    placed: dict[tuple[str, str], str] = {}
    for place, audience in audiences.items():
        for what, names in (("user", audience.users), ("cohort", audience.cohorts)):
            for name in names:
                earlier = placed.setdefault((what, name), place)
                if earlier != place:
                    yield make(
                        codes.PINNED_TWICE,
                        f"{what} '{name}' is {verb} both {place_word} {earlier} and "
                        f"{place_word} {place}; keep one",
                        loaded.span(field, place, key=True),
                    )


def _check_conditions(
    loaded: Loaded, node: AllOf | AnyOf | Condition, path: tuple[str | int, ...]
) -> Iterator[Diagnostic]:
    if isinstance(node, AllOf | AnyOf):
        children = node.all if isinstance(node, AllOf) else node.any
        word = "all" if isinstance(node, AllOf) else "any"
        for index, child in enumerate(children):
            yield from _check_conditions(loaded, child, (*path, word, index))
        return
    problem = condition_problem(node)
    if problem:
        yield make(codes.INVALID_CONDITION, problem, loaded.span(*path))


def condition_problem(condition: Condition) -> str | None:
    op, values = condition.op, condition.values
    if op in VALUELESS_OPS:
        return f"'{op}' takes no values; remove them" if values else None
    if op in ("in_cohort", "not_in_cohort"):
        return None if values else f"'{op}' needs the cohort keys in values"
    if condition.attribute is None:
        return f"'{op}' needs an attribute"
    if not values:
        return f"'{op}' needs at least one value"
    if op in SINGLE_VALUE_OPS and len(values) != 1:
        return f"'{op}' takes exactly one value; use 'in' or 'not_in' for several"
    if op in NUMBER_OPS and not all(_is_number(v) for v in values):
        return f"'{op}' compares numbers; {values[0]!r} is not a number"
    if op in VERSION_OPS:
        for value in values:
            text = format(value, "f") if isinstance(value, Decimal) else str(value)
            if as_version(text) is None:
                return (
                    f"'{op}' compares versions MAJOR.MINOR[.PATCH] like 5.2.0; {text!r} is not "
                    "one (write 10 as 10.0; no 'v' prefix, no '+build')"
                )
    if op == "matches":
        return _regex_problem([str(v) for v in values])
    return None


def _is_number(value: object) -> bool:
    return not isinstance(value, bool | str)


def _regex_problem(patterns: Sequence[str]) -> str | None:
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as error:
            return f"'matches' pattern {pattern!r} is not a valid regular expression: {error}"
    return None
