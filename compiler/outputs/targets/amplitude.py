"""Target `amplitude`: the bundle in Amplitude Experiment's evaluation flag-config format.

Every bundle flag becomes one Amplitude flag, in the same order, with its requirements
as `dependencies` and as gate segments that return `off` (see ../shared/AMPLITUDE.md):

1. a flag that serves nobody: one segment, `off`
2. user overrides (one segment per variant), then cohort overrides
3. one gate per requirement: `result.<flag>.key` not one of the allowed variants -> `off`
4. rollout: a segment on the targeting conditions, no bucket
5. the bucket: targeting as conditions, allocation [0, traffic), our ranges as
   distributions; a user no segment takes gets no variant

expc's "not enrolled" is Amplitude's `off` or no variant. Nested groups and
experiments in several groups are plain dependency gates, which Amplitude's engine
evaluates although its web UI cannot create them. Attributes other than `user_id` and
`device_id` are read from `user_properties`.

Each expc condition becomes Amplitude conditions that hold for exactly the same
values, and its negation (under `none`) conditions that hold for exactly the others, a
missing attribute included. Amplitude compares numbers and versions as text where they
do not parse, reads `$` as "end, or before a final line break", and matches `true` /
`false` in any case, so the export adds guard conditions (docs/amplitude.md). What the
format cannot express raises `ExportError`, naming the flag and what to write instead.
The differences that remain are listed, with a vector each, in docs/amplitude.md.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from expc.outputs.bundle_types import Bundle, Flag
from expc.outputs.private import PrivateValueError, private_comparisons
from expc.sdk.conditions import as_number, as_version

OFF = "off"
NONE = "(none)"  # Amplitude's word for "missing" in condition values
TOP_LEVEL_ATTRIBUTES = {"user_id", "device_id"}
MAX_TERMS = 256
_FLAG_TYPES = {
    "experiment": "experiment",
    "mutex": "mutual-exclusion-group",
    "holdout": "holdout-group",
}
_COMPARISONS = {"lt": "less", "lte": "less or equal", "gt": "greater", "gte": "greater or equal"}
_OPPOSITE = {"lt": "gte", "lte": "gt", "gt": "lte", "gte": "lt"}

# Regular expressions that mean the same in every dialect Amplitude's SDKs use:
# JavaScript (no flags), Python `re`, Go (RE2), Java and Kotlin, ICU (iOS) and Ruby.
# - Each starts at `^` and may run on to the end of the value, so searching SDKs and
#   Kotlin, which requires a match of the whole value, agree. `[\s\S]` is any character
#   (`.` stops at line breaks).
# - No lookaround (RE2 has none), no `\A` or `\z` (JavaScript has none), no `\u` (RE2).
# - `$` is the very end in JavaScript and Go, but Python, Java and ICU also accept it
#   before a final line break: a pattern that relies on `$` goes with a condition that
#   the value does not end in one (contain one, where a value never may).
_ANY = r"[\s\S]*"
# Every character one of those dialects ends a line with. NEL, LS and PS stand as
# themselves: no escape for them is understood by all six dialects.
_LINE_BREAK = "[\\n\\x0B\\f\\r\u0085\u2028\u2029]"
ENDS_IN_LINE_BREAK = f"^{_ANY}{_LINE_BREAK}$"
HAS_LINE_BREAK = f"^{_ANY}{_LINE_BREAK}{_ANY}"
ANYTHING = f"^{_ANY}"
# The grammars of `expc.sdk.conditions.as_number` and `as_version`.
NUMBER = r"^-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?$"
VERSION = r"^[0-9]+\.[0-9]+(?:\.[0-9]+(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?)?$"
# Amplitude compares a value that reads as true/false in any case without regard to case.
BOOLEAN_WORD = "^(?:[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])$"
_BOOLEAN_WORDS = ("true", "false")
# Characters special in some dialect; a backslash makes each literal in all of them
# (JavaScript's strict `u` mode too, which refuses `\-` or `\#`). `#` is written `\x23`:
# Amplitude's PHP SDK wraps patterns in `#` delimiters.
_SPECIAL = frozenset("\\^$.|?*+()[]{}")


class ExportError(ValueError):
    """The bundle uses something Amplitude's format cannot express exactly."""


Term = list[dict[str, Any]]  # conditions that must all hold
Dnf = list[Term]  # any one term
Test = Callable[[str, Sequence[str]], dict[str, Any]]  # (Amplitude op, values) -> condition


@dataclass(frozen=True)
class Exported:
    """An expc condition in Amplitude's terms: `holds` is true for exactly the values
    that pass it; `fails` for exactly the others, a missing attribute included."""

    holds: Dnf
    fails: Dnf

    def negated(self) -> Exported:
        return Exported(self.fails, self.holds)


def selector(attribute: str) -> list[str]:
    if attribute in TOP_LEVEL_ATTRIBUTES:
        return ["context", "user", attribute]
    return ["context", "user", "user_properties", attribute]


def _tests(path: list[str]) -> Test:
    def test(op: str, values: Sequence[str]) -> dict[str, Any]:
        return {"selector": list(path), "op": op, "values": list(values)}

    return test


def _missing(test: Test) -> Term:
    # Amplitude holds `is (none)` for a missing attribute and for the text "(none)";
    # `less than "(none)"` also holds for a missing one, but never for that text.
    return [test("is", [NONE]), test("less", [NONE])]


def _equal(test: Test, values: Sequence[str], flag: str) -> Exported:
    """`in`: the value is one of `values`, compared exactly."""
    for value in values:
        if value == NONE:
            raise ExportError(
                f"{flag}: the value '(none)' means 'missing' to Amplitude; "
                "use exists / not_exists, or another value"
            )
        if value.startswith("["):
            try:
                is_list = isinstance(json.loads(value), list)
            except ValueError:
                is_list = False
            if is_list:
                raise ExportError(
                    f"{flag}: the value {value!r} reads as a JSON list, whose items "
                    "Amplitude compares one by one; use a value that is not a JSON list"
                )
    boolean = [v for v in values if v.lower() in _BOOLEAN_WORDS]
    if not boolean:
        return Exported([[test("is", values)]], [[test("is not", values)]])
    if any(_has_control(v) for v in values):
        raise ExportError(
            f"{flag}: a value with a control character or line break beside true/false "
            "cannot be compared exactly in Amplitude; list them in separate conditions"
        )
    # Amplitude's `is` takes "TRUE" for "true": ask for the exact spelling. Its Python
    # SDK spells a boolean true "True", so that spelling stands for "true" too.
    spellings = sorted({*boolean, *(["True"] if "true" in boolean else [])})
    exact = "^(?:" + "|".join(spellings) + ")$"
    holds: Dnf = [[test("is", values), test("regex does not match", [BOOLEAN_WORD])]]
    holds += [[test("is", [word]), test("regex match", [f"^{word}$"])] for word in spellings]
    fails: Dnf = [
        [test("is not", values)],
        [
            test("regex match", [BOOLEAN_WORD]),
            test("regex does not match", [exact]),
        ],
    ]
    return Exported(holds, fails)


def _has_control(text: str) -> bool:
    return any(unicodedata.category(c) == "Cc" or c in "\u2028\u2029" for c in text)


def _literal(text: str, flag: str, op: str) -> str:
    if _has_control(text):
        raise ExportError(
            f"{flag}: the '{op}' value {text!r} holds a control character or line break, "
            "which Amplitude's regular expressions do not all read alike; remove it"
        )
    return "".join("\\" + c if c in _SPECIAL else "\\x23" if c == "#" else c for c in text)


def _present(test: Test) -> Exported:
    return Exported([[test("regex match", [ANYTHING])]], [_missing(test)])


def _pattern_test(test: Test, pattern: str, guards: Sequence[str] = ()) -> Exported:
    """A value that matches `pattern` and none of `guards`."""
    holds = [test("regex match", [pattern])] + [
        test("regex does not match", [guard]) for guard in guards
    ]
    fails: Dnf = [_missing(test), [test("regex does not match", [pattern])]]
    fails += [[test("regex match", [guard])] for guard in guards]
    return Exported([holds], fails)


def _text(test: Test, op: str, values: Sequence[str], flag: str) -> Exported:
    """`starts_with`, `ends_with`, `contains`, as regular expressions on escaped text."""
    if "" in values:  # every text starts with, ends with and contains ""
        return _present(test)
    either = "(?:" + "|".join(_literal(v, flag, op) for v in values) + ")"
    if op == "starts_with":
        return _pattern_test(test, f"^{either}{_ANY}")
    if op == "contains":
        return _pattern_test(test, f"^{_ANY}{either}{_ANY}")
    # None of the values ends in a line break, so a value that does cannot end in one.
    return _pattern_test(test, f"^{_ANY}{either}$", [ENDS_IN_LINE_BREAK])


def _ordered(test: Test, op: str, bound: str, flag: str) -> Exported:
    """Number and version comparisons. Amplitude falls back to comparing text where a
    value does not parse; the guards let through only values that parse alike in
    expc and in every SDK, so that the comparison never falls back."""
    versions = op.startswith("version_")
    if versions:
        parsed = as_version(bound)
        if parsed is None:
            raise ExportError(
                f"{flag}: '{op}' against {bound!r}, which is not a version "
                "MAJOR.MINOR[.PATCH]; write e.g. 10.0 or 5.2.0"
            )
        if parsed[3] == 0:
            raise ExportError(
                f"{flag}: '{op}' against {bound!r}: Amplitude orders prereleases as plain "
                "text (beta.10 before beta.9); write a release such as 5.2.0"
            )
    elif as_number(bound) is None:
        raise ExportError(
            f"{flag}: '{op}' against {bound!r}, which is not a plain decimal number; "
            "write digits, e.g. 7 or 2.5"
        )
    plain = op.removeprefix("version_")
    prefix = "version " if versions else ""
    grammar = VERSION if versions else NUMBER
    # The guards come first: Amplitude stops at the first condition that fails, and
    # its version parser backtracks badly on some long texts that are not versions.
    guarded = _pattern_test(test, grammar, [HAS_LINE_BREAK])
    compared = [test(prefix + _COMPARISONS[plain], [bound])]
    opposite = [test(prefix + _COMPARISONS[_OPPOSITE[plain]], [bound])]
    return Exported([guarded.holds[0] + compared], [*guarded.fails, opposite])


def _leaf(condition: Mapping[str, Any], flag: str) -> Exported:
    op: str = condition["op"]
    values: list[str] = list(condition["values"])
    test = _tests(selector(condition["attribute"]))
    if op in ("exists", "not_exists"):
        return _present(test) if op == "exists" else _present(test).negated()
    if op in ("is", "in"):
        return _equal(test, values, flag)
    if op in ("is_not", "not_in"):
        return _equal(test, values, flag).negated()
    if op in ("starts_with", "ends_with", "contains"):
        return _text(test, op, values, flag)
    if op == "matches":
        # Passed on as written: expc and Amplitude's Python SDK read it with `re`.
        return Exported(
            [[test("regex match", values)]],
            [_missing(test), [test("regex does not match", values)]],
        )
    if op in _OPPOSITE or op.removeprefix("version_") in _OPPOSITE:
        return _ordered(test, op, values[0], flag)
    raise ExportError(f"{flag}: operator '{op}' has no Amplitude equivalent")


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
            return _bounded([term for child in children for term in child], flag)
        terms: Dnf = [[]]
        for child in children:
            terms = _bounded([left + right for left in terms for right in child], flag)
        return terms
    exported = _leaf(condition, flag)
    return _bounded(exported.fails if negated else exported.holds, flag)


def _bounded(terms: Dnf, flag: str) -> Dnf:
    if len(terms) > MAX_TERMS:
        raise ExportError(
            f"{flag}: targeting expands past {MAX_TERMS} OR terms; simplify it, e.g. "
            "move shared conditions into a cohort"
        )
    return terms


def _segment(dnf: Dnf, **rest: Any) -> dict[str, Any]:
    segment: dict[str, Any] = dict(rest)
    if dnf != [[]]:
        segment["conditions"] = dnf
    return segment


def export_flag(flag: Flag) -> dict[str, Any]:
    key = flag["key"]
    by = flag["bucketing"]["by"]
    payloads = {v["key"]: v.get("payload") for v in flag["variants"]}
    if OFF in payloads:
        raise ExportError(
            f"{key}: the variant key '{OFF}' is Amplitude's 'not enrolled'; rename the variant"
        )
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
            listed = _equal(_tests(selector(by)), sorted(users), key)
            segments.append(_segment(listed.holds, variant=variant))
        for entry in flag["overrides"]["cohorts"]:
            segments.append(_segment(to_dnf(entry["when"], key), variant=entry["variant"]))
        for requirement in flag["requires"]:
            result = _tests(["result", requirement["flag"], "key"])
            allowed = _equal(result, requirement["variants"], key)
            segments.append(_segment(allowed.fails, variant=OFF))
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
    if "private" in bundle:
        _refuse_private(bundle["flags"], bundle["private"]["attributes"])
    return {"flags": flags_for(bundle["flags"])}


def _refuse_private(flags: Sequence[Flag], attributes: Sequence[str]) -> None:
    """Amplitude compares raw values: a flag that compares a private attribute's
    digests (DESIGN §12) cannot be exported, and writing its values would publish them."""
    for flag in flags:
        for part, attribute, _digests in private_comparisons(flag, attributes):
            raise PrivateValueError(
                f"{flag['key']}: its {part} compare private attribute '{attribute}', which "
                "the bundle holds only as digests; Amplitude compares raw values, so it "
                f"cannot evaluate them: decide on another attribute there, drop the "
                f"amplitude target, or remove '{attribute}' from private_attributes",
                flag["key"],
                part,
            )


def flags_for(flags: Sequence[Flag]) -> list[dict[str, Any]]:
    return [export_flag(flag) for flag in flags]
