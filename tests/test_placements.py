"""Forced placements (pins, overrides, holdout lists) as DESIGN §2 orders them: the
first place a user qualifies for wins, for users listed directly and through cohorts
alike; overlaps that are knowable from explicit ids are errors (E205, see the case
tests/cases/errors/pinned-directly-and-through-cohort)."""

from __future__ import annotations

import pytest
from conftest import CASES, compiled_bundle

from expc.sdk.evaluate import Evaluator


@pytest.fixture(scope="module")
def evaluator() -> Evaluator:
    definitions = CASES / "evaluate" / "first-pinned-slot-wins" / "definitions"
    return Evaluator(compiled_bundle(definitions))


def test_a_cohort_pinned_to_an_earlier_slot_wins_over_a_direct_pin(evaluator: Evaluator) -> None:
    employee = evaluator.evaluate({"user_id": "dev-1", "email": "dev@shop.example"})
    assert (employee["g"].variant, employee["g"].reason) == ("slot-1", "override")
    assert employee["b"].reason == "mutex:g"


def test_a_direct_pin_holds_when_no_earlier_cohort_takes_the_user(evaluator: Evaluator) -> None:
    outsider = evaluator.evaluate({"user_id": "dev-1", "email": "dev@elsewhere.example"})
    assert (outsider["g"].variant, outsider["g"].reason) == ("slot-2", "override")


def test_exclusion_from_a_holdout_wins_over_a_direct_inclusion(evaluator: Evaluator) -> None:
    employee = evaluator.evaluate({"user_id": "dev-1", "email": "dev@shop.example"})
    assert (employee["h"].variant, employee["h"].reason) == ("on", "override")
    outsider = evaluator.evaluate({"user_id": "dev-1"})
    assert (outsider["h"].variant, outsider["h"].reason) == ("holdout", "override")
    assert outsider["a"].reason == "holdout:h"
