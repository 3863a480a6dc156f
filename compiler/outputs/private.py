"""Private attributes in the bundle (DESIGN §12; docs/bundle.md, "Private attributes").

A flag is built as if no attribute were private, then `hide` rewrites every value of a
private attribute into its digest (`expc.sdk.private.digest`), so the rewrite cannot
change whom a flag enrols:

- an `is`, `is_not`, `in` or `not_in` condition on attribute `a` becomes the same
  operator on `a#sha256` with the digests of its values (sorted);
- `exists` and `not_exists` carry no value and stay as they are;
- overrides by user (experiment overrides, group pins, holdout include and exclude),
  when the flag buckets by a private attribute, become `overrides.cohorts` entries in
  front of the others, one per variant, `in` on the digests of its users: users are
  tried before cohorts, and each user has one variant, so the first entry that takes a
  user is the one that did before.

Any other operator on a private attribute is refused before a flag is built (E210,
`pipeline/private_checks`); meeting one here is a bug, and it raises.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

from expc.outputs.bundle_types import (
    BundleCondition,
    CohortOverride,
    Flag,
    Overrides,
    PrivateBlock,
)
from expc.reading.model import Project
from expc.sdk.private import DIGEST_SUFFIX, digest, digest_attribute

# Operators that compare a value for equality: their values can be compared as digests.
EQUALITY_OPERATORS = frozenset({"is", "is_not", "in", "not_in"})
VALUELESS_OPERATORS = frozenset({"exists", "not_exists"})


def salt_of(project: Project) -> str:
    """The salt of a project's digests: `private_salt`, else its name, else its key.
    Deterministic, so that the same definitions compile to the same bytes."""
    return project.private_salt or project.name or project.key


@dataclass(frozen=True)
class Hiding:
    """What `hide` needs: the salt and the private attributes."""

    salt: str
    attributes: frozenset[str]

    @classmethod
    def of(cls, project: Project | None) -> Hiding | None:
        if project is None or not project.private_attributes:
            return None
        return cls(salt_of(project), frozenset(project.private_attributes))

    def block(self) -> PrivateBlock:
        """The bundle's `private` field."""
        return {"salt": self.salt, "attributes": sorted(self.attributes)}

    def digests(self, attribute: str, values: list[str]) -> list[str]:
        return sorted({digest(self.salt, attribute, value) for value in values})

    def condition(self, node: BundleCondition) -> BundleCondition:
        read: Mapping[str, Any] = node
        for group in ("all", "any", "none"):
            if group in read:
                return cast(BundleCondition, {group: [self.condition(c) for c in read[group]]})
        attribute, op = read["attribute"], read["op"]
        if attribute not in self.attributes or op in VALUELESS_OPERATORS:
            return node
        if op not in EQUALITY_OPERATORS:
            raise ValueError(f"'{op}' on private attribute '{attribute}' reached the bundle")
        return {
            "attribute": digest_attribute(attribute),
            "op": op,
            "values": self.digests(attribute, read["values"]),
        }

    def overrides(self, overrides: Overrides, by: str) -> Overrides:
        cohorts: list[CohortOverride] = []
        users = overrides["users"]
        if by in self.attributes and users:
            listed: dict[str, list[str]] = {}
            for user, variant in users.items():
                listed.setdefault(variant, []).append(user)
            for variant, ids in listed.items():
                when: BundleCondition = {
                    "attribute": digest_attribute(by),
                    "op": "in",
                    "values": self.digests(by, ids),
                }
                cohorts.append({"variant": variant, "when": when})
            users = {}
        for entry in overrides["cohorts"]:
            cohorts.append({"variant": entry["variant"], "when": self.condition(entry["when"])})
        return {"users": users, "cohorts": cohorts}


class PrivateValueError(ValueError):
    """A target that compares raw values met a flag comparing a private attribute's
    digests (in its `part`: "overrides" or "targeting"). The compile names the place in
    the definitions from `flag` and `part`."""

    def __init__(self, message: str, flag: str, part: str) -> None:
        super().__init__(message)
        self.flag = flag
        self.part = part


def private_comparisons(
    flag: Flag, attributes: Collection[str]
) -> Iterator[tuple[str, str, list[str]]]:
    """(part of the flag, private attribute, digests) for every comparison of a private
    attribute's digests in `flag`; the part is "overrides" or "targeting"."""
    parts: list[tuple[str, Mapping[str, Any]]] = [
        ("overrides", entry["when"]) for entry in flag["overrides"]["cohorts"]
    ]
    if flag["targeting"] is not None:
        parts.append(("targeting", flag["targeting"]))
    for part, condition in parts:
        for node in attribute_conditions(condition):
            base = node["attribute"].removesuffix(DIGEST_SUFFIX)
            if base != node["attribute"] and base in attributes:
                yield part, base, list(node["values"])


def attribute_conditions(node: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every `{attribute, op, values}` condition inside `node`."""
    for group in ("all", "any", "none"):
        if group in node:
            for child in node[group]:
                yield from attribute_conditions(child)
            return
    yield node


def hide(flag: Flag, hiding: Hiding) -> Flag:
    """The flag with every value of a private attribute replaced by its digest."""
    hidden = flag.copy()
    hidden["overrides"] = hiding.overrides(flag["overrides"], flag["bucketing"]["by"])
    targeting = flag["targeting"]
    hidden["targeting"] = None if targeting is None else hiding.condition(targeting)
    return hidden
