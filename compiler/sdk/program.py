"""Preparing a verified bundle for evaluation: a `Program` of `PreparedFlag`s.

Everything that does not depend on the user is prepared here, once per bundle: salts
with their "/", range boundaries, predicates, and every possible `Result`, so that
evaluating a flag is a few lookups and at most one hash. A flag of the wrong shape is
refused here (`BundleError`), so that no loaded bundle can make an evaluation fail.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from expc.sdk.bundle import (
    BundleError,
    array,
    boolean,
    check_condition,
    field,
    integer,
    kind_of,
    point_range,
    release_environment,
    shown,
    text,
    texts,
)
from expc.sdk.conditions import Predicate, attributes_of, compile_condition, well_formed
from expc.sdk.private import Private, private_of


@dataclass(frozen=True, slots=True, eq=False)
class Result:
    """A flag's outcome for a user. Each possible outcome of a flag is one shared
    instance made when the bundle loads, so results compare by identity."""

    variant: str | None
    payload: Any
    reason: str

    @property
    def enrolled(self) -> bool:
        return self.variant is not None


NOT_RUNNING = Result(None, None, "not-running")
NO_BUCKETING_VALUE = Result(None, None, "no-bucketing-value")
TARGETING = Result(None, None, "targeting")
TRAFFIC = Result(None, None, "traffic")
UNALLOCATED = Result(None, None, "unallocated")
HASHES = 1 << 32  # murmur3 gives 0 .. 2**32 - 1


def safely(predicate: Predicate, user: Mapping[str, Any]) -> bool:
    try:
        return predicate(user)
    except Exception:  # odd user input fails the condition; evaluation never raises
        return False


def _chosen(results: Mapping[str, Result], name: Any, where: str) -> Result:
    """The result naming one of the flag's variants."""
    if type(name) is not str or name not in results:
        raise BundleError(f"{where} names {shown(name)}, which is not one of its variants")
    return results[name]


class Requirement(NamedTuple):
    """An earlier flag whose result must be one of `allowed`; else the user gets
    `failed` (`holdout:<key>`, `mutex:<key>` or `prerequisite:<key>`). A tuple, so
    that the reference loop unpacks it at C speed."""

    flag: str
    allowed: frozenset[Result]
    failed: Result


class PreparedFlag:
    """One flag, prepared for evaluation."""

    __slots__ = (
        "by",
        "cohort_overrides",
        "cohort_reads",
        "ends",
        "giving",
        "key",
        "kind",
        "outcomes",
        "plan",
        "prefix",
        "requires",
        "rollout",
        "serving",
        "starts",
        "targeting",
        "targeting_reads",
        "traffic",
        "user_overrides",
    )

    def __init__(self, flag: Any, where: str = "a flag") -> None:
        self.key: str = text(flag, "key", where)
        where = f"flag {shown(self.key)}"
        self.kind: str = text(flag, "kind", where)
        self.serving: bool = boolean(flag, "serving", where)
        bucketing = field(flag, "bucketing", where)
        self.by: str = text(bucketing, "by", f"{where} bucketing")
        salt = text(bucketing, "salt", f"{where} bucketing")
        if well_formed(salt) is not salt:
            raise BundleError(f"{where}: the salt is not Unicode text (a lone surrogate)")
        self.prefix: str = salt + "/"
        self.traffic: int = integer(flag, "traffic", where, 100)
        payloads: dict[str, Any] = {}
        self.starts: list[int] = []
        self.ends: list[int] = []
        for variant in array(flag, "variants", where):
            name = text(variant, "key", f"{where} variant")
            if name in payloads:
                raise BundleError(f"{where}: two variants are called {shown(name)}")
            payloads[name] = variant.get("payload")
            start, end = point_range(variant, f"{where} variant {shown(name)}")
            if self.ends and start < self.ends[-1]:
                raise BundleError(f"{where}: variant ranges overlap or are out of order")
            self.starts.append(start)
            self.ends.append(end)
        self.outcomes = [Result(name, payload, "bucketed") for name, payload in payloads.items()]
        overridden = {name: Result(name, payload, "override") for name, payload in payloads.items()}
        overrides = field(flag, "overrides", where)
        users = field(overrides, "users", f"{where} overrides")
        if type(users) is not dict:
            raise BundleError(f"{where}: overrides.users must be an object, not {kind_of(users)}")
        self.user_overrides = {
            user: _chosen(overridden, name, f"{where}: the override of {shown(user)}")
            for user, name in users.items()
        }
        cohorts = array(overrides, "cohorts", f"{where} overrides")
        chosen = [
            _chosen(overridden, field(entry, "variant", where), f"{where}: a cohort override")
            for entry in cohorts
        ]
        for entry in cohorts:
            check_condition(field(entry, "when", where), f"{where} override")
        # What each condition reads, so `expc.sdk.batch` knows which depend on the id.
        self.cohort_reads = [attributes_of(entry["when"]) for entry in cohorts]
        self.cohort_overrides: list[tuple[Predicate, Result]] = [
            (compile_condition(entry["when"]), result)
            for entry, result in zip(cohorts, chosen, strict=True)
        ]
        # Resolved by Program once every flag exists.
        self.requires: list[Requirement] = []
        targeting = field(flag, "targeting", where)
        if targeting is not None:
            check_condition(targeting, f"{where} targeting")
        self.targeting: Predicate | None = (
            None if targeting is None else compile_condition(targeting)
        )
        self.targeting_reads = frozenset() if targeting is None else attributes_of(targeting)
        rollout = field(flag, "rollout", where)
        self.rollout: Result | None = None
        if rollout is not None:
            _chosen(overridden, rollout, f"{where}: the rollout")
            self.rollout = Result(rollout, payloads[rollout], "rollout")
        # variant -> every result of this flag that gives it
        self.giving: dict[str, list[Result]] = {
            name: [result] for name, result in overridden.items()
        }
        for result in [*self.outcomes, *([self.rollout] if self.rollout else [])]:
            self.giving[str(result.variant)].append(result)

    def segments(self) -> list[tuple[int, int, Result]]:
        """The hash values 0 .. 2**32 - 1 cut into runs `[low, high)` of one result each.

        `point = h // 100` lies in [start, end) exactly when `100 * start <= h < 100 * end`,
        so the ranges become bounds on the hash itself and no division is needed. Empty
        ranges hold no point; the gaps between ranges are `unallocated`."""
        segments: list[tuple[int, int, Result]] = []

        def cover(low: int, high: int, result: Result) -> None:
            low, high = min(low, HASHES), min(high, HASHES)
            if low >= high:
                return
            if segments and segments[-1][2] is result and segments[-1][1] == low:
                segments[-1] = (segments[-1][0], high, result)
            else:
                segments.append((low, high, result))

        reached = 0
        for start, end, outcome in zip(self.starts, self.ends, self.outcomes, strict=True):
            if start < end:
                cover(reached, 100 * start, UNALLOCATED)
                cover(100 * start, 100 * end, outcome)
                reached = 100 * end
        cover(reached, HASHES, UNALLOCATED)
        return segments

    def prepare_plan(self) -> None:
        """The fields the reference loop reads, as one tuple: unpacked into fast locals."""
        self.plan = (
            self.key,
            self.by,
            self.serving,
            self.user_overrides,
            self.cohort_overrides,
            self.requires,
            self.targeting,
            self.rollout,
            self.prefix,
            self.traffic,
            self.starts,
            self.ends,
            self.outcomes,
        )


class Program:
    """Every flag of one verified bundle, prepared, with the release it came from."""

    __slots__ = ("by_key", "content_id", "environment", "flags", "needed", "private")

    def __init__(self, bundle: Any) -> None:
        release = field(bundle, "release", "the bundle")
        self.content_id: str = text(release, "content_id", "release")
        self.environment: str | None = release_environment(release)
        flags = array(bundle, "flags", "the bundle")
        self.flags = [PreparedFlag(flag, f"flags[{index}]") for index, flag in enumerate(flags)]
        self.by_key = {flag.key: index for index, flag in enumerate(self.flags)}
        if len(self.by_key) != len(self.flags):
            twice = next(f.key for i, f in enumerate(self.flags) if self.by_key[f.key] != i)
            raise BundleError(f"two flags are called {shown(twice)}")
        for prepared, flag in zip(self.flags, flags, strict=True):
            where = f"flag {shown(prepared.key)}"
            for requirement in array(flag, "requires", where):
                required = text(requirement, "flag", f"{where} requires")
                position = self.by_key.get(required)
                if position is None or position >= self.by_key[prepared.key]:
                    raise BundleError(f"{where} requires {shown(required)}, not before it")
                giving = self.flags[position].giving
                allowed = frozenset(
                    r
                    for name in texts(requirement, "variants", f"{where} requires")
                    for r in giving.get(name, [])
                )
                failed = Result(None, None, text(requirement, "reason", f"{where} requires"))
                prepared.requires.append(Requirement(required, allowed, failed))
        for prepared in self.flags:
            prepared.prepare_plan()
        # flag key -> the flags one evaluation of it needs, in bundle order
        self.needed: dict[str, list[PreparedFlag]] = {}
        # The private attributes whose digests the user needs (docs/bundle.md), or None.
        compared = frozenset().union(
            *(flag.targeting_reads for flag in self.flags),
            *(reads for flag in self.flags for reads in flag.cohort_reads),
        )
        self.private: Private | None = private_of(bundle, compared)

    def flag(self, key: str) -> PreparedFlag:
        return self.flags[self.by_key[key]]

    def needed_for(self, key: str) -> list[PreparedFlag]:
        """The flag and everything it requires, transitively, in evaluation order."""
        if key not in self.needed:
            seen: set[int] = set()
            pending = [self.by_key[key]]
            while pending:
                position = pending.pop()
                if position not in seen:
                    seen.add(position)
                    pending.extend(self.by_key[r.flag] for r in self.flags[position].requires)
            self.needed[key] = [self.flags[position] for position in sorted(seen)]
        return self.needed[key]
