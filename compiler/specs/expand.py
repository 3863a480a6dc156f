"""Cases as they run: a `matrix` expanded into one case per combination of its
values (cartesian, in the order written), with `${name}` replaced in the case's
description, user and expectations.

`${name}` alone in a text is replaced by the value itself (a number stays a number,
null stays null); inside a longer text, by the value's text. Flag names (the keys of
`expect` and `at`) are never replaced: they are what `resolve` checks.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from expc.diagnostics import Diagnostic, make
from expc.reading.source import PathElement
from expc.specs import codes
from expc.specs.load import SpecFile
from expc.specs.model import MAX_EXPANDED, Case, Expectation

_REFERENCE = re.compile(r"\$\{([^{}]*)\}")
Place = tuple[PathElement, ...]


@dataclass(frozen=True)
class Expected:
    """What one flag must give: only the fields in `given` are checked."""

    flag: str
    given: frozenset[str]  # of "variant", "reason", "payload"
    variant: str | None
    reason: str | None
    payload: Any
    place: Place  # of `expect.<flag>` in the spec

    def describe(self) -> str:
        """The expectation in words: `variant one-page, reason override`."""
        parts = []
        if "variant" in self.given:
            parts.append("not enrolled" if self.variant is None else f"variant {self.variant}")
        if "reason" in self.given:
            parts.append(f"reason {self.reason}")
        if "payload" in self.given:
            parts.append(f"payload {shown_value(self.payload)}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Concrete:
    """One case as it runs: a case of the spec, or one combination of its matrix."""

    spec: SpecFile
    index: int  # of the case in the spec's `cases`
    title: str  # the description (or `case N`) and the matrix values
    user: Mapping[str, Any]
    at: Mapping[str, Decimal]
    expected: tuple[Expected, ...]

    @property
    def place(self) -> Place:
        return ("cases", self.index)


def shown_value(value: Any) -> str:
    """A value as YAML and JSON write it: `null`, `true`, `DE`, `{"steps": 1}`."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def expand(spec: SpecFile) -> tuple[list[Concrete], list[Diagnostic]]:
    """Every case of a spec as it runs; a malformed matrix or `${name}` is a located
    diagnostic (and that case does not run)."""
    concrete: list[Concrete] = []
    problems: list[Diagnostic] = []
    for index, case in enumerate(spec.spec.cases):
        found = _problems(spec, index, case)
        if found:
            problems.extend(found)
            continue
        concrete.extend(_expanded(spec, index, case))
    return concrete, problems


def _combinations(case: Case) -> list[dict[str, Any]]:
    if not case.matrix:
        return [{}]
    names = list(case.matrix)
    return [
        dict(zip(names, values, strict=True))
        for values in itertools.product(*(case.matrix[name] for name in names))
    ]


def _problems(spec: SpecFile, index: int, case: Case) -> list[Diagnostic]:
    place: Place = ("cases", index)
    names = set(case.matrix or ())
    if case.matrix:
        count = math.prod(len(values) for values in case.matrix.values())
        if count > MAX_EXPANDED:
            return [
                make(
                    codes.MALFORMED_MATRIX,
                    f"this matrix expands to {count:,} cases, more than {MAX_EXPANDED:,}; "
                    "split it into several cases",
                    spec.span(*place, "matrix"),
                )
            ]
    problems = []
    for path, text in _texts(case):
        for name in _REFERENCE.findall(text):
            if name not in names:
                where = (
                    f"the matrix names {', '.join(sorted(names))}"
                    if names
                    else "this case has no matrix"
                )
                problems.append(
                    make(
                        codes.MALFORMED_MATRIX,
                        f"'${{{name}}}' names no matrix value ({where}); write '${{NAME}}' "
                        "with a name of the case's matrix",
                        spec.span(*place, *path),
                    )
                )
    return problems


def _texts(case: Case) -> Iterator[tuple[Place, str]]:
    """Every text of a case where `${name}` is replaced, with its place in the case."""
    if case.description is not None:
        yield ("description",), case.description
    yield from _texts_in(case.user, ("user",))
    for flag, expectation in case.expect.items():
        for field in ("variant", "reason"):
            value = getattr(expectation, field)
            if isinstance(value, str):
                yield ("expect", flag, field), value
        yield from _texts_in(expectation.payload, ("expect", flag, "payload"))


def _texts_in(value: Any, place: Place) -> Iterator[tuple[Place, str]]:
    # A stack, not recursion: values nest up to the reader's limit.
    pending = [(value, place)]
    while pending:
        item, where = pending.pop()
        if isinstance(item, str):
            yield where, item
        elif isinstance(item, dict):
            pending.extend((child, (*where, key)) for key, child in item.items())
        elif isinstance(item, list):
            pending.extend((child, (*where, i)) for i, child in enumerate(item))


def _expanded(spec: SpecFile, index: int, case: Case) -> Iterator[Concrete]:
    title = case.description or f"case {index + 1}"
    for values in _combinations(case):
        shown = ", ".join(f"{name}={shown_value(value)}" for name, value in values.items())
        named = _substituted(title, values) if case.description else title
        yield Concrete(
            spec,
            index,
            f"{_text(named)} [{shown}]" if values else _text(named),
            plain(_substituted(case.user, values)),
            case.at,
            tuple(
                _expected(flag, expectation, values, ("cases", index, "expect", flag))
                for flag, expectation in case.expect.items()
            ),
        )


def _expected(
    flag: str, expectation: Expectation, values: Mapping[str, Any], place: Place
) -> Expected:
    variant = _substituted(expectation.variant, values)
    reason = _substituted(expectation.reason, values)
    return Expected(
        flag,
        frozenset(expectation.model_fields_set),
        None if variant is None else _text(variant),
        None if reason is None else _text(reason),
        plain(_substituted(expectation.payload, values)),
        place,
    )


def _substituted(value: Any, values: Mapping[str, Any]) -> Any:
    if not values:
        return value
    if isinstance(value, str):
        whole = _REFERENCE.fullmatch(value)
        if whole is not None:
            return values[whole[1]]
        return _REFERENCE.sub(lambda match: _text(values[match[1]]), value)
    if isinstance(value, dict):
        return {key: _substituted(child, values) for key, child in value.items()}
    if isinstance(value, list):
        return [_substituted(child, values) for child in value]
    return value


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return shown_value(value)


def plain(value: Any) -> Any:
    """YAML values as a JSON document holds them: a non-integer number is a float, as
    an application would pass it to the evaluator."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {key: plain(child) for key, child in value.items()}
    if isinstance(value, list):
        return [plain(child) for child in value]
    return value
