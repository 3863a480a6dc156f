"""The Python SDK: evaluates a bundle for a user. Standard library and mmh3 only.

    evaluator = Evaluator.load("generated/bundle.json")
    evaluator.evaluate({"user_id": "u-1", "country": "NO"})        # every flag
    evaluator.evaluate({"user_id": "u-1"}, "checkout-one-page")      # one flag

Everything that does not depend on the user is prepared when a bundle loads (salts
with their "/", range boundaries, predicates, and every possible `Result`), so that
evaluating a flag is a few lookups and at most one hash. `evaluate` never raises on
odd user input. `swap` replaces the bundle atomically while other threads evaluate:
each evaluation reads the current program once and uses it to the end.
"""

from __future__ import annotations

import hashlib
import json
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import mmh3

from compiler.conditions import Predicate, as_text, attributes_of, compile_condition

SUPPORTED_MAJOR = 1


class BundleError(ValueError):
    """A bundle that cannot be used: unreadable, of an unknown schema, or altered."""


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


@dataclass(frozen=True, slots=True)
class Step:
    """One decision on the way to a result, for `expc eval --explain`."""

    flag: str
    what: str
    detail: str


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

    def __init__(self, flag: Mapping[str, Any]) -> None:
        self.key: str = flag["key"]
        self.kind: str = flag["kind"]
        self.serving: bool = flag["serving"]
        self.by: str = flag["bucketing"]["by"]
        self.prefix: str = flag["bucketing"]["salt"] + "/"
        self.traffic: int = flag["traffic"]
        variants = flag["variants"]
        payloads = {v["key"]: v.get("payload") for v in variants}
        self.starts = [v["range"][0] for v in variants]
        self.ends = [v["range"][1] for v in variants]
        self.outcomes = [Result(v["key"], v.get("payload"), "bucketed") for v in variants]
        overridden = {name: Result(name, payload, "override") for name, payload in payloads.items()}
        overrides = flag["overrides"]
        self.user_overrides = {user: overridden[name] for user, name in overrides["users"].items()}
        # What each condition reads, so `compiler.batch` knows which depend on the id.
        self.cohort_reads = [attributes_of(entry["when"]) for entry in overrides["cohorts"]]
        self.cohort_overrides: list[tuple[Predicate, Result]] = [
            (compile_condition(entry["when"]), overridden[entry["variant"]])
            for entry in overrides["cohorts"]
        ]
        # Resolved by _Program once every flag exists: (flag, its results that satisfy
        # the requirement, the result when they do not).
        self.requires: list[tuple[str, frozenset[Result], Result]] = []
        targeting = flag["targeting"]
        self.targeting: Predicate | None = (
            None if targeting is None else compile_condition(targeting)
        )
        self.targeting_reads = frozenset() if targeting is None else attributes_of(targeting)
        rollout = flag["rollout"]
        self.rollout = (
            None if rollout is None else Result(rollout, payloads.get(rollout), "rollout")
        )
        # variant -> every result of this flag that gives it
        self.giving: dict[str, list[Result]] = {
            name: [result] for name, result in overridden.items()
        }
        for result in [*self.outcomes, *([self.rollout] if self.rollout else [])]:
            self.giving[str(result.variant)].append(result)

    def prepare_plan(self) -> None:
        """The fields `_run` reads, as one tuple: unpacked into fast locals per flag."""
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

    def explain(self, value: str, earlier: Mapping[str, Result], result: Result) -> list[Step]:
        """The numbers behind a result, for people; evaluation itself never calls this."""
        steps = []
        # Requirements are consulted only after overrides, and only for flags that serve.
        consulted = self.requires if result.reason not in ("override", "not-running") else []
        for flag, allowed, _failed in consulted:
            got = earlier[flag].variant if flag in earlier else None
            wanted = sorted({str(r.variant) for r in allowed})
            steps.append(Step(self.key, "requires", f"{flag} gave {got}, needs one of {wanted}"))
            if result.reason == _failed.reason:
                break
        if value and result.reason in ("traffic", "bucketed", "unallocated"):
            h = mmh3.hash(self.prefix + value, 0, False)
            steps.append(
                Step(
                    self.key,
                    "hash",
                    f"murmur3({self.prefix + value!r}) = {h}: alloc {h % 100}, point {h // 100}",
                )
            )
            steps.append(
                Step(
                    self.key,
                    "traffic",
                    f"alloc {h % 100} {'<' if h % 100 < self.traffic else '>='} "
                    f"traffic {self.traffic}",
                )
            )
            ranges = ", ".join(
                f"{o.variant} [{a}, {b})"
                for o, a, b in zip(self.outcomes, self.starts, self.ends, strict=True)
            )
            steps.append(Step(self.key, "ranges", ranges))
        steps.append(Step(self.key, "result", f"{result.variant} ({result.reason})"))
        return steps


def safely(predicate: Predicate, user: Mapping[str, Any]) -> bool:
    try:
        return predicate(user)
    except Exception:  # odd user input fails the condition; evaluation never raises
        return False


class _Program:
    __slots__ = ("by_key", "content_id", "flags", "needed")

    def __init__(self, bundle: Mapping[str, Any]) -> None:
        self.content_id: str = bundle["release"]["content_id"]
        self.flags = [PreparedFlag(flag) for flag in bundle["flags"]]
        self.by_key = {flag.key: index for index, flag in enumerate(self.flags)}
        for prepared, flag in zip(self.flags, bundle["flags"], strict=True):
            for requirement in flag["requires"]:
                position = self.by_key.get(requirement["flag"])
                if position is None or position >= self.by_key[prepared.key]:
                    raise ValueError(
                        f"{prepared.key} requires {requirement['flag']}, not before it"
                    )
                giving = self.flags[position].giving
                allowed = frozenset(
                    r for name in requirement["variants"] for r in giving.get(name, [])
                )
                prepared.requires.append(
                    (requirement["flag"], allowed, Result(None, None, requirement["reason"]))
                )
        for prepared in self.flags:
            prepared.prepare_plan()
        # flag key -> the flags one evaluation of it needs, in bundle order
        self.needed: dict[str, list[PreparedFlag]] = {}

    def needed_for(self, key: str) -> list[PreparedFlag]:
        """The flag and everything it requires, transitively, in evaluation order."""
        if key not in self.needed:
            seen: set[int] = set()
            pending = [self.by_key[key]]
            while pending:
                position = pending.pop()
                if position not in seen:
                    seen.add(position)
                    pending.extend(self.by_key[r[0]] for r in self.flags[position].requires)
            self.needed[key] = [self.flags[position] for position in sorted(seen)]
        return self.needed[key]


def content_id_of(bundle: Mapping[str, Any]) -> str:
    """Recompute a bundle's content id (see docs/bundle.md)."""
    body = {"flags": bundle["flags"], "schema_version": bundle["schema_version"]}
    compact = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(compact.encode("utf-8")).hexdigest()


def parse_bundle(source: Mapping[str, Any] | bytes | str | Path) -> dict[str, Any]:
    """Read and verify a bundle given as a dict, JSON bytes or text, or a path."""
    try:
        if isinstance(source, Path):
            source = source.read_bytes()
        document = json.loads(source) if isinstance(source, bytes | str) else dict(source)
    except (OSError, ValueError) as error:
        raise BundleError(f"cannot read the bundle: {error}") from error
    if not isinstance(document, dict):
        raise BundleError("a bundle is a JSON object")
    version = str(document.get("schema_version", ""))
    major = version.split(".", 1)[0]
    if major != str(SUPPORTED_MAJOR):
        raise BundleError(
            f"bundle schema version {version or '(none)'} is not supported; this evaluator "
            f"reads {SUPPORTED_MAJOR}.x: upgrade expc"
        )
    try:
        expected = document["release"]["content_id"]
        actual = content_id_of(document)
    except (KeyError, TypeError) as error:
        raise BundleError(f"the bundle lacks {error}") from error
    if actual != expected:
        raise BundleError(
            f"content id mismatch: the bundle says {expected}, its content hashes to "
            f"{actual}; it was altered or truncated"
        )
    return document


class Evaluator:
    """Evaluates the flags of one bundle; `swap` replaces the bundle atomically."""

    def __init__(self, bundle: Mapping[str, Any] | bytes | str | Path) -> None:
        self._program = self._prepare(bundle)

    @classmethod
    def load(cls, path: str | Path) -> Evaluator:
        return cls(Path(path))

    @classmethod
    def from_compiled(cls, bundle: Mapping[str, Any]) -> Evaluator:
        """An evaluator for a bundle this process just compiled (vectors, simulate, eval):
        nothing to verify, so its content is not hashed a second time."""
        evaluator = cls.__new__(cls)
        evaluator._program = cls._prepare(bundle, verify=False)
        return evaluator

    @staticmethod
    def _prepare(bundle: Mapping[str, Any] | bytes | str | Path, verify: bool = True) -> _Program:
        document = parse_bundle(bundle) if verify else bundle
        try:
            return _Program(document)  # type: ignore[arg-type]
        except (KeyError, TypeError, IndexError, ValueError) as error:
            raise BundleError(f"the bundle is malformed: {error!r}") from error

    @property
    def content_id(self) -> str:
        return self._program.content_id

    @property
    def flag_keys(self) -> list[str]:
        return [flag.key for flag in self._program.flags]

    @property
    def prepared_flags(self) -> list[PreparedFlag]:
        """The current bundle's flags as prepared for evaluation (for `compiler.batch`)."""
        return self._program.flags

    def swap(self, bundle: Mapping[str, Any] | bytes | str | Path) -> None:
        """Verify and prepare a new bundle, then replace the current one in one step."""
        self._program = self._prepare(bundle)

    @overload
    def evaluate(self, user: Any) -> dict[str, Result]: ...

    @overload
    def evaluate(self, user: Any, key: str) -> Result: ...

    def evaluate(self, user: Any, key: str | None = None) -> dict[str, Result] | Result:
        """Every flag's result for `user` (a mapping of attributes), or one flag's."""
        program = self._program
        if key is None:
            return _run(program.flags, user, None)
        if key not in program.by_key:
            raise KeyError(f"no flag {key!r} in this bundle")
        return _run(program.needed_for(key), user, None)[key]

    def explain(self, user: Any, key: str | None = None) -> tuple[dict[str, Result], list[Step]]:
        """Results and every decision taken on the way, flag by flag."""
        trace: list[Step] = []
        results = _run(self._program.flags, user, trace)
        if key is not None:
            trace = [step for step in trace if step.flag == key]
        return results, trace


def _run(flags: list[PreparedFlag], user: Any, trace: list[Step] | None) -> dict[str, Result]:
    """DESIGN §4, every flag in order, for one user.

    This loop is the whole evaluator, written as one function because a method call per
    flag cost more than the rest of the work; each flag's fields are unpacked into
    locals from one tuple (`PreparedFlag.plan`).
    """
    # type() first: isinstance against an ABC costs as much as evaluating a flag.
    attributes: Mapping[str, Any] = user if type(user) is dict or isinstance(user, Mapping) else {}
    results: dict[str, Result] = {}
    values: dict[str, str] = {}
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
            value = values[by] = _bucketing_value(attributes.get(by))
        result: Result | None = None
        if not serving:
            result = NOT_RUNNING
        elif user_overrides and value in user_overrides:
            result = user_overrides[value]
        else:
            if cohort_overrides:
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
                    point, allocation = divmod(mmh3.hash(prefix + value, 0, False), 100)
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
            trace.extend(flag.explain(value, results, result))
    return results


def _bucketing_value(raw: Any) -> str:
    if type(raw) is str:
        return raw
    return as_text(raw) or ""
