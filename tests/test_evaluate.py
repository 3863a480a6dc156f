"""The Python SDK as an application uses it: loading, results and reasons, odd input,
swapping bundles under load, and the DESIGN §4 guarantees as properties."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import CASES, REPO
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler import api
from compiler.bucketing import basis_points, boundary, hash_value, point
from compiler.evaluate import BundleError, Evaluator

BUNDLE = REPO / "generated" / "bundle.json"


@pytest.fixture(scope="module")
def evaluator() -> Evaluator:
    return Evaluator.load(BUNDLE)


def _first_user(test: Any, prefix: str = "user") -> str:
    return next(f"{prefix}-{i}" for i in range(100_000) if test(f"{prefix}-{i}"))


def test_evaluator_imports_only_the_standard_library_and_mmh3() -> None:
    code = (
        "import sys, compiler.evaluate; "
        "heavy = {'pydantic', 'networkx', 'jinja2', 'ruamel', 'numpy'} & "
        "{m.split('.')[0] for m in sys.modules}; print(sorted(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == "[]"


def test_loads_from_path_bytes_text_and_dict() -> None:
    raw = BUNDLE.read_bytes()
    keys = Evaluator.load(BUNDLE).flag_keys
    assert Evaluator(raw).flag_keys == keys
    assert Evaluator(raw.decode()).flag_keys == keys
    assert Evaluator(json.loads(raw)).flag_keys == keys
    assert len(keys) == 21


def test_refuses_unknown_major_version_and_altered_content() -> None:
    document = json.loads(BUNDLE.read_bytes())
    with pytest.raises(BundleError, match=r"schema version 2\.0 is not supported"):
        Evaluator({**document, "schema_version": "2.0"})
    document["flags"][0]["traffic"] = 100
    with pytest.raises(BundleError, match="content id mismatch"):
        Evaluator(document)
    with pytest.raises(BundleError, match="cannot read the bundle"):
        Evaluator(b"{not json")


def test_holdout_reason_for_every_covered_experiment(evaluator: Evaluator) -> None:
    held_below = boundary(basis_points(5))
    user = _first_user(lambda u: point(hash_value("global-holdout", u)) < held_below)
    results = evaluator.evaluate({"user_id": user})
    assert results["global-holdout"].variant == "holdout"
    for key in ("checkout-one-page", "checkout-apple-pay-first", "search-typo-tolerance"):
        assert (results[key].variant, results[key].reason) == (None, "holdout:global-holdout")
    # Not covered by the global holdout: unaffected.
    assert results["pricing-usd-rounding"].reason == "rollout"


def test_mutex_reason_names_the_group_whose_slot_failed(evaluator: Evaluator) -> None:
    def in_slot_3_not_held(u: str) -> bool:
        held = point(hash_value("global-holdout", u)) < boundary(500)
        slot = point(hash_value("checkout-surface", u))
        return not held and boundary(5000) <= slot < boundary(10000)

    results = evaluator.evaluate({"user_id": _first_user(in_slot_3_not_held)})
    assert results["checkout-surface"].variant == "slot-3"
    assert results["checkout-one-page"].reason == "mutex:checkout-surface"
    inner = results["checkout-payment-methods"].variant
    apple = results["checkout-apple-pay-first"]
    if inner == "slot-1":
        assert apple.reason == "targeting"  # no platform attribute
    else:
        assert apple.reason == "mutex:checkout-payment-methods"


def test_overrides_pins_and_exclusions(evaluator: Evaluator) -> None:
    anna = evaluator.evaluate({"user_id": "qa-anna"})
    assert (anna["checkout-one-page"].variant, anna["checkout-one-page"].reason) == (
        "one-page",
        "override",
    )
    assert anna["checkout-one-page"].payload == {"layout": "single", "steps": 1}
    assert anna["checkout-surface"].reason == "override"  # QA pinned to slot 1
    assert anna["global-holdout"].variant == "on"  # QA never held out
    employee = evaluator.evaluate(
        {"user_id": "someone", "email": "dev@shopwell.example"}, "checkout-address-autocomplete"
    )
    assert (employee.variant, employee.reason) == ("autocomplete", "override")


def test_targeting_traffic_and_bucketing(evaluator: Evaluator) -> None:
    key = "checkout-address-autocomplete"
    assert evaluator.evaluate({"user_id": "u-1", "country": "DE"}, key).reason == "targeting"
    outside = _first_user(lambda u: hash_value(key, u) % 100 >= 20)
    assert evaluator.evaluate({"user_id": outside, "country": "NO"}, key).reason == "traffic"
    inside = _first_user(lambda u: hash_value(key, u) % 100 < 20)
    result = evaluator.evaluate({"user_id": inside, "country": "SE"}, key)
    expected = "control" if point(hash_value(key, inside)) < boundary(5000) else "autocomplete"
    assert (result.variant, result.reason) == (expected, "bucketed")


def test_not_running_and_missing_bucketing_value(evaluator: Evaluator) -> None:
    assert evaluator.evaluate({"user_id": "u-1"}, "pricing-tier-names").reason == "not-running"
    for user in ({}, {"user_id": ""}, {"user_id": None}, {"user_id": ["a"]}):
        assert evaluator.evaluate(user, "search-typo-tolerance").reason == "no-bucketing-value"
    # A rollout needs no bucketing.
    assert evaluator.evaluate({}, "pricing-usd-rounding").variant == "round-99"


def test_prerequisite_reason() -> None:
    snapshot = api.load_snapshot(CASES / "evaluate" / "prerequisites" / "definitions")
    evaluator = Evaluator(api.bundle(snapshot))
    control = _first_user(lambda u: point(hash_value("new-search", u)) < boundary(5000))
    result = evaluator.evaluate({"user_id": control}, "search-filters")
    assert (result.variant, result.reason) == (None, "prerequisite:new-search")
    treated = _first_user(lambda u: point(hash_value("new-search", u)) >= boundary(5000))
    assert evaluator.evaluate({"user_id": treated}, "search-filters").reason == "bucketed"


odd_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text(max_size=50)
    | st.binary(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)
attribute_names = st.sampled_from(
    ["user_id", "country", "email", "platform", "app_version", "account_age_days", "plan"]
) | st.text(max_size=8)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(attribute_names, odd_values, max_size=6) | odd_values)
def test_never_raises_on_odd_input(user: Any) -> None:
    evaluator = Evaluator.load(BUNDLE)
    results = evaluator.evaluate(user)
    assert list(results) == evaluator.flag_keys


def test_huge_and_unicode_ids_hash_like_the_spec() -> None:
    snapshot = api.load_snapshot(CASES / "evaluate" / "prerequisites" / "definitions")
    evaluator = Evaluator(api.bundle(snapshot))
    for user_id in ("x" * 1_000_000, "用户-7", "🎉", "a/b"):
        h = hash_value("new-search", user_id)
        expected = "control" if point(h) < boundary(5000) else "treatment"
        assert evaluator.evaluate({"user_id": user_id}, "new-search").variant == expected


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=30))
def test_design_guarantees_hold_for_any_user(user_id: str) -> None:
    evaluator = Evaluator.load(BUNDLE)
    results = evaluator.evaluate({"user_id": user_id, "country": "NO", "platform": "ios"})
    groups = {
        "checkout-surface": [
            "checkout-one-page",
            "checkout-express-pay",
            "checkout-apple-pay-first",
            "checkout-bnpl-banner",
        ],
        "search-ranking": ["search-typo-tolerance", "search-semantic-ranker"],
        "onboarding-flow": ["onboarding-pricing-preview", "onboarding-checklist"],
    }
    for members in groups.values():
        assert sum(results[m].variant is not None for m in members) <= 1
    if results["global-holdout"].variant == "holdout":
        assert all(
            results[m].variant is None
            for m in groups["checkout-surface"] + groups["search-ranking"]
        )


def test_raising_traffic_only_adds_users(tmp_path: Path) -> None:
    import shutil

    shutil.copytree(REPO / "definitions", tmp_path / "definitions")
    target = (
        tmp_path / "definitions" / "experiments" / "checkout" / "checkout-address-autocomplete.yaml"
    )
    before = Evaluator(api.bundle(api.load_snapshot(tmp_path / "definitions")))
    target.write_text(target.read_text().replace("traffic: 20", "traffic: 60"))
    after = Evaluator(api.bundle(api.load_snapshot(tmp_path / "definitions")))
    key = "checkout-address-autocomplete"
    gained = 0
    for i in range(3000):
        user = {"user_id": f"u-{i}", "country": "NO"}
        old, new = before.evaluate(user, key), after.evaluate(user, key)
        if old.variant is not None:
            assert new.variant == old.variant
        gained += old.variant is None and new.variant is not None
    assert gained > 1000


def test_swap_under_load_never_mixes_bundles(tmp_path: Path) -> None:
    first = json.loads(BUNDLE.read_bytes())
    second = api.bundle(api.load_snapshot(CASES / "evaluate" / "prerequisites" / "definitions"))
    evaluator = Evaluator(first)
    shapes = {tuple(Evaluator(first).flag_keys), tuple(Evaluator(dict(second)).flag_keys)}
    seen: set[tuple[str, ...]] = set()
    errors: list[BaseException] = []
    stop = threading.Event()

    def evaluate_forever() -> None:
        try:
            while not stop.is_set():
                seen.add(tuple(evaluator.evaluate({"user_id": "u-1"})))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=evaluate_forever) for _ in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    swaps = 0
    while swaps < 200 or (len(seen) < 2 and time.monotonic() < deadline):
        evaluator.swap(dict(second) if swaps % 2 else first)
        swaps += 1
        time.sleep(0.0005)  # let the evaluating threads run between swaps
    stop.set()
    for thread in threads:
        thread.join()
    assert errors == []
    assert seen <= shapes and len(seen) == 2
