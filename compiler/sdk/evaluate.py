"""The Python SDK: evaluates a bundle for a user. Standard library and mmh3 only.

    evaluator = Evaluator.load("generated/bundle.json")
    evaluator.evaluate({"user_id": "u-1", "country": "NO"})        # every flag
    evaluator.evaluate({"user_id": "u-1"}, "checkout-one-page")      # one flag

The work is split by job: `bundle` reads and verifies a bundle, `program` prepares it,
`reference` is DESIGN §4 as a plain loop (and `explain`), `specialise` writes faster
functions equal to that loop, and `exposures` delivers exposure events. This module
puts them together. `swap` replaces the bundle atomically while other threads
evaluate: each evaluation reads the current `_Runner` once and uses it to the end.

Two promises. `evaluate` never raises on any user input (an attribute that cannot be
read counts as missing, a condition that raises fails), and exposures never raise into
it. Loading never raises anything but `BundleError`: the bundle is checked field by
field while it is prepared, so a loaded bundle cannot make an evaluation fail either.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, overload

from expc.sdk.bundle import (
    MAX_DEPTH,
    SUPPORTED_MAJOR,
    BundleError,
    BundleSource,
    compact_json,
    content_id,
    content_id_of,
    describe,
    parse_bundle,
)
from expc.sdk.exposure_events import ExposureTemplate, templates_for
from expc.sdk.exposures import Exposures, Sink
from expc.sdk.private import Private
from expc.sdk.program import (
    NO_BUCKETING_VALUE,
    NOT_RUNNING,
    TARGETING,
    TRAFFIC,
    UNALLOCATED,
    PreparedFlag,
    Program,
    Result,
    safely,
)
from expc.sdk.reference import Step, evaluate_reference
from expc.sdk.specialise import specialise_all, specialise_one

__all__ = [
    "MAX_DEPTH",
    "NOT_RUNNING",
    "NO_BUCKETING_VALUE",
    "SUPPORTED_MAJOR",
    "TARGETING",
    "TRAFFIC",
    "UNALLOCATED",
    "BundleError",
    "BundleSource",
    "Evaluator",
    "PreparedFlag",
    "Result",
    "Step",
    "compact_json",
    "content_id",
    "content_id_of",
    "parse_bundle",
    "safely",
]

# A flag evaluated alone is specialised on this many-th use: compiling costs about as
# much as a hundred evaluations on the reference loop, and the compiler's own uses
# (conformance vectors) evaluate each flag only a few times.
SPECIALISE_AFTER = 64

Record = Callable[[str, list[ExposureTemplate], int], None]


class _Runner:
    """One prepared bundle and the functions that evaluate it, for one evaluator's
    exposures (`record`, or None without exposures). Replaced whole by `swap`."""

    __slots__ = ("_exposed", "_one", "_record", "_uses", "every", "program")

    def __init__(self, program: Program, record: Record | None, eager: bool) -> None:
        self.program = program
        self._record = record
        self._exposed: dict[Result, ExposureTemplate] = (
            templates_for(program) if record is not None else {}
        )
        self._one: dict[str, Callable[[Any], Result]] = {}
        self._uses: dict[str, int] = {}
        # Every flag at once: specialised now for an application (a swap happens off the
        # request path, on the poller's thread), on first use for the compiler's own.
        self.every: Callable[[Any], dict[str, Result]] = self._specialise_then_run
        if eager:
            self.every = self._every_flag_function()

    def _every_flag_function(self) -> Callable[[Any], dict[str, Result]]:
        return specialise_all(self.program, self._exposed, self._record) or self._reference

    def _specialise_then_run(self, user: Any) -> dict[str, Result]:
        self.every = self._every_flag_function()
        return self.every(user)

    def _reference(self, user: Any) -> dict[str, Result]:
        values: dict[str, str] = {}
        results = evaluate_reference(self.program.flags, user, None, values)
        if self._record is not None:
            self._expose(results, values, self.program.flags)
        return results

    def one(self, user: Any, key: str) -> Result:
        function = self._one.get(key)
        if function is not None:
            return function(user)
        uses = self._uses[key] = self._uses.get(key, 0) + 1
        if uses >= SPECIALISE_AFTER:
            specialised = specialise_one(self.program, key, self._exposed, self._record)
            if specialised is not None:
                self._one[key] = specialised
                return specialised(user)
        values: dict[str, str] = {}
        needed = self.program.needed_for(key)
        results = evaluate_reference(needed, user, None, values)
        if self._record is not None:
            self._expose(results, values, needed[-1:])
        return results[key]

    def _expose(
        self, results: Mapping[str, Result], values: Mapping[str, str], flags: list[PreparedFlag]
    ) -> None:
        """Hand `record` the exposures of `flags`, grouped by bucketing attribute as the
        specialised functions do."""
        assert self._record is not None
        grouped: dict[str, list[ExposureTemplate]] = {}
        for flag in flags:
            if flag.kind == "experiment":
                template = self._exposed.get(results[flag.key])
                if template is not None:
                    grouped.setdefault(flag.by, []).append(template)
        for attribute, templates in grouped.items():
            self._record(values[attribute], templates, sum(t.bit for t in templates))


class Evaluator:
    """Evaluates the flags of one bundle; `swap` replaces the bundle atomically.

    `exposures` is an `Exposures` or a sink (any callable taking a list of events),
    which gets an `Exposures` with its defaults. Constructing, `load`, `swap` and
    `update` raise `BundleError` and nothing else about the bundle."""

    def __init__(self, bundle: BundleSource, *, exposures: Exposures | Sink | None = None) -> None:
        program = self._prepare(bundle)  # first: a refused bundle starts no thread
        self._exposures = _exposures_from(exposures)
        self._runner = _Runner(program, self._record(), eager=True)

    @classmethod
    def load(cls, path: str | Path, *, exposures: Exposures | Sink | None = None) -> Evaluator:
        try:
            source = Path(path)
        except TypeError as error:
            raise BundleError(f"cannot read the bundle: {describe(error)}") from error
        return cls(source, exposures=exposures)

    @classmethod
    def from_compiled(cls, bundle: Mapping[str, Any]) -> Evaluator:
        """An evaluator for a bundle this process just compiled (vectors, simulate, eval):
        nothing to verify, so its content is not hashed a second time, and nothing is
        specialised before it is used."""
        evaluator = cls.__new__(cls)
        evaluator._exposures = None
        evaluator._runner = _Runner(cls._prepare(bundle, verify=False), None, eager=False)
        return evaluator

    @staticmethod
    def _prepare(bundle: BundleSource, verify: bool = True) -> Program:
        try:
            return Program(parse_bundle(bundle) if verify else bundle)
        except BundleError:
            raise
        except Exception as error:  # e.g. a pattern `re` refuses
            raise BundleError(f"the bundle is malformed: {describe(error)}") from error

    def _record(self) -> Record | None:
        return None if self._exposures is None else self._exposures.record

    @property
    def content_id(self) -> str:
        return self._runner.program.content_id

    @property
    def environment(self) -> str | None:
        """`release.environment` of the bundle: None when the project declares none."""
        return self._runner.program.environment

    @property
    def flag_keys(self) -> list[str]:
        return [flag.key for flag in self._runner.program.flags]

    @property
    def private(self) -> Private | None:
        """The bundle's private attributes (for `expc.sdk.batch`); None without them."""
        return self._runner.program.private

    @property
    def prepared_flags(self) -> list[PreparedFlag]:
        """The current bundle's flags as prepared for evaluation (for `expc.sdk.batch`)."""
        return self._runner.program.flags

    @property
    def exposures(self) -> Exposures | None:
        """Where this evaluator's exposure events go: read `.counters` for health."""
        return self._exposures

    def attach_exposures(self, exposures: Exposures | Sink) -> Exposures:
        """Start recording exposures (for an evaluator made without them); returns the
        `Exposures`. An evaluator has at most one."""
        if self._exposures is not None:
            raise ValueError("this evaluator already records exposures")
        attached = exposures if isinstance(exposures, Exposures) else Exposures(exposures)
        self._exposures = attached
        self._runner = _Runner(self._runner.program, self._record(), eager=True)
        return attached

    def swap(self, bundle: BundleSource) -> None:
        """Verify and prepare a new bundle, then replace the current one in one step."""
        self._runner = _Runner(self._prepare(bundle), self._record(), eager=True)

    def update(self, bundle: BundleSource) -> bool:
        """Like `swap`, but only when the bundle's content id differs from the current
        one: True when it replaced it. A republished identical bundle costs a parse."""
        document = parse_bundle(bundle)
        if document["release"]["content_id"] == self.content_id:
            return False
        self._runner = _Runner(self._prepare(document, verify=False), self._record(), True)
        return True

    @overload
    def evaluate(self, user: Any) -> dict[str, Result]: ...

    @overload
    def evaluate(self, user: Any, key: str) -> Result: ...

    def evaluate(self, user: Any, key: str | None = None) -> dict[str, Result] | Result:
        """Every flag's result for `user` (a mapping of attributes), or one flag's.
        Never raises on any `user`; raises KeyError for a key not in the bundle."""
        runner = self._runner
        if runner.program.private is not None:  # digests of private attributes, once
            user = runner.program.private.with_digests(user)
        if key is None:
            return runner.every(user)
        if key not in runner.program.by_key:
            raise KeyError(f"no flag {key!r} in this bundle")
        return runner.one(user, key)

    def explain(self, user: Any, key: str | None = None) -> tuple[dict[str, Result], list[Step]]:
        """Results and every decision taken on the way, flag by flag. Records no
        exposure: it is for people, not for users."""
        trace: list[Step] = []
        program = self._runner.program
        if program.private is not None:
            user = program.private.with_digests(user)
        results = evaluate_reference(program.flags, user, trace)
        if key is not None:
            trace = [step for step in trace if step.flag == key]
        return results, trace

    def close(self) -> None:
        """Deliver the exposures still queued and close their sink. Evaluating still
        works; the exposures of later evaluations are counted as dropped."""
        if self._exposures is not None:
            self._exposures.close()

    def __enter__(self) -> Evaluator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _exposures_from(exposures: Exposures | Sink | None) -> Exposures | None:
    if exposures is None or isinstance(exposures, Exposures):
        return exposures
    return Exposures(exposures)
