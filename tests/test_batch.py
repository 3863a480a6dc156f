"""The numpy batch path gives exactly the scalar evaluator's results (same objects)."""

from __future__ import annotations

import json
import sys
from unittest import mock

import pytest
from bundle_strategies import IDS, bundles
from conftest import REPO
from hypothesis import given, settings
from hypothesis import strategies as st

from expc.sdk.evaluate import Evaluator

np = pytest.importorskip("numpy")
from expc.sdk import batch as batch_module  # noqa: E402
from expc.sdk import batch_murmur  # noqa: E402
from expc.sdk.batch import assign  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
from scenario import scenario_bundle  # noqa: E402

BUNDLES = {
    "example": json.loads(
        (REPO / "generated" / "production" / "bundle.json").read_text(encoding="utf-8")
    ),
    "scenario": scenario_bundle(),
}
ids = st.text(alphabet=st.characters(), min_size=0, max_size=40) | st.sampled_from(
    ["qa-anna", "qa-chen", "", "\x00", "a\x00", "用户-7", "\ud800", "\ud83d\ude00"]
)


@settings(max_examples=60, deadline=None)
@given(st.lists(ids, min_size=1, max_size=60), st.sampled_from(sorted(BUNDLES)), st.booleans())
def test_batch_equals_scalar(users: list[str], name: str, as_matrix: bool) -> None:
    """Whether ids of one length are hashed as a matrix (many of them) or one by one
    (few, or long ones): the same results. Both ways are forced here, on any ids."""
    evaluator = Evaluator(BUNDLES[name])
    with mock.patch.object(batch_murmur, "_vectorised", lambda count, width: as_matrix):
        assignment = assign(evaluator, users)
    for row, user in enumerate(users):
        scalar = evaluator.evaluate({"user_id": user})
        for key in assignment.keys:
            batch = assignment.tables[key][assignment.codes[key][row]]
            assert batch is scalar[key], (user, key, batch, scalar[key])


def test_batch_on_many_users_matches_and_reports_variants() -> None:
    evaluator = Evaluator(BUNDLES["example"])
    users = [f"user-{i}" for i in range(5000)] + ["qa-anna"]
    assignment = assign(evaluator, users)
    variants = assignment.variants("search-typo-tolerance")
    scalar = [evaluator.evaluate({"user_id": u}, "search-typo-tolerance").variant for u in users]
    assert list(variants) == scalar
    share = np.mean([v is not None for v in variants])
    assert 0.44 < share < 0.51  # 47.5% expected (DESIGN §4)


def test_batch_reads_ids_with_surrogates_as_the_scalar_evaluator_does() -> None:
    evaluator = Evaluator(BUNDLES["example"])
    # A lone surrogate is U+FFFD and a split pair its character, in the hash and in the
    # override lookup; without that the batch path crashed encoding them.
    users = ["\ud800", "x\udc00y", "\ud83d\ude00", "\U0001f600", "\ude00\ud83d", "qa-anna"]
    users += [f"user-{i}-\ud83d" for i in range(300)]
    assignment = assign(evaluator, users)
    for row, user in enumerate(users):
        scalar = evaluator.evaluate({"user_id": user})
        for key in assignment.keys:
            assert assignment.tables[key][assignment.codes[key][row]] is scalar[key], (user, key)
    lone, replaced = assign(evaluator, ["\ud800"]), assign(evaluator, ["\ufffd"])
    assert all(lone.results(key) == replaced.results(key) for key in lone.keys)


def test_one_very_long_id_among_short_ones_is_assigned_like_the_rest() -> None:
    """The batch path hashes ids grouped by length: a 3,000-byte id no longer makes every
    row that wide (it once cost 50 times the time and 30 times the memory)."""
    evaluator = Evaluator(BUNDLES["scenario"])
    users = [f"user-{i}" for i in range(2_000)]
    users[700] = "w" * 3_000
    users[701] = "é" * 1_500  # as many bytes, fewer characters
    assignment = assign(evaluator, users)
    for row in (0, 699, 700, 701, 702, 1_999):
        scalar = evaluator.evaluate({"user_id": users[row]})
        for key in assignment.keys:
            assert assignment.tables[key][assignment.codes[key][row]] is scalar[key]


@settings(max_examples=150, deadline=None)
@given(
    bundles(),
    st.lists(st.sampled_from(IDS) | ids, min_size=1, max_size=30),
    st.booleans(),
    st.booleans(),
)
def test_batch_equals_scalar_on_random_bundles(
    bundle: dict[str, object], users: list[str], as_matrix: bool, binary_search: bool
) -> None:
    """Any bundle (overrides, cohorts, requirements, rollouts, traffic, ranges with gaps):
    every user gets from the batch path the scalar evaluator's result object, with
    ranges found by counting boundaries or by binary search, ids hashed either way."""
    evaluator = Evaluator(bundle)
    bys = {flag.by for flag in evaluator.prepared_flags}
    with (
        mock.patch.object(batch_murmur, "_vectorised", lambda count, width: as_matrix),
        mock.patch.object(batch_module, "_COMPARED_BOUNDS", 0 if binary_search else 8),
    ):
        assignment = assign(evaluator, users)
    for row, user in enumerate(users):
        scalar = evaluator.evaluate(dict.fromkeys(bys, user))
        for key in assignment.keys:
            batch = assignment.tables[key][assignment.codes[key][row]]
            assert batch is scalar[key], (user, key, batch, scalar[key])


@pytest.mark.parametrize("binary_search", [False, True])
def test_ids_hashing_exactly_to_a_boundary_get_the_scalar_result(binary_search: bool) -> None:
    """Ids built to hash exactly to each boundary of every flag's ranges, and one below:
    a boundary belongs to the range it starts, in the batch path as in the scalar one."""
    from expc.outputs.preimage import value_hashing_to

    evaluator = Evaluator(BUNDLES["example"])
    users = []
    for flag in evaluator.prepared_flags:
        for low, _high, _result in flag.segments()[1:]:
            for target in (low - 1, low):
                found = value_hashing_to(flag.prefix[:-1], [target], "edge")
                assert found is not None
                users.append(found)
    with mock.patch.object(batch_module, "_COMPARED_BOUNDS", 0 if binary_search else 8):
        assignment = assign(evaluator, users)
    for row, user in enumerate(users):
        scalar = evaluator.evaluate({"user_id": user})
        for key in assignment.keys:
            assert assignment.tables[key][assignment.codes[key][row]] is scalar[key], (user, key)
