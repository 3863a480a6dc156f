"""The functions expc writes for a bundle (`expc.sdk.specialise`) are the reference
loop (`expc.sdk.reference`), result for result and exposure for exposure, on random
bundles and users; and no text of a bundle ever becomes part of their source."""

from __future__ import annotations

import json
from typing import Any

from bundle_strategies import MARKER, bundles, users
from conftest import REPO
from hypothesis import given, settings
from hypothesis import strategies as st

from expc.sdk.evaluate import Evaluator, Result
from expc.sdk.exposure_events import templates_for
from expc.sdk.program import Program
from expc.sdk.reference import evaluate_reference
from expc.sdk.specialise import source_text, specialise_all, specialise_one

Recorded = list[tuple[str, tuple[int, ...], int]]


def _recorder(into: Recorded) -> Any:
    def record(value: str, templates: list[Any], bits: int) -> None:
        into.append((value, tuple(id(t) for t in templates), bits))

    return record


@settings(max_examples=300, deadline=None)
@given(bundles(), st.lists(users, min_size=1, max_size=6))
def test_every_flag_equals_the_reference_loop(bundle: dict[str, Any], people: list[Any]) -> None:
    evaluator = Evaluator(bundle)
    for user in [*people, None, "not a mapping"]:
        fast = evaluator.evaluate(user)  # specialised when the bundle loads
        reference, _steps = evaluator.explain(user)  # the reference loop, with a trace
        assert list(fast) == list(reference)
        for key in fast:
            assert fast[key] is reference[key], (key, fast[key], reference[key])


@settings(max_examples=300, deadline=None)
@given(bundles(), st.lists(users, min_size=1, max_size=4))
def test_one_flag_and_exposures_equal_the_reference_loop(
    bundle: dict[str, Any], people: list[Any]
) -> None:
    program = Program(bundle)
    exposed = templates_for(program)
    fast: Recorded = []
    every = specialise_all(program, exposed, _recorder(fast))
    assert every is not None
    for user in people:
        expected: Recorded = []
        values: dict[str, str] = {}
        reference = evaluate_reference(program.flags, user, None, values)
        _expected_exposures(program, reference, values, exposed, expected)
        fast.clear()
        results = every(user)
        assert all(results[key] is reference[key] for key in reference)
        # One call per bucketing attribute that exposes anybody; their order is free.
        assert sorted(fast) == sorted(expected)
        for flag in program.flags:
            alone: Recorded = []
            one = specialise_one(program, flag.key, exposed, _recorder(alone))
            assert one is not None
            assert one(user) is reference[flag.key]
            # Alone, a flag records its own exposure and none of what it requires.
            template = exposed.get(reference[flag.key])
            if flag.kind == "experiment" and template is not None:
                assert alone == [(values[flag.by], (id(template),), template.bit)]
            else:
                assert alone == []


def _expected_exposures(
    program: Program,
    results: dict[str, Result],
    values: dict[str, str],
    exposed: dict[Result, Any],
    into: Recorded,
) -> None:
    """What DESIGN §12 asks, written out plainly: each experiment's result that has a
    template, grouped by bucketing attribute, each group in flag order."""
    grouped: dict[str, list[Any]] = {}
    for flag in program.flags:
        template = exposed.get(results[flag.key])
        if flag.kind == "experiment" and template is not None:
            grouped.setdefault(flag.by, []).append(template)
    for by, templates in grouped.items():
        into.append((values[by], tuple(id(t) for t in templates), sum(t.bit for t in templates)))


@settings(max_examples=100, deadline=None)
@given(bundles(marker=MARKER))
def test_no_text_of_a_bundle_becomes_source(bundle: dict[str, Any]) -> None:
    program = Program(bundle)
    exposed = templates_for(program)
    written = [source_text(program, exposed)]
    written += [source_text(program, exposed, flag.key) for flag in program.flags]
    # Every key, salt, variant, attribute, value and reason starts with MARKER.
    assert MARKER in json.dumps(bundle)
    for source in written:
        assert MARKER not in source
        compile(source, "<test>", "exec")


def test_the_example_and_standard_scenario_are_specialised() -> None:
    """Both stay on the fast path: a bundle the specialiser refused would still be
    right, only slow, and no other test would notice."""
    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))
    from scenario import scenario_bundle

    for bundle in (
        json.loads((REPO / "generated" / "production" / "bundle.json").read_bytes()),
        scenario_bundle(),
    ):
        program = Program(bundle)
        assert specialise_all(program, templates_for(program), None) is not None


def _wide_bundle(cohorts: int, requirements: int) -> dict[str, Any]:
    """One flag overriding by `cohorts` cohorts (country is each one's code), after
    `requirements` holdouts it must pass."""
    from expc.sdk.bucketing import POINTS
    from expc.sdk.evaluate import content_id_of

    def flag(key: str, kind: str, **fields: Any) -> dict[str, Any]:
        return {
            "key": key,
            "kind": kind,
            "serving": True,
            "bucketing": {"by": "user_id", "salt": key},
            "overrides": {"users": {}, "cohorts": []},
            "requires": [],
            "targeting": None,
            "rollout": None,
            "traffic": 100,
            "variants": [
                {"key": "a", "range": [0, POINTS // 10]},
                {"key": "b", "range": [POINTS // 10, POINTS]},
            ],
            **fields,
        }

    holdouts = [flag(f"holdout-{n}", "holdout") for n in range(requirements)]
    wide = flag(
        "wide",
        "experiment",
        overrides={
            "users": {},
            "cohorts": [
                {
                    "variant": "ab"[n % 2],
                    "when": {"attribute": "country", "op": "is", "values": [f"C{n}"]},
                }
                for n in range(cohorts)
            ],
        },
        requires=[
            {"flag": h["key"], "variants": ["b"], "reason": f"holdout:{h['key']}"} for h in holdouts
        ],
    )
    bundle: dict[str, Any] = {"schema_version": "1.0", "flags": [*holdouts, wide]}
    bundle["release"] = {"content_id": content_id_of(bundle)}
    return bundle


def test_flags_with_many_cohorts_or_requirements_still_evaluate_like_the_reference() -> None:
    """Past 32 cohorts a flag tries them in a loop; past 32 requirements the bundle stays
    on the reference loop (CPython's compiler recurses per `elif`): same results."""
    for cohorts, requirements, specialised in ((40, 2, True), (2, 40, False)):
        bundle = _wide_bundle(cohorts, requirements)
        program = Program(bundle)
        assert (specialise_all(program, {}, None) is not None) is specialised
        evaluator = Evaluator(bundle)
        for n in range(200):
            user = {"user_id": f"u-{n}", "country": f"C{n % (cohorts + 3)}"}
            fast, (reference, _steps) = evaluator.evaluate(user), evaluator.explain(user)
            assert all(fast[key] is reference[key] for key in reference)
