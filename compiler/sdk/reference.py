"""The reference evaluation: DESIGN §4 as one plain loop over the prepared flags.

This is the evaluator's definition in code. `expc.sdk.specialise` writes faster
functions for a bundle, and a hypothesis test holds them equal to this loop, result
for result. The loop also serves `explain` (it records each decision) and bundles too
large to specialise. Nothing in it can raise: reading the bucketing value is guarded,
`bucketing_value` catches, conditions run under `safely`.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from expc.sdk.bucketing import murmur3
from expc.sdk.conditions import as_text, well_formed
from expc.sdk.program import (
    NO_BUCKETING_VALUE,
    NOT_RUNNING,
    TARGETING,
    TRAFFIC,
    UNALLOCATED,
    PreparedFlag,
    Result,
    safely,
)


@dataclass(frozen=True, slots=True)
class Step:
    """One decision on the way to a result, for `expc eval --explain`."""

    flag: str
    what: str
    detail: str


def attributes_of_user(user: Any) -> Mapping[str, Any]:
    """The user's attributes: the user when it is a mapping, else none."""
    try:
        # type() first: isinstance against an ABC costs as much as evaluating a flag.
        return user if type(user) is dict or isinstance(user, Mapping) else {}
    except Exception:  # an object whose __class__ raises
        return {}


def bucketing_value(raw: Any) -> str:
    """A user's bucketing value: well-formed text, "" when there is none (docs/bundle.md).

    Well-formed matters twice: mmh3 would crash on a lone surrogate, and a JavaScript SDK
    hashes what TextEncoder makes of one (U+FFFD)."""
    try:
        return as_text(raw) or ""
    except Exception:  # a hostile value (its __class__ raising): no value
        return ""


def evaluate_reference(
    flags: list[PreparedFlag],
    user: Any,
    trace: list[Step] | None = None,
    values: dict[str, str] | None = None,
) -> dict[str, Result]:
    """DESIGN §4, every flag in order, for one user. `values` receives the bucketing
    value read for each attribute (for exposures); `trace` every decision."""
    attributes = attributes_of_user(user)
    results: dict[str, Result] = {}
    if values is None:
        values = {}
    for flag in flags:
        (
            key,
            by,
            serving,
            user_overrides,
            cohort_overrides,
            requires,
            targeting,
            rollout,
            prefix,
            traffic,
            starts,
            ends,
            outcomes,
        ) = flag.plan
        value = values.get(by)
        if value is None:
            # Read once per user and attribute: ASCII text, the usual id, as it is.
            try:
                value = attributes.get(by)
                if type(value) is not str:
                    value = bucketing_value(value)
                elif not value.isascii():
                    value = well_formed(value)
            except Exception:  # a mapping whose get raises, a hostile key: no value
                value = ""
            values[by] = value
        result: Result | None = None
        if not serving:
            result = NOT_RUNNING
        elif user_overrides and value in user_overrides:
            result = user_overrides[value]
        else:
            for holds, override in cohort_overrides:
                if safely(holds, attributes):
                    result = override
                    break
            if result is None:
                for required, allowed, failed in requires:
                    earlier = results[required]
                    if earlier not in allowed:
                        # No id for the holdout or group is no id here either (DESIGN §3).
                        result = NO_BUCKETING_VALUE if earlier is NO_BUCKETING_VALUE else failed
                        break
            if result is None:
                if targeting is not None and not safely(targeting, attributes):
                    result = TARGETING
                elif rollout is not None:
                    result = rollout
                elif not value:
                    result = NO_BUCKETING_VALUE
                else:
                    # Both parts are well-formed text: murmur3 hashes their UTF-8, the spec's.
                    point, allocation = divmod(murmur3(prefix + value), 100)
                    if allocation >= traffic:
                        result = TRAFFIC
                    else:
                        index = bisect_right(starts, point) - 1
                        if index >= 0 and point < ends[index]:
                            result = outcomes[index]
                        else:
                            result = UNALLOCATED
        results[key] = result
        if trace is not None:
            trace.extend(explain_flag(flag, value, results, result))
    return results


def explain_flag(
    flag: PreparedFlag, value: str, earlier: Mapping[str, Result], result: Result
) -> list[Step]:
    """The numbers behind a result, for people; evaluation itself never calls this."""
    steps = []
    # Requirements are consulted only after overrides, and only for flags that serve.
    consulted = flag.requires if result.reason not in ("override", "not-running") else []
    for required, allowed, failed in consulted:
        got = earlier[required].variant if required in earlier else None
        wanted = sorted({str(r.variant) for r in allowed})
        steps.append(Step(flag.key, "requires", f"{required} gave {got}, needs one of {wanted}"))
        if result.reason == failed.reason:
            break
    if value and result.reason in ("traffic", "bucketed", "unallocated"):
        # `value` is well-formed (see `bucketing_value`), so its UTF-8 is the spec's.
        h = murmur3(flag.prefix + value)
        steps.append(
            Step(
                flag.key,
                "hash",
                f"murmur3({flag.prefix + value!r}) = {h}: alloc {h % 100}, point {h // 100}",
            )
        )
        steps.append(
            Step(
                flag.key,
                "traffic",
                f"alloc {h % 100} {'<' if h % 100 < flag.traffic else '>='} traffic {flag.traffic}",
            )
        )
        ranges = ", ".join(
            f"{o.variant} [{a}, {b})"
            for o, a, b in zip(flag.outcomes, flag.starts, flag.ends, strict=True)
        )
        steps.append(Step(flag.key, "ranges", ranges))
    steps.append(Step(flag.key, "result", f"{result.variant} ({result.reason})"))
    return steps
