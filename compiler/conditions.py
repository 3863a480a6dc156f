"""Bundle conditions compiled into predicates over a user (standard library only).

A missing attribute never raises: it fails a condition and passes its negation
(`is_not`, `not_in`, `not_exists`, and `none` groups). Attribute values are compared
as text, except by the number and version operators. A value of an unexpected type
(a list, a dict) fails the condition the same way a missing one does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

Predicate = Callable[[Mapping[str, Any]], bool]
_VERSION = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+.*)?$")


def as_text(value: Any) -> str | None:
    """The text of a user attribute, or None when it has none."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    return None


def as_number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Decimal(value) if isinstance(value, int | str) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def as_version(value: Any) -> tuple[int, int, int, int, tuple[Any, ...]] | None:
    """A semantic version as a sortable tuple; a release sorts after its prereleases."""
    text = as_text(value)
    match = _VERSION.match(text) if text is not None else None
    if match is None:
        return None
    major, minor, patch, prerelease = match.groups()
    if prerelease is None:
        return (int(major), int(minor or 0), int(patch or 0), 1, ())
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in prerelease.split("."))
    return (int(major), int(minor or 0), int(patch or 0), 0, parts)


def _text_test(op: str, values: list[str]) -> Callable[[str], bool]:
    if op in ("is", "in"):
        wanted = frozenset(values)
        return wanted.__contains__
    if op == "contains":
        return lambda text: any(value in text for value in values)
    if op == "starts_with":
        prefixes = tuple(values)
        return lambda text: text.startswith(prefixes)
    if op == "ends_with":
        suffixes = tuple(values)
        return lambda text: text.endswith(suffixes)
    if op == "matches":
        patterns = [re.compile(value) for value in values]
        return lambda text: any(pattern.search(text) for pattern in patterns)
    raise ValueError(f"unknown operator {op!r}")


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
}


def attributes_of(condition: Mapping[str, Any]) -> frozenset[str]:
    """Every attribute a bundle condition reads."""
    for group in ("all", "any", "none"):
        if group in condition:
            return frozenset().union(*(attributes_of(child) for child in condition[group]))
    return frozenset([condition["attribute"]])


def compile_condition(condition: Mapping[str, Any]) -> Predicate:
    """A bundle condition (DESIGN §2, as written by the compiler) to a predicate."""
    for group in ("all", "any", "none"):
        if group in condition:
            children = [compile_condition(child) for child in condition[group]]
            if group == "all":
                return lambda user: all(child(user) for child in children)
            if group == "any":
                return lambda user: any(child(user) for child in children)
            return lambda user: not any(child(user) for child in children)
    attribute: str = condition["attribute"]
    op: str = condition["op"]
    values: list[str] = list(condition["values"])
    if op == "exists":
        return lambda user: user.get(attribute) is not None
    if op == "not_exists":
        return lambda user: user.get(attribute) is None
    if op in _COMPARE or op.startswith("version_"):
        return _ordered(attribute, op, values[0])
    negated = {"is_not": "is", "not_in": "in"}.get(op)
    test = _text_test(negated or op, values)

    def holds(user: Mapping[str, Any]) -> bool:
        text = as_text(user.get(attribute))
        if text is None:
            return negated is not None
        return test(text) != (negated is not None)

    return holds


def _ordered(attribute: str, op: str, bound_text: str) -> Predicate:
    parse: Callable[[Any], Any] = as_version if op.startswith("version_") else as_number
    compare = _COMPARE[op.removeprefix("version_")]
    bound = parse(bound_text)

    def holds(user: Mapping[str, Any]) -> bool:
        value = parse(user.get(attribute))
        return value is not None and bound is not None and compare(value, bound)

    return holds
