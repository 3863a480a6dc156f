"""Bundle conditions compiled into predicates over a user (standard library only).

A missing attribute never raises: it fails a condition and passes its negation
(`is_not`, `not_in`, `not_exists`, and `none` groups). Attribute values are compared
as text, except by the number and version operators. A value of an unexpected type
(a list, a dict) fails the condition the same way a missing one does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

Predicate = Callable[[Mapping[str, Any]], bool]
# The number and version grammars (docs/bundle.md), matched against the whole text.
# ASCII digits only: `\d` would also take other scripts' digits.
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_VERSION = re.compile(r"([0-9]+)\.([0-9]+)(?:\.([0-9]+)(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?)?")


_SURROGATE = re.compile("[\ud800-\udfff]")
# An integer of more than this many decimal digits has no text (docs/bundle.md). Python's
# default int-to-text limit, fixed here so that no interpreter setting changes a result.
MAX_DIGITS = 4300
_MAX_BITS = 14_285  # 10**4300 < 2**14285: longer integers have more than MAX_DIGITS digits


def well_formed(text: str) -> str:
    """`text` as a JavaScript string would hold it after `toWellFormed()`.

    A Python str can hold surrogate code points (JSON's "\\ud800" decodes to one). A high
    surrogate followed by a low one is the character the pair encodes in UTF-16; any
    other surrogate becomes U+FFFD. So the UTF-8 of the result is what JavaScript's
    TextEncoder makes of the same UTF-16, which every SDK hashes (docs/bundle.md).
    Costs one flag test for ASCII text and one scan for other text without surrogates.
    """
    if text.isascii() or _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def as_text(value: Any) -> str | None:
    """The text of a user attribute, or None when it has none (docs/bundle.md).

    Text is made well-formed; booleans are `true` / `false`; integers and finite floats
    and decimals are their decimal text, except integers longer than `MAX_DIGITS`;
    NaN, infinities, bytes, containers and anything else have none. Subclasses are read
    as their base type, so their overridden methods are never called. May raise on a
    hostile object (its `__class__` raising); the evaluator catches that.
    """
    if type(value) is str:
        return value if value.isascii() else well_formed(value)
    if isinstance(value, str):
        return well_formed(str.__str__(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return _integer_text(value)
    if isinstance(value, float):
        return float.__repr__(value) if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return Decimal.__str__(value) if Decimal.is_finite(value) else None
    return None


def _integer_text(value: int) -> str | None:
    bits = int.bit_length(value)
    if bits <= 2_100:  # at most 633 digits: within any limit the interpreter may set
        return int.__repr__(value)
    if bits > _MAX_BITS:
        return None
    # Through Decimal: independent of the interpreter's int-to-text limit.
    text = Decimal(int.__int__(value)).__str__()
    return text if len(text) - (text[0] == "-") <= MAX_DIGITS else None


def as_number(value: Any) -> float | None:
    """A number attribute as an IEEE 754 double, or None when it is not a number.

    A number is a value whose text (`as_text`) is a plain decimal: `-?` digits, an
    optional fraction and an optional exponent. `6 days`, `0x5`, `-inf`, ` 5`, `5\\n`,
    `+5`, `.5` and booleans are not numbers. The text is rounded to the nearest double,
    as JSON parsers and every Amplitude SDK do, so that all SDKs compare alike.
    """
    if isinstance(value, bool):
        return None
    text = as_text(value)
    if text is None or _NUMBER.fullmatch(text) is None:
        return None
    return float(text)


def as_version(value: Any) -> tuple[int, int, int, int, tuple[Any, ...]] | None:
    """A version attribute as a sortable tuple, or None when it is not a version.

    A version is `MAJOR.MINOR[.PATCH[-PRERELEASE]]` (ASCII digits; prerelease
    identifiers of `[0-9A-Za-z-]` separated by dots), the whole text: `10`, `v5.2.0`,
    `5.x`, `5.2.0.1` and `5.2.0+build` are not versions. Prereleases sort before their
    release and among themselves as semantic versioning says.
    """
    text = as_text(value)
    match = _VERSION.fullmatch(text) if text is not None else None
    if match is None:
        return None
    major, minor, patch, prerelease = match.groups()
    try:
        release = (int(major), int(minor), int(patch or 0))
        if prerelease is None:
            return (*release, 1, ())
        parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in prerelease.split("."))
    except ValueError:  # more digits than int() reads: not a version anyone ships
        return None
    return (*release, 0, parts)


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
    if bound is None:
        return lambda user: False

    def holds(user: Mapping[str, Any]) -> bool:
        value = parse(user.get(attribute))
        return value is not None and compare(value, bound)

    return holds
