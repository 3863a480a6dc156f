"""The Python SDK: evaluates a bundle for a user. Standard library and mmh3 only.

    evaluator = Evaluator.load("generated/bundle.json")
    evaluator.evaluate({"user_id": "u-1", "country": "NO"})        # every flag
    evaluator.evaluate({"user_id": "u-1"}, "checkout-one-page")      # one flag

Everything that does not depend on the user is prepared when a bundle loads (salts
with their "/", range boundaries, predicates, and every possible `Result`), so that
evaluating a flag is a few lookups and at most one hash. `swap` replaces the bundle
atomically while other threads evaluate: each evaluation reads the current program
once and uses it to the end.

Two promises, each kept in one place. `evaluate` never raises on any user input: an
attribute that cannot be read (a mapping whose `get` raises, a hostile key) counts as
missing, and a condition that raises fails (`safely`); values are turned into text by
`conditions.as_text`, which never calls a subclass's methods. Loading never raises
anything but `BundleError`: the bundle is checked field by field while it is prepared,
so a loaded bundle cannot make an evaluation fail either.
"""

from __future__ import annotations

import hashlib
import json
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

from expc.sdk.bucketing import POINTS, murmur3
from expc.sdk.conditions import (
    Predicate,
    as_text,
    attributes_of,
    compile_condition,
    well_formed,
)

SUPPORTED_MAJOR = 1
# Conditions nest at most this deep (docs/bundle.md): evaluating them recurses.
MAX_DEPTH = 100
_TEXT_OPERATORS = frozenset(
    ["is", "is_not", "in", "not_in", "contains", "starts_with", "ends_with", "matches"]
)
_ORDERED_OPERATORS = frozenset(
    ["lt", "lte", "gt", "gte", "version_lt", "version_lte", "version_gt", "version_gte"]
)
_OPERATORS = _TEXT_OPERATORS | _ORDERED_OPERATORS | {"exists", "not_exists"}
_GROUPS = ("all", "any", "none")

BundleSource = Mapping[str, Any] | bytes | bytearray | str | Path


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


# --- reading a bundle's fields: anything of the wrong shape is a BundleError ---------


def _kind(value: Any) -> str:
    """What a JSON value is, for an error message."""
    kinds = {dict: "an object", list: "a list", str: "text", bool: "true/false"}
    if value is None:
        return "null"
    if type(value) in (int, float):
        return "a number"
    return kinds.get(type(value), type(value).__name__)


def _shown(value: Any, limit: int = 80) -> str:
    """A value for an error message: short, printable, and safe whatever it is."""
    try:
        if type(value) is str:
            text = value
        elif value is None or type(value) in (bool, int, float):
            text = json.dumps(value)
        else:
            return _kind(value)
    except Exception:  # an integer too long to write
        return _kind(value)
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[:limit] + "..."


def _describe(error: BaseException) -> str:
    try:
        text = str(error)
    except Exception:
        text = ""
    return f"{type(error).__name__}: {_shown(text, 300)}" if text else type(error).__name__


def _field(document: Any, name: str, where: str) -> Any:
    if type(document) is not dict:
        raise BundleError(f"{where} must be an object, not {_kind(document)}")
    if name not in document:
        raise BundleError(f"{where} lacks {name!r}")
    return document[name]


def _text(document: Any, name: str, where: str) -> str:
    value = _field(document, name, where)
    if type(value) is not str:
        raise BundleError(f"{where}: {name} must be text, not {_kind(value)}")
    return value


def _boolean(document: Any, name: str, where: str) -> bool:
    value = _field(document, name, where)
    if type(value) is not bool:
        raise BundleError(f"{where}: {name} must be true or false, not {_kind(value)}")
    return value


def _integer(document: Any, name: str, where: str, highest: int) -> int:
    value = _field(document, name, where)
    if type(value) is not int or not 0 <= value <= highest:
        raise BundleError(f"{where}: {name} must be an integer 0..{highest}, not {_shown(value)}")
    return value


def _array(document: Any, name: str, where: str) -> list[Any]:
    value = _field(document, name, where)
    if type(value) is not list:
        raise BundleError(f"{where}: {name} must be a list, not {_kind(value)}")
    return value


def _texts(document: Any, name: str, where: str) -> list[str]:
    values = _array(document, name, where)
    if not all(type(value) is str for value in values):
        raise BundleError(f"{where}: every one of {name} must be text")
    return values


def _range(variant: Any, where: str) -> tuple[int, int]:
    bounds = _field(variant, "range", where)
    if (
        type(bounds) is not list
        or len(bounds) != 2
        or type(bounds[0]) is not int
        or type(bounds[1]) is not int
        or not 0 <= bounds[0] <= bounds[1] <= POINTS
    ):
        raise BundleError(f"{where}: range must be two integers 0 <= start <= end <= {POINTS}")
    return bounds[0], bounds[1]


def _check_condition(condition: Any, where: str, depth: int = 1) -> None:
    """Refuse a condition `compile_condition` would not understand, or one nested so
    deep that evaluating it could exhaust the stack."""
    if depth > MAX_DEPTH:
        raise BundleError(f"{where}: conditions nest deeper than {MAX_DEPTH} levels")
    if type(condition) is not dict:
        raise BundleError(f"{where}: a condition must be an object, not {_kind(condition)}")
    for group in _GROUPS:
        if group in condition:
            for child in _array(condition, group, where):
                _check_condition(child, where, depth + 1)
            return
    _text(condition, "attribute", where)
    op = _text(condition, "op", where)
    if op not in _OPERATORS:
        raise BundleError(f"{where}: unknown operator {_shown(op)}")
    values = _texts(condition, "values", where)
    if op in _ORDERED_OPERATORS and not values:
        raise BundleError(f"{where}: {op} needs a value to compare with")


def _chosen(results: Mapping[str, Result], name: Any, where: str) -> Result:
    """The result naming one of the flag's variants."""
    if type(name) is not str or name not in results:
        raise BundleError(f"{where} names {_shown(name)}, which is not one of its variants")
    return results[name]


class PreparedFlag:
    """One flag, prepared for evaluation. A flag of the wrong shape is refused here
    (`BundleError`), so that evaluating it cannot fail later."""

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
        self.key: str = _text(flag, "key", where)
        where = f"flag {_shown(self.key)}"
        self.kind: str = _text(flag, "kind", where)
        self.serving: bool = _boolean(flag, "serving", where)
        bucketing = _field(flag, "bucketing", where)
        self.by: str = _text(bucketing, "by", f"{where} bucketing")
        salt = _text(bucketing, "salt", f"{where} bucketing")
        if well_formed(salt) is not salt:
            raise BundleError(f"{where}: the salt is not Unicode text (a lone surrogate)")
        self.prefix: str = salt + "/"
        self.traffic: int = _integer(flag, "traffic", where, 100)
        payloads: dict[str, Any] = {}
        self.starts: list[int] = []
        self.ends: list[int] = []
        for variant in _array(flag, "variants", where):
            name = _text(variant, "key", f"{where} variant")
            if name in payloads:
                raise BundleError(f"{where}: two variants are called {_shown(name)}")
            payloads[name] = variant.get("payload")
            start, end = _range(variant, f"{where} variant {_shown(name)}")
            if self.ends and start < self.ends[-1]:
                raise BundleError(f"{where}: variant ranges overlap or are out of order")
            self.starts.append(start)
            self.ends.append(end)
        self.outcomes = [Result(name, payload, "bucketed") for name, payload in payloads.items()]
        overridden = {name: Result(name, payload, "override") for name, payload in payloads.items()}
        overrides = _field(flag, "overrides", where)
        users = _field(overrides, "users", f"{where} overrides")
        if type(users) is not dict:
            raise BundleError(f"{where}: overrides.users must be an object, not {_kind(users)}")
        self.user_overrides = {
            user: _chosen(overridden, name, f"{where}: the override of {_shown(user)}")
            for user, name in users.items()
        }
        cohorts = _array(overrides, "cohorts", f"{where} overrides")
        chosen = [
            _chosen(overridden, _field(entry, "variant", where), f"{where}: a cohort override")
            for entry in cohorts
        ]
        for entry in cohorts:
            _check_condition(_field(entry, "when", where), f"{where} override")
        # What each condition reads, so `expc.sdk.batch` knows which depend on the id.
        self.cohort_reads = [attributes_of(entry["when"]) for entry in cohorts]
        self.cohort_overrides: list[tuple[Predicate, Result]] = [
            (compile_condition(entry["when"]), result)
            for entry, result in zip(cohorts, chosen, strict=True)
        ]
        # Resolved by _Program once every flag exists: (flag, its results that satisfy
        # the requirement, the result when they do not).
        self.requires: list[tuple[str, frozenset[Result], Result]] = []
        targeting = _field(flag, "targeting", where)
        if targeting is not None:
            _check_condition(targeting, f"{where} targeting")
        self.targeting: Predicate | None = (
            None if targeting is None else compile_condition(targeting)
        )
        self.targeting_reads = frozenset() if targeting is None else attributes_of(targeting)
        rollout = _field(flag, "rollout", where)
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
            # `value` is well-formed (see `_bucketing_value`), so its UTF-8 is the spec's.
            h = murmur3(self.prefix + value)
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

    def __init__(self, bundle: Any) -> None:
        self.content_id: str = _text(
            _field(bundle, "release", "the bundle"), "content_id", "release"
        )
        flags = _array(bundle, "flags", "the bundle")
        self.flags = [PreparedFlag(flag, f"flags[{index}]") for index, flag in enumerate(flags)]
        self.by_key = {flag.key: index for index, flag in enumerate(self.flags)}
        if len(self.by_key) != len(self.flags):
            twice = next(f.key for i, f in enumerate(self.flags) if self.by_key[f.key] != i)
            raise BundleError(f"two flags are called {_shown(twice)}")
        for prepared, flag in zip(self.flags, flags, strict=True):
            where = f"flag {_shown(prepared.key)}"
            for requirement in _array(flag, "requires", where):
                required = _text(requirement, "flag", f"{where} requires")
                position = self.by_key.get(required)
                if position is None or position >= self.by_key[prepared.key]:
                    raise BundleError(f"{where} requires {_shown(required)}, not before it")
                giving = self.flags[position].giving
                allowed = frozenset(
                    r
                    for name in _texts(requirement, "variants", f"{where} requires")
                    for r in giving.get(name, [])
                )
                failed = Result(None, None, _text(requirement, "reason", f"{where} requires"))
                prepared.requires.append((required, allowed, failed))
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


# One encoder for every call: `json.dumps` with options builds a new one each time,
# which cost a tenth of writing a bundle of 100,000 flags.
_COMPACT = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def compact_json(value: Any) -> str:
    """Canonical compact JSON: keys sorted, no spaces, non-ASCII as UTF-8."""
    return _COMPACT.encode(value)


def content_id(schema_version: str, flag_texts: Sequence[str]) -> str:
    """The content id (docs/bundle.md): sha256 of the compact canonical JSON of
    `{"flags": [...], "schema_version": ...}`, from each flag's compact JSON text. The
    compiler passes the texts it writes into the bundle, so nothing is encoded twice."""
    body = f'{{"flags":[{",".join(flag_texts)}],"schema_version":{compact_json(schema_version)}}}'
    return "sha256:" + hashlib.sha256(body.encode("utf-8")).hexdigest()


def content_id_of(bundle: Mapping[str, Any]) -> str:
    """Recompute a bundle's content id (see docs/bundle.md)."""
    return content_id(bundle["schema_version"], [compact_json(f) for f in bundle["flags"]])


def _read(source: BundleSource) -> Any:
    if isinstance(source, Path):
        source = source.read_bytes()
    if isinstance(source, bytes | bytearray | str):
        return json.loads(source)
    if isinstance(source, Mapping):
        # Through JSON, so that what is checked and kept is plain data whatever the
        # mapping's classes do (a dict subclass, a mapping that answers differently twice).
        return json.loads(json.dumps(dict(source)))
    raise BundleError(
        f"a bundle is JSON bytes or text, a path or a mapping, not {type(source).__name__}"
    )


def parse_bundle(source: BundleSource) -> dict[str, Any]:
    """Read and verify a bundle given as a dict, JSON bytes or text, or a path.

    Raises `BundleError`, and nothing else, whatever the source holds."""
    try:
        document = _read(source)
    except BundleError:
        raise
    except Exception as error:  # OSError, JSON errors, RecursionError on deep nesting, ...
        raise BundleError(f"cannot read the bundle: {_describe(error)}") from error
    if type(document) is not dict:
        raise BundleError("a bundle is a JSON object")
    version = document.get("schema_version")
    if type(version) is not str or version.split(".", 1)[0] != str(SUPPORTED_MAJOR):
        shown = "(none)" if version is None else _shown(version)
        raise BundleError(
            f"bundle schema version {shown} is not supported; this evaluator "
            f"reads {SUPPORTED_MAJOR}.x: upgrade expc"
        )
    release = document.get("release")
    expected = release.get("content_id") if type(release) is dict else None
    if type(expected) is not str:
        raise BundleError("the bundle lacks its release.content_id")
    if "flags" not in document:
        raise BundleError("the bundle lacks 'flags'")
    try:
        actual = content_id_of(document)
    except UnicodeEncodeError as error:
        raise BundleError(
            "the bundle holds text that is not Unicode (a lone surrogate such as \\ud800), "
            "which has no content id"
        ) from error
    except Exception as error:
        raise BundleError(f"cannot compute the content id: {_describe(error)}") from error
    if actual != expected:
        raise BundleError(
            f"content id mismatch: the bundle says {_shown(expected)}, its content hashes "
            f"to {actual}; it was altered or truncated"
        )
    return document


class Evaluator:
    """Evaluates the flags of one bundle; `swap` replaces the bundle atomically.

    Constructing, `load`, `swap` and `update` raise `BundleError` and nothing else."""

    def __init__(self, bundle: BundleSource) -> None:
        self._program = self._prepare(bundle)

    @classmethod
    def load(cls, path: str | Path) -> Evaluator:
        try:
            source = Path(path)
        except TypeError as error:
            raise BundleError(f"cannot read the bundle: {_describe(error)}") from error
        return cls(source)

    @classmethod
    def from_compiled(cls, bundle: Mapping[str, Any]) -> Evaluator:
        """An evaluator for a bundle this process just compiled (vectors, simulate, eval):
        nothing to verify, so its content is not hashed a second time."""
        evaluator = cls.__new__(cls)
        evaluator._program = cls._prepare(bundle, verify=False)
        return evaluator

    @staticmethod
    def _prepare(bundle: BundleSource, verify: bool = True) -> _Program:
        try:
            return _Program(parse_bundle(bundle) if verify else bundle)
        except BundleError:
            raise
        except Exception as error:  # e.g. a pattern `re` refuses
            raise BundleError(f"the bundle is malformed: {_describe(error)}") from error

    @property
    def content_id(self) -> str:
        return self._program.content_id

    @property
    def flag_keys(self) -> list[str]:
        return [flag.key for flag in self._program.flags]

    @property
    def prepared_flags(self) -> list[PreparedFlag]:
        """The current bundle's flags as prepared for evaluation (for `expc.sdk.batch`)."""
        return self._program.flags

    def swap(self, bundle: BundleSource) -> None:
        """Verify and prepare a new bundle, then replace the current one in one step."""
        self._program = self._prepare(bundle)

    def update(self, bundle: BundleSource) -> bool:
        """Like `swap`, but only when the bundle's content id differs from the current
        one: True when it replaced it. A republished identical bundle costs a parse."""
        document = parse_bundle(bundle)
        if document["release"]["content_id"] == self._program.content_id:
            return False
        self._program = self._prepare(document, verify=False)
        return True

    @overload
    def evaluate(self, user: Any) -> dict[str, Result]: ...

    @overload
    def evaluate(self, user: Any, key: str) -> Result: ...

    def evaluate(self, user: Any, key: str | None = None) -> dict[str, Result] | Result:
        """Every flag's result for `user` (a mapping of attributes), or one flag's.
        Never raises on any `user`; raises KeyError for a key not in the bundle."""
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
    locals from one tuple (`PreparedFlag.plan`). Nothing in it can raise: reading the
    bucketing value is guarded, `_bucketing_value` catches, conditions run under `safely`.
    """
    try:
        # type() first: isinstance against an ABC costs as much as evaluating a flag.
        attributes: Mapping[str, Any] = (
            user if type(user) is dict or isinstance(user, Mapping) else {}
        )
    except Exception:  # an object whose __class__ raises
        attributes = {}
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
            # Inlined (once per user): ASCII text, the usual id, is used as it is.
            try:
                value = attributes.get(by)
                if type(value) is not str:
                    value = _bucketing_value(value)
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
            trace.extend(flag.explain(value, results, result))
    return results


def _bucketing_value(raw: Any) -> str:
    """A user's bucketing value: well-formed text, "" when there is none (docs/bundle.md).

    Well-formed matters twice: mmh3 would crash on a lone surrogate, and a JavaScript SDK
    hashes what TextEncoder makes of one (U+FFFD)."""
    try:
        return as_text(raw) or ""
    except Exception:  # a hostile value (its __class__ raising): no value
        return ""
