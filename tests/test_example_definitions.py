"""The example company in definitions/: it validates, compiles reproducibly, and its
generated/ is current (CI runs the same check)."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest
from conftest import REPO, valid_snapshot

from expc import cli
from expc.outputs.bundle import bundle_json
from expc.outputs.ledger import Ledger
from expc.outputs.release import release_files
from expc.pipeline.snapshot import Snapshot
from expc.pipeline.traffic import effective_traffic
from expc.render import diagnostic_text
from expc.sdk.evaluate import content_id_of

DEFINITIONS = REPO / "definitions"


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    return valid_snapshot(DEFINITIONS, display_root="definitions")


def test_examples_validate_with_only_the_intended_warning(snapshot: Snapshot) -> None:
    assert [diagnostic_text(d) for d in snapshot.diagnostics] == [
        "definitions/experiments/onboarding/onboarding-pricing-preview.yaml:2:6: "
        "warning[W301 multiple-mutex-groups] experiment 'onboarding-pricing-preview' is in "
        "2 mutex groups (onboarding-flow, pricing-page), drawn independently: it can enrol "
        "only 25% of users; to give it that share, use one group holding all of its members"
    ]


def test_examples_cover_what_the_issue_asks_for(snapshot: Snapshot) -> None:
    kinds = [loaded.definition.kind for loaded in snapshot.objects.values()]
    assert kinds.count("experiment") >= 12
    assert kinds.count("mutex") >= 3 and kinds.count("holdout") == 2
    states = {getattr(loaded.definition, "state", None) for loaded in snapshot.objects.values()}
    assert {"draft", "running", "stopped", "concluded"} <= states
    assert snapshot.catalog is not None
    assert snapshot.catalog.parent == {"checkout-payment-methods": ("checkout-surface", 2)}


def test_design_examples_of_effective_traffic(snapshot: Snapshot) -> None:
    shares = effective_traffic(snapshot.catalog)
    # DESIGN §4: one slot of 50% in each of two groups.
    assert shares["onboarding-pricing-preview"] == Fraction(1, 4)
    # DESIGN §4: a 5% holdout above a 50% slot.
    assert shares["search-typo-tolerance"] == Fraction(475, 1000)
    # Two slots of one group add up: 95% x (20% + 10%).
    assert shares["search-semantic-ranker"] == Fraction(95, 100) * Fraction(30, 100)
    # Nested: 95% x 50% (slot 3 of checkout-surface) x 50% (slot 1 inside it).
    assert shares["checkout-apple-pay-first"] == Fraction(2375, 10000)
    # A rollout ignores groups and traffic.
    assert shares["pricing-usd-rounding"] == 1


def test_generated_directory_is_current(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("EXPC_SOURCE_COMMIT", raising=False)
    assert cli.main(["compile", "--check"]) == cli.EXIT_OK


def test_compile_is_byte_for_byte_reproducible(tmp_path: Path) -> None:
    first = release_files(valid_snapshot(DEFINITIONS), Ledger.new())
    second = release_files(valid_snapshot(DEFINITIONS), Ledger.new())
    assert first == second
    assert first["production/bundle.json"] == (
        REPO / "generated" / "production" / "bundle.json"
    ).read_text(encoding="utf-8")


def test_bundle_is_canonical_and_topologically_ordered(snapshot: Snapshot) -> None:
    text = (REPO / "generated" / "production" / "bundle.json").read_text(encoding="utf-8")
    document = json.loads(text)
    assert bundle_json(document) == text  # sorted keys, one flag per line, final newline
    assert document["release"]["content_id"] == content_id_of(document)
    assert "." not in "".join(str(v) for v in _numbers(document))  # no floats anywhere
    order = [flag["key"] for flag in document["flags"]]
    for index, flag in enumerate(document["flags"]):
        for requirement in flag["requires"]:
            assert order.index(requirement["flag"]) < index
    apple = document["flags"][order.index("checkout-apple-pay-first")]
    assert [r["flag"] for r in apple["requires"]] == [
        "global-holdout",
        "checkout-surface",
        "checkout-payment-methods",
    ]


def _numbers(value: object) -> list[object]:
    if isinstance(value, dict):
        return [n for item in value.values() for n in _numbers(item)]
    if isinstance(value, list):
        return [n for item in value for n in _numbers(item)]
    return [value] if isinstance(value, int | float) and not isinstance(value, bool) else []
