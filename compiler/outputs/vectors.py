"""Conformance vectors for SDK authors (`generated/vectors.json`, docs/vectors.md).

For every flag: users whose point sits exactly on each side of every range boundary,
users whose alloc sits exactly on each side of the traffic limit, and a few ordinary
users, each with the variant and reason this package's evaluator gives. Boundary users
are built with `preimage`, and retried until the holdouts and groups in front of the
flag let them through, so that the boundary is really exercised. Attributes that the
flag's targeting asks for are filled in where a simple value satisfies it. Ids with
lone and paired UTF-16 surrogates pin down the text rule of the hash.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from expc.outputs.bundle_types import Bundle, Flag
from expc.outputs.preimage import value_hashing_to
from expc.outputs.private import private_comparisons
from expc.sdk.bucketing import POINTS, alloc, hash_value, point
from expc.sdk.conditions import as_text
from expc.sdk.evaluate import Evaluator
from expc.sdk.private import DIGEST_SUFFIX, digest

VECTORS_VERSION = 1
# Above this many flags, vectors cover one flag of each shape (the constructs it uses),
# so that compile stays fast on large repositories: SDK authors need every construct,
# not every flag, and a thousand experiments of one shape test nothing a single one
# does not.
FLAG_LIMIT = 100
ATTEMPTS = 40
REACHED = {"bucketed", "traffic", "unallocated"}
ORDINARY_USERS = 3
# Ids holding UTF-16 surrogates, for every flag that hashes: an SDK must hash what
# JavaScript's TextEncoder makes of them (docs/bundle.md). The file writes them as JSON
# \u escapes; a JSON decoder joins an escaped pair into its character.
SURROGATES = (
    ("a lone high surrogate (hashed as U+FFFD)", "\ud83d"),
    ("a lone low surrogate (hashed as U+FFFD)", "\ude00"),
    ("a surrogate pair written as two escapes (hashed as U+1F600)", "\ud83d\ude00"),
    ("a low surrogate before a high one (hashed as two U+FFFD)", "\ude00\ud83d"),
)


def satisfying(condition: Mapping[str, Any] | None, by: str) -> dict[str, Any]:
    """Attributes that make simple conditions hold (best effort; never the bucketing one)."""
    attributes: dict[str, Any] = {}
    if condition is None:
        return attributes
    if "all" in condition:
        for child in condition["all"]:
            attributes.update(satisfying(child, by))
        return attributes
    if "any" in condition:
        # The first child whose values are known (not digests of a private attribute).
        known = [c for c in condition["any"] if not c.get("attribute", "").endswith(DIGEST_SUFFIX)]
        return satisfying(known[0], by) if known else attributes
    if "none" in condition or condition.get("attribute") == by:
        return attributes  # missing attributes already fail every child
    if condition["attribute"].endswith(DIGEST_SUFFIX):
        return attributes  # digests of a private attribute: its values are not known
    attribute, op, values = condition["attribute"], condition["op"], condition["values"]
    first = values[0] if values else "x"
    simple = {
        "is": first,
        "in": first,
        "contains": first,
        "starts_with": first,
        "ends_with": first,
        "is_not": "~" + first,
        "not_in": "~" + first,
        "exists": "x",
        "lte": first,
        "gte": first,
        "version_lte": first,
        "version_gte": first,
        "version_gt": "999999.0.0",
        "version_lt": "0.0.0",
    }
    if op in simple:
        attributes[attribute] = simple[op]
    elif op in ("lt", "gt"):
        number = float(first)
        attributes[attribute] = int(number - 1 if op == "lt" else number + 1)
    return attributes


def _boundaries(flag: Flag) -> list[tuple[str, list[int]]]:
    """(what, hash values that land there) for every boundary of the flag."""
    traffic = flag["traffic"]
    entering = [a for a in range(100) if a < traffic] or [0]
    found: list[tuple[str, list[int]]] = []
    for variant in flag["variants"]:
        start, end = variant["range"]
        if end <= start:
            continue
        for where, at in (("first", start), ("last", end - 1)):
            targets = [100 * at + a for a in entering if 100 * at + a < 2**32]
            found.append((f"{where} point {at} of {variant['key']}", targets))
    last_end = flag["variants"][-1]["range"][1] if flag["variants"] else 0
    if last_end < POINTS:
        targets = [100 * last_end + a for a in entering]
        found.append((f"point {last_end}, just past the last range", targets))
    if 0 < traffic < 100:
        spread = range(0, POINTS, POINTS // 97)
        for a, where in ((traffic - 1, "last alloc inside"), (traffic, "first alloc outside")):
            found.append((f"{where} traffic {traffic} (alloc {a})", [100 * p + a for p in spread]))
    return found


def _operators(condition: Mapping[str, Any] | None) -> frozenset[str]:
    if condition is None:
        return frozenset()
    for group in ("all", "any", "none"):
        if group in condition:
            inner = frozenset().union(*(_operators(child) for child in condition[group]))
            return inner | {group}
    return frozenset([condition["op"]])


def _shape(flag: Flag, kinds: Mapping[str, str]) -> tuple[Any, ...]:
    """What a flag asks of an SDK: its kind and state, its variants, traffic and free
    share, what it requires, the operators of its conditions, its overrides."""
    overrides = flag["overrides"]
    return (
        flag["kind"],
        flag["serving"],
        flag["rollout"] is not None,
        len(flag["variants"]),
        flag["traffic"] < 100,
        bool(flag["variants"]) and flag["variants"][-1]["range"][1] < POINTS,
        tuple(sorted(kinds.get(r["flag"], "?") for r in flag["requires"])),
        tuple(sorted(_operators(flag["targeting"]))),
        bool(overrides["users"]),
        tuple(sorted(frozenset().union(*(_operators(c["when"]) for c in overrides["cohorts"])))),
    )


def _sample(flags: list[Flag]) -> list[Flag]:
    """Every flag of a small bundle; one flag of each shape of a large one."""
    if len(flags) <= FLAG_LIMIT:
        return flags
    kinds = {flag["key"]: flag["kind"] for flag in flags}
    first: dict[tuple[Any, ...], Flag] = {}
    for flag in flags:
        first.setdefault(_shape(flag, kinds), flag)
    return list(first.values())[:FLAG_LIMIT]


def _with_requirements(flags: list[Flag], chosen: list[Flag]) -> list[Flag]:
    """The chosen flags and every flag they require, in bundle order: all an evaluator
    of the vectors needs to prepare."""
    by_key = {flag["key"]: flag for flag in flags}
    needed: set[str] = set()
    pending = [flag["key"] for flag in chosen]
    while pending:
        key = pending.pop()
        if key not in needed:
            needed.add(key)
            pending.extend(r["flag"] for r in by_key[key]["requires"])
    return [flag for flag in flags if flag["key"] in needed]


def _vector(evaluator: Evaluator, flag: Flag, user: dict[str, Any], why: str) -> dict[str, Any]:
    result = evaluator.evaluate(user, flag["key"])
    value = str(user[flag["bucketing"]["by"]])
    h = hash_value(flag["bucketing"]["salt"], value)
    return {
        "flag": flag["key"],
        "user": user,
        "variant": result.variant,
        "reason": result.reason,
        "hash": h,
        "alloc": alloc(h),
        "point": point(h),
        "why": why,
    }


def _user(bys: list[str], value: str, attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {**attributes, **dict.fromkeys(bys, value)}


def build_vectors(bundle: Bundle) -> dict[str, Any]:
    sampled = _sample(bundle["flags"])
    needed = _with_requirements(bundle["flags"], sampled)
    evaluator = Evaluator.from_compiled({**bundle, "flags": needed})
    bys = sorted({flag["bucketing"]["by"] for flag in bundle["flags"]})
    vectors: list[dict[str, Any]] = []
    for flag in sampled:
        key, salt = flag["key"], flag["bucketing"]["salt"]
        attributes = satisfying(flag["targeting"], flag["bucketing"]["by"])
        # A flag that serves nobody, or gives everyone its rollout, has no boundary.
        bucketed = flag["serving"] and flag["rollout"] is None
        boundaries = _boundaries(flag) if bucketed else []
        for index, (why, targets) in enumerate(boundaries):
            best: dict[str, Any] | None = None
            for attempt in range(ATTEMPTS):
                value = value_hashing_to(salt, targets, f"{key}-{index}-{attempt}")
                if value is None:
                    break
                best = _vector(evaluator, flag, _user(bys, value, attributes), why)
                if best["reason"] in REACHED:
                    break
            if best is not None:
                vectors.append(best)
        for index in range(ORDINARY_USERS):
            user = _user(bys, f"user-{key}-{index}", attributes)
            vectors.append(_vector(evaluator, flag, user, "an ordinary user"))
        if bucketed:
            for what, text in SURROGATES:
                user = _user(bys, f"user-{key}-{text}-0", attributes)
                vectors.append(_vector(evaluator, flag, user, f"an id with {what}"))
    return {
        "version": VECTORS_VERSION,
        "bundle_content_id": bundle["release"]["content_id"],
        "vectors": _without_private_values(bundle, vectors),
    }


def _without_private_values(bundle: Bundle, vectors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The vectors, less any whose user holds a value of a private attribute that the
    definitions name (its digest is in the bundle): vectors are published like the
    bundle, and their made-up ids must not reveal one by chance (docs/vectors.md)."""
    if "private" not in bundle:
        return vectors
    salt, hidden = bundle["private"]["salt"], bundle["private"]["attributes"]
    named = {
        value
        for flag in bundle["flags"]
        for _part, _attribute, digests in private_comparisons(flag, hidden)
        for value in digests
    }

    def reveals(user: Mapping[str, Any]) -> bool:
        for attribute in hidden:
            text = as_text(user.get(attribute))
            if text is not None and digest(salt, attribute, text) in named:
                return True
        return False

    return [vector for vector in vectors if not reveals(vector["user"])]
