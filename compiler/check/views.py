"""What the safety rules compare: each flag of a bundle, seen as the facts that decide
who is enrolled. Both sides of a check are bundles (compiled by the same code, or a
released bundle file), so the rules read one shape whatever `--against` named.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from expc.outputs.bundle import HELD_OUT
from expc.outputs.bundle_types import Bundle, Flag
from expc.sdk.bucketing import POINTS
from expc.shares import expected_share as expected_share_of

Ranges = tuple[tuple[str, int, int], ...]


@dataclass(frozen=True)
class View:
    key: str
    kind: str
    state: str
    by: str
    salt: str
    traffic: int
    ranges: Ranges
    targeting: Any
    prerequisites: tuple[tuple[str, tuple[str, ...]], ...]
    # group key -> slots of it this experiment needs (its whole group path)
    groups: Mapping[str, tuple[str, ...]]
    holdouts: frozenset[str]
    rolled_out: bool = False  # a concluded experiment giving everyone its rollout
    # for groups: slot -> experiments that need it (with nested groups resolved)
    members: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def bucketing(self) -> tuple[str, str]:
        return (self.by, self.salt)


def _view(flag: Flag, kinds: Mapping[str, str]) -> View:
    """A flag as the facts the rules compare; what each requirement is (a group, a
    holdout, a prerequisite) is read from the kind of the flag it names."""
    groups: dict[str, tuple[str, ...]] = {}
    holdouts = set()
    prerequisites = []
    for requirement in flag["requires"]:
        kind = kinds.get(requirement["flag"])
        if kind == "mutex":
            groups[requirement["flag"]] = tuple(requirement["variants"])
        elif kind == "holdout":
            holdouts.add(requirement["flag"])
        else:
            prerequisites.append((requirement["flag"], tuple(requirement["variants"])))
    ranges = tuple((v["key"], v["range"][0], v["range"][1]) for v in flag["variants"])
    return View(
        key=flag["key"],
        kind=flag["kind"],
        state=flag.get("state", "running" if flag["serving"] else "draft"),
        by=flag["bucketing"]["by"],
        salt=flag["bucketing"]["salt"],
        traffic=flag["traffic"],
        ranges=ranges,
        targeting=flag["targeting"],
        prerequisites=tuple(prerequisites),
        groups=groups,
        holdouts=frozenset(holdouts),
        rolled_out=flag["rollout"] is not None,
    )


def views(bundle: Bundle) -> dict[str, View]:
    """Every flag of a bundle as a view; groups learn their members."""
    kinds = {flag["key"]: flag["kind"] for flag in bundle["flags"]}
    result = {flag["key"]: _view(flag, kinds) for flag in bundle["flags"]}
    members: dict[str, dict[str, set[str]]] = {}
    for view in result.values():
        if view.kind != "experiment":
            continue
        for group, slots in view.groups.items():
            for slot in slots:
                members.setdefault(group, {}).setdefault(slot, set()).add(view.key)
    for key, by_slot in members.items():
        if key in result:
            frozen = {slot: frozenset(keys) for slot, keys in by_slot.items()}
            result[key] = dataclasses.replace(result[key], members=frozen)
    return result


def share_changed(before: Ranges, after: Ranges) -> Fraction:
    """Of the points `before` assigns, the share whose variant (by name) differs after."""
    total = sum(end - start for _, start, end in before)
    if total == 0:
        return Fraction(0)
    kept = 0
    for name, start, end in before:
        for other, other_start, other_end in after:
            if other == name:
                kept += max(0, min(end, other_end) - max(start, other_start))
    return Fraction(total - kept, total)


def range_share(ranges: Ranges, names: set[str] | None = None) -> Fraction:
    chosen = [(s, e) for name, s, e in ranges if names is None or name in names]
    return Fraction(sum(e - s for s, e in chosen), POINTS)


def expected_share(view: View, everything: Mapping[str, View]) -> Fraction:
    """DESIGN §4 from a bundle's ranges (a released bundle has no basis points): the
    share of each group along the path (the groups a view requires are the whole path,
    so their product is each tree's share), the holdouts, the traffic."""
    return expected_share_of(
        traffic=Fraction(view.traffic, 100),
        held_out=[
            range_share(everything[h].ranges, {HELD_OUT}) for h in view.holdouts if h in everything
        ],
        slot_paths=[
            range_share(everything[g].ranges, set(slots))
            for g, slots in view.groups.items()
            if g in everything
        ],
        rolled_out=view.rolled_out,
    )
