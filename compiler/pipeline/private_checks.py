"""Checks of private attributes (DESIGN §12): what their digests cannot answer.

The bundle holds digests of a private attribute's values (`outputs.private`), so only
equality can be decided on them: `is`, `is_not`, `in` and `not_in` (and `exists` /
`not_exists`, which need no value). A pattern, substring, number or version condition
on a private attribute is E210, and so is a condition on `<name>#sha256`, the name the
digests are compared under. Run per environment: targeting and cohorts may vary.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from expc import codes
from expc.diagnostics import Diagnostic, make
from expc.outputs.private import EQUALITY_OPERATORS, VALUELESS_OPERATORS
from expc.reading.load import Loaded
from expc.reading.model import AllOf, AnyOf, Cohort, Condition, Experiment, Project
from expc.sdk.private import DIGEST_SUFFIX

Path = tuple[str | int, ...]
COHORT_OPERATORS = frozenset({"in_cohort", "not_in_cohort"})


def private_problems(objects: Mapping[str, Loaded], project: Project | None) -> list[Diagnostic]:
    """Every E210 of these objects, and a private attribute declared twice (E103)."""
    if project is None or not project.private_attributes:
        return []
    private = frozenset(project.private_attributes)
    problems: list[Diagnostic] = []
    for key in sorted(objects):
        loaded = objects[key]
        definition = loaded.definition
        if isinstance(definition, Project):
            problems += _declared_twice(loaded, definition)
        elif isinstance(definition, Experiment) and definition.targeting is not None:
            problems += _conditions(loaded, definition.targeting, ("targeting",), private)
        elif isinstance(definition, Cohort) and definition.match is not None:
            problems += _conditions(loaded, definition.match, ("match",), private)
    return problems


def _declared_twice(loaded: Loaded, project: Project) -> Iterator[Diagnostic]:
    seen: set[str] = set()
    for index, name in enumerate(project.private_attributes):
        if name in seen:
            yield make(
                codes.INVALID_VALUE,
                f"private attribute '{name}' is listed twice; list each once",
                loaded.span("private_attributes", index),
            )
        seen.add(name)


def _conditions(
    loaded: Loaded, node: AllOf | AnyOf | Condition, path: Path, private: frozenset[str]
) -> Iterator[Diagnostic]:
    if isinstance(node, AllOf | AnyOf):
        word = "all" if isinstance(node, AllOf) else "any"
        children = node.all if isinstance(node, AllOf) else node.any
        for index, child in enumerate(children):
            yield from _conditions(loaded, child, (*path, word, index), private)
        return
    problem = _problem(node, private)
    if problem is not None:
        yield make(codes.PRIVATE_ATTRIBUTE_CONDITION, problem, loaded.span(*path))


def _problem(condition: Condition, private: frozenset[str]) -> str | None:
    attribute, op = condition.attribute, condition.op
    if attribute is None:
        return None
    base = attribute.removesuffix(DIGEST_SUFFIX)
    if base != attribute and base in private:
        return (
            f"attribute '{attribute}' is where the digests of private attribute '{base}' "
            f"are compared; write the condition on '{base}' (expc hashes its values)"
        )
    if op in COHORT_OPERATORS:
        return None  # a cohort's ids are compared by equality: they are hashed
    if attribute in private and op not in EQUALITY_OPERATORS | VALUELESS_OPERATORS:
        return (
            f"'{op}' on private attribute '{attribute}': the bundle holds only digests of "
            "its values, which can be compared for equality only; list the values with "
            f"'in' (or 'is', 'is_not', 'not_in'), or decide on another attribute the app "
            f"sends (e.g. a boolean), or remove '{attribute}' from private_attributes"
        )
    return None
