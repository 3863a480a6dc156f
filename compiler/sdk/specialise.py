"""Python functions written for one bundle: the reference loop unrolled, flag by flag.

`evaluate_reference` pays, for every flag of every user, for a loop, a tuple to unpack,
a list of requirements to walk and a bisect; with 10 flags that is most of its time.
Here each flag becomes straight-line code with its own branches: a flag without
overrides has no override test, a holdout's two ranges are one comparison, results are
locals and requirements are set lookups on them. The functions are equal to the
reference loop result for result (a hypothesis test holds them to it).

No bundle content ever becomes code. The source is built only from text written in
this module, local names made from counters (`r3`, `v0`), integers this module
computed and checked to be `int`, and names (`k12`) of constants handed to the
function as values: keys, salts, predicates and results are never spliced into the
source. A test compiles hostile bundles and finds none of their text in it.

A bundle too large to compile quickly (see `MAX_FLAGS`), or one whose shape would make
a function too deep for the compiler, is evaluated by the reference loop instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import mmh3

from expc.sdk.conditions import well_formed
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
from expc.sdk.reference import bucketing_value

# Compiling costs about 50 us per flag: a bundle of 2,000 flags compiles in 0.1 s, once
# per swap. Larger bundles stay with the reference loop (0.4 us per flag and user).
MAX_FLAGS = 2_000
# Each override cohort and requirement is one `elif`; CPython's compiler recurses once
# per `elif` and gives up near a thousand. A flag with more cohorts tries them in a loop
# (`first_holding`); a bundle with a flag of more requirements stays with the reference.
MAX_INLINE_BRANCHES = 32

Record = Callable[[str, list[Any], int], None]
AllFlags = Callable[[Any], dict[str, Result]]
OneFlag = Callable[[Any], Result]


def _first_holding(cohorts: list[tuple[Any, Result]], user: Mapping[str, Any]) -> Result | None:
    for holds, override in cohorts:
        if safely(holds, user):
            return override
    return None


class _Source:
    """Lines of generated source and the constants they name.

    Everything that reaches a line is text of this module, a local name made from a
    counter, an `int` checked here, or `name_of(value)`: the name under which `value`
    is handed to the function."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {
            "Mapping": Mapping,
            "bucketing_value": bucketing_value,
            "well_formed": well_formed,
            "safely": safely,
            "first_holding": _first_holding,
            "murmur3": mmh3.hash,
            "NOT_RUNNING": NOT_RUNNING,
            "NO_VALUE": NO_BUCKETING_VALUE,
            "TARGETING": TARGETING,
            "TRAFFIC": TRAFFIC,
            "UNALLOCATED": UNALLOCATED,
        }
        self._names: dict[int, str] = {}

    def name_of(self, value: Any) -> str:
        """The name the generated code uses for `value`, one per object."""
        if id(value) not in self._names:
            name = f"k{len(self._names)}"
            self._names[id(value)] = name
            self.constants[name] = value
        return self._names[id(value)]

    @staticmethod
    def number(value: int) -> str:
        if type(value) is not int:  # only integers computed here are ever written out
            raise TypeError(f"not an integer: {type(value).__name__}")
        return int.__repr__(value)

    def add(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def compiled(self, name: str) -> Any:
        namespace = dict(self.constants)
        exec(compile("\n".join(self.lines) + "\n", f"<expc {name}>", "exec"), namespace)
        return namespace[name]


class _Writer:
    """Writes the body of one function: flag blocks in bundle order."""

    def __init__(self, source: _Source, exposed: Mapping[Result, Any], exposing: set[str]):
        self.source = source
        self.exposed = exposed  # result -> its exposure template, for exposing flags
        self.exposing = exposing  # keys of the flags whose exposures are recorded
        self.value_of: dict[str, str] = {}  # bucketing attribute -> local holding its value
        self.result_of: dict[str, str] = {}  # flag key -> local holding its result
        self.exposures_of: dict[str, str] = {}  # bucketing attribute -> number of its locals

    def start(self) -> None:
        self.source.add(1, "try:")
        self.source.add(2, "u = user if type(user) is dict or isinstance(user, Mapping) else {}")
        self.source.add(1, "except Exception:")
        self.source.add(2, "u = {}")

    def flag(self, flag: PreparedFlag) -> None:
        add, name = self.source.add, self.source.name_of
        if flag.by not in self.value_of:
            value = self.value_of[flag.by] = f"v{len(self.value_of)}"
            # As the reference loop reads it: once, at the first flag bucketed by it.
            add(1, "try:")
            add(2, f"{value} = u.get({name(flag.by)})")
            add(2, f"if type({value}) is not str:")
            add(3, f"{value} = bucketing_value({value})")
            add(2, f"elif not {value}.isascii():")
            add(3, f"{value} = well_formed({value})")
            add(1, "except Exception:")
            add(2, f'{value} = ""')
        value = self.value_of[flag.by]
        result = self.result_of[flag.key] = f"r{len(self.result_of)}"
        exposures = None
        if flag.key in self.exposing:
            if flag.by not in self.exposures_of:
                self.exposures_of[flag.by] = f"{len(self.exposures_of)}"
            exposures = self.exposures_of[flag.by]
        if not flag.serving:
            add(1, f"{result} = NOT_RUNNING")
            return
        chain = _Chain(self, result, exposures)
        if flag.user_overrides:
            overrides = name(flag.user_overrides)
            chain.branch(f"{value} in {overrides}")
            add(2, f"{result} = {overrides}[{value}]")
            chain.expose_any(2)
        if len(flag.cohort_overrides) > MAX_INLINE_BRANCHES:
            chain.branch(f"(o := first_holding({name(flag.cohort_overrides)}, u)) is not None")
            add(2, f"{result} = o")
            chain.expose_any(2)
        else:
            for holds, override in flag.cohort_overrides:
                chain.branch(f"safely({name(holds)}, u)")
                chain.assign(2, override)
        for required, allowed, failed in flag.requires:
            earlier = self.result_of[required]
            chain.branch(f"{earlier} not in {name(allowed)}")
            # No id for the holdout or group is no id here either (DESIGN §3).
            add(2, f"if {earlier} is NO_VALUE:")
            add(3, f"{result} = NO_VALUE")
            add(2, "else:")
            chain.assign(3, failed)
        if flag.targeting is not None:
            chain.branch(f"not safely({name(flag.targeting)}, u)")
            add(2, f"{result} = TARGETING")
        if flag.rollout is not None:
            chain.otherwise()
            chain.assign(2, flag.rollout)
            return
        chain.branch(f"not {value}")
        add(2, f"{result} = NO_VALUE")
        chain.otherwise()
        if flag.traffic == 0:  # nobody is let in: the hash would not change that
            add(2, f"{result} = TRAFFIC")
            return
        add(2, f"h = murmur3({name(flag.prefix)} + {value}, 0, False)")
        depth = 2
        if flag.traffic < 100:
            add(2, f"if h % 100 >= {self.source.number(flag.traffic)}:")
            add(3, f"{result} = TRAFFIC")
            add(2, "else:")
            depth = 3
        chain.ranges(depth, flag.segments())

    def finish_all(self, flags: list[PreparedFlag]) -> None:
        self._record(1)
        name = self.source.name_of
        entries = ", ".join(f"{name(f.key)}: {self.result_of[f.key]}" for f in flags)
        self.source.add(1, f"return {{{entries}}}")

    def finish_one(self, key: str) -> None:
        self._record(1)
        self.source.add(1, f"return {self.result_of[key]}")

    def _record(self, depth: int) -> None:
        for attribute, number in self.exposures_of.items():
            value = self.value_of[attribute]
            self.source.add(depth, f"if e{number}:")
            self.source.add(depth + 1, f"record({value}, e{number}, m{number})")

    def exposure_locals(self) -> list[str]:
        """Per bucketing attribute, the templates (`e`) and the sum of their bits (`m`)."""
        return [f"{kind}{n}" for n in self.exposures_of.values() for kind in "em"]


class _Chain:
    """One flag's `if / elif / else`: each step decides the users no earlier one did."""

    def __init__(self, writer: _Writer, result: str, exposures: str | None) -> None:
        self.writer = writer
        self.result = result
        self.exposures = exposures
        self.started = False

    def branch(self, condition: str) -> None:
        self.writer.source.add(1, f"{'elif' if self.started else 'if'} {condition}:")
        self.started = True

    def otherwise(self) -> None:
        # A chain that has no branch yet runs its last step unconditionally.
        self.writer.source.add(1, "else:" if self.started else "if True:")

    def assign(self, depth: int, outcome: Result) -> None:
        source = self.writer.source
        source.add(depth, f"{self.result} = {source.name_of(outcome)}")
        template = self.writer.exposed.get(outcome)
        if self.exposures is not None and template is not None:
            source.add(depth, f"e{self.exposures}.append({source.name_of(template)})")
            source.add(depth, f"m{self.exposures} += {source.name_of(template.bit)}")

    def expose_any(self, depth: int) -> None:
        """Record the result just assigned, whichever of the flag's it is."""
        if self.exposures is not None:
            templates = self.writer.exposed
            source = self.writer.source
            source.add(depth, f"t = {source.name_of(templates)}.get({self.result})")
            source.add(depth, "if t is not None:")
            source.add(depth + 1, f"e{self.exposures}.append(t)")
            source.add(depth + 1, f"m{self.exposures} += t.bit")

    def ranges(self, depth: int, segments: list[tuple[int, int, Result]]) -> None:
        """A balanced tree of comparisons on the hash: at most log2(n) of them."""
        if len(segments) == 1:
            self.assign(depth, segments[0][2])
            return
        middle = len(segments) // 2
        source = self.writer.source
        source.add(depth, f"if h < {source.number(segments[middle][0])}:")
        self.ranges(depth + 1, segments[:middle])
        source.add(depth, "else:")
        self.ranges(depth + 1, segments[middle:])


def _specialisable(flags: list[PreparedFlag]) -> bool:
    return len(flags) <= MAX_FLAGS and all(
        len(flag.requires) <= MAX_INLINE_BRANCHES for flag in flags
    )


def _written(
    flags: list[PreparedFlag],
    name: str,
    finish: Callable[[_Writer], None],
    exposed: Mapping[Result, Any],
    exposing: set[str],
) -> _Source:
    source = _Source()
    source.add(0, f"def {name}(user):")
    writer = _Writer(source, exposed, exposing)
    writer.start()
    body_starts = len(source.lines)
    for flag in flags:
        writer.flag(flag)
    for local in writer.exposure_locals():
        source.lines.insert(body_starts, f"    {local} = {'[]' if local[0] == 'e' else '0'}")
    finish(writer)
    return source


def _compiled(source: _Source, name: str, record: Record | None) -> Any:
    if record is not None:
        source.constants["record"] = record
    try:
        return source.compiled(name)
    except (RecursionError, MemoryError, SyntaxError):  # too deep for this interpreter
        return None


def _every_flag_source(program: Program, exposed: Mapping[Result, Any], exposing: bool) -> _Source:
    experiments = {flag.key for flag in program.flags if flag.kind == "experiment"}
    flags = program.flags
    return _written(
        flags,
        "every_flag",
        lambda w: w.finish_all(flags),
        exposed,
        experiments if exposing else set(),
    )


def _one_flag_source(
    program: Program, key: str, exposed: Mapping[Result, Any], exposing: bool
) -> _Source:
    experiment = program.flag(key).kind == "experiment"
    return _written(
        program.needed_for(key),
        "one_flag",
        lambda w: w.finish_one(key),
        exposed,
        {key} if experiment and exposing else set(),
    )


def specialise_all(
    program: Program, exposed: Mapping[Result, Any], record: Record | None
) -> AllFlags | None:
    """A function giving every flag's result for a user, as `evaluate_reference` does;
    with `record`, it also hands `record(value, templates, bits)` the exposure templates
    (`exposed[result]`) of the results it gave and the sum of their bits. None when
    the bundle is not to be specialised."""
    if not _specialisable(program.flags):
        return None
    source = _every_flag_source(program, exposed, record is not None)
    function: AllFlags | None = _compiled(source, "every_flag", record)
    return function


def specialise_one(
    program: Program, key: str, exposed: Mapping[Result, Any], record: Record | None
) -> OneFlag | None:
    """A function giving flag `key`'s result, evaluating only what it requires; with
    `record`, it hands over the exposure of `key` alone."""
    if not _specialisable(program.needed_for(key)):
        return None
    source = _one_flag_source(program, key, exposed, record is not None)
    function: OneFlag | None = _compiled(source, "one_flag", record)
    return function


def source_text(program: Program, exposed: Mapping[Result, Any], key: str | None = None) -> str:
    """The source `specialise_all` (or, with `key`, `specialise_one`) writes for
    `program` with exposures: for reading it, and for the test that no bundle text
    ever appears in it."""
    if key is None:
        return "\n".join(_every_flag_source(program, exposed, True).lines)
    return "\n".join(_one_flag_source(program, key, exposed, True).lines)
