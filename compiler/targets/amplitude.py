"""Target `amplitude`: the bundle in Amplitude Experiment's evaluation flag-config format.

Every bundle flag becomes one Amplitude flag, in the same order, with its requirements
as `dependencies` and as gate segments that return `off` (see ../shared/AMPLITUDE.md):

1. a flag that serves nobody: one segment, `off`
2. user overrides (one segment per variant), then cohort overrides
3. one gate per requirement: `result.<flag>.key is not [allowed]` -> `off`
4. rollout: a segment on the targeting conditions, no bucket
5. the bucket: targeting as conditions, allocation [0, traffic), our ranges as
   distributions; a user no segment takes gets no variant

expc's "not enrolled" is Amplitude's `off` or no variant. Nested groups and
experiments in several groups are plain dependency gates, which Amplitude's engine
evaluates although its web UI cannot create them. Attributes other than `user_id` and
`device_id` are read from `user_properties`.

What the format cannot express exactly raises `ExportError`, naming the flag: a negated
condition whose operator fails on a missing attribute in Amplitude but passes in expc
(numbers, versions, patterns under `none` / `not_in_cohort`), and `contains`, which
Amplitude matches without regard to case. Amplitude's engine also treats the values
`0`, `false` and `""` as missing, which expc does not; keep such values out of targeted
attributes if both must agree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from compiler.bundle_types import Bundle, Flag

OFF = "off"
TOP_LEVEL_ATTRIBUTES = {"user_id", "device_id"}
MAX_TERMS = 256
_FLAG_TYPES = {
    "experiment": "experiment",
    "mutex": "mutual-exclusion-group",
    "holdout": "holdout-group",
}
_OPS = {
    "is": "is",
    "in": "is",
    "is_not": "is not",
    "not_in": "is not",
    "matches": "regex match",
    "lt": "less",
    "lte": "less or equal",
    "gt": "greater",
    "gte": "greater or equal",
    "version_lt": "version less",
    "version_lte": "version less or equal",
    "version_gt": "version greater",
    "version_gte": "version greater or equal",
}
# Negations that keep expc's meaning for a missing attribute, which then passes.
_NEGATED = {"is": "is not", "is not": "is", "regex does not match": None}


class ExportError(ValueError):
    """The bundle uses something Amplitude's format cannot express exactly."""


Term = list[dict[str, Any]]  # conditions that must all hold
Dnf = list[Term]  # any one term


def selector(attribute: str) -> list[str]:
    if attribute in TOP_LEVEL_ATTRIBUTES:
        return ["context", "user", attribute]
    return ["context", "user", "user_properties", attribute]


def _leaf(condition: Mapping[str, Any], flag: str) -> dict[str, Any]:
    op, values = condition["op"], list(condition["values"])
    if op == "exists":
        return {"selector": selector(condition["attribute"]), "op": "is not", "values": ["(none)"]}
    if op == "not_exists":
        return {"selector": selector(condition["attribute"]), "op": "is", "values": ["(none)"]}
    if op == "starts_with":
        op, values = "matches", ["^(?:" + "|".join(re.escape(v) for v in values) + ")"]
    elif op == "ends_with":
        op, values = "matches", ["(?:" + "|".join(re.escape(v) for v in values) + ")$"]
    elif op == "contains":
        raise ExportError(
            f"{flag}: 'contains' is case-insensitive in Amplitude and case-sensitive in "
            "expc; use 'matches' with the text escaped"
        )
    return {"selector": selector(condition["attribute"]), "op": _OPS[op], "values": values}


def _negate(term: dict[str, Any], flag: str) -> dict[str, Any]:
    negated = _NEGATED.get(term["op"])
    if negated is None:
        raise ExportError(
            f"{flag}: '{term['op']}' under 'none' or 'not_in_cohort' cannot be exported: "
            "Amplitude fails it for a missing attribute, where expc lets the user through"
        )
    return {**term, "op": negated}


def to_dnf(condition: Mapping[str, Any] | None, flag: str, negated: bool = False) -> Dnf:
    """A condition tree as Amplitude's OR of ANDs (negation pushed to the leaves)."""
    if condition is None:
        return [[]]
    if "none" in condition:
        return to_dnf({"any": condition["none"]}, flag, not negated)
    if "all" in condition or "any" in condition:
        conjunctive = ("all" in condition) != negated
        children = [
            to_dnf(child, flag, negated) for child in condition.get("all", condition.get("any", []))
        ]
        if not conjunctive:
            return [term for child in children for term in child]
        terms: Dnf = [[]]
        for child in children:
            terms = [left + right for left in terms for right in child]
            if len(terms) > MAX_TERMS:
                raise ExportError(f"{flag}: targeting expands past {MAX_TERMS} OR terms")
        return terms
    leaf = _leaf(condition, flag)
    return [[_negate(leaf, flag) if negated else leaf]]


def _segment(dnf: Dnf, **rest: Any) -> dict[str, Any]:
    segment: dict[str, Any] = dict(rest)
    if dnf != [[]]:
        segment["conditions"] = dnf
    return segment


def export_flag(flag: Flag) -> dict[str, Any]:
    key = flag["key"]
    by = flag["bucketing"]["by"]
    payloads = {v["key"]: v.get("payload") for v in flag["variants"]}
    variants: dict[str, Any] = {OFF: {"key": OFF}}
    for name, payload in payloads.items():
        variants[name] = {
            "key": name,
            "value": name,
            **({"payload": payload} if payload is not None else {}),
        }
    segments: list[dict[str, Any]] = []
    if not flag["serving"]:
        segments.append({"variant": OFF})
    else:
        by_variant: dict[str, list[str]] = {}
        for user, variant in flag["overrides"]["users"].items():
            by_variant.setdefault(variant, []).append(user)
        for variant, users in by_variant.items():
            condition = {"selector": selector(by), "op": "is", "values": sorted(users)}
            segments.append({"conditions": [[condition]], "variant": variant})
        for entry in flag["overrides"]["cohorts"]:
            segments.append(_segment(to_dnf(entry["when"], key), variant=entry["variant"]))
        for requirement in flag["requires"]:
            gate = {
                "selector": ["result", requirement["flag"], "key"],
                "op": "is not",
                "values": requirement["variants"],
            }
            segments.append({"conditions": [[gate]], "variant": OFF})
        targeting = to_dnf(flag["targeting"], key)
        if flag["rollout"] is not None:
            segments.append(_segment(targeting, variant=flag["rollout"]))
        else:
            distributions = [
                {"variant": v["key"], "range": list(v["range"])} for v in flag["variants"]
            ]
            bucket = {
                "selector": selector(by),
                "salt": flag["bucketing"]["salt"],
                "allocations": [{"range": [0, flag["traffic"]], "distributions": distributions}],
            }
            segments.append(_segment(targeting, bucket=bucket))
    exported: dict[str, Any] = {
        "key": key,
        "variants": variants,
        "segments": segments,
        "metadata": {
            "flagType": _FLAG_TYPES[flag["kind"]],
            "evaluationMode": "local",
            "deployed": True,
        },
    }
    dependencies = list(dict.fromkeys(r["flag"] for r in flag["requires"]))
    if dependencies:
        exported["dependencies"] = dependencies
    return exported


def export(bundle: Bundle) -> dict[str, Any]:
    """`amplitude/flags.json`: the flag configs in evaluation order."""
    return {"flags": flags_for(bundle["flags"])}


def flags_for(flags: Sequence[Flag]) -> list[dict[str, Any]]:
    return [export_flag(flag) for flag in flags]
