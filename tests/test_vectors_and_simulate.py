"""Conformance vectors and `expc simulate`, as an SDK author and a reviewer use them."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import mmh3
import pytest
from conftest import REPO, valid_snapshot

from expc import cli
from expc.outputs.bundle import vectors_json
from expc.outputs.release import bundle_of
from expc.sdk.bucketing import POINTS, alloc, hash_value, point
from expc.sdk.evaluate import Evaluator
from expc.tools.simulate import simulate

VECTORS = json.loads(
    (REPO / "generated" / "production" / "vectors.json").read_text(encoding="utf-8")
)
BUNDLE = json.loads((REPO / "generated" / "production" / "bundle.json").read_text(encoding="utf-8"))


def test_vectors_belong_to_the_committed_bundle() -> None:
    assert VECTORS["bundle_content_id"] == BUNDLE["release"]["content_id"]


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: f"{v['flag']}:{v['why']}")
def test_evaluator_passes_every_vector(vector: dict[str, object]) -> None:
    evaluator = _evaluator()
    result = evaluator.evaluate(vector["user"], str(vector["flag"]))
    assert (result.variant, result.reason) == (vector["variant"], vector["reason"])


def _evaluator(cache: dict[str, Evaluator] = {}) -> Evaluator:  # noqa: B006 - a cache
    if "bundle" not in cache:
        cache["bundle"] = Evaluator(BUNDLE)
    return cache["bundle"]


def test_boundary_users_sit_exactly_on_the_boundaries() -> None:
    flags = {flag["key"]: flag for flag in BUNDLE["flags"]}
    for vector in VECTORS["vectors"]:
        flag = flags[vector["flag"]]
        user_id = vector["user"][flag["bucketing"]["by"]]
        h = hash_value(flag["bucketing"]["salt"], user_id)
        assert (vector["hash"], vector["alloc"], vector["point"]) == (h, alloc(h), point(h))
        why = vector["why"]
        if why.startswith(("first point", "last point")):
            assert str(point(h)) == why.split()[2]
    whys = Counter(v["why"].split()[0] for v in VECTORS["vectors"])
    assert whys["first"] > 20 and whys["last"] > 20
    assert any(v["point"] == POINTS - 1 for v in VECTORS["vectors"])
    assert any(v["point"] == 0 for v in VECTORS["vectors"])


def test_boundary_users_reach_the_bucketing_step() -> None:
    on_boundaries = [v for v in VECTORS["vectors"] if not v["why"].startswith("an ")]
    reached = [v for v in on_boundaries if v["reason"] in ("bucketed", "traffic", "unallocated")]
    assert len(reached) == len(on_boundaries)
    traffic = [v for v in on_boundaries if "traffic" in v["why"]]
    assert {v["reason"] for v in traffic} == {"bucketed", "traffic"}


def test_vectors_pin_down_the_hash_of_ids_with_surrogates() -> None:
    raw = (REPO / "generated" / "production" / "vectors.json").read_bytes()
    raw.decode("utf-8")  # valid UTF-8: surrogates are written as JSON escapes
    assert b"\\ud83d" in raw and b"\\ude00" in raw
    surrogates = [v for v in VECTORS["vectors"] if v["why"].startswith("an id with")]
    hashed = {flag["key"] for flag in BUNDLE["flags"] if flag["serving"] and not flag["rollout"]}
    assert {v["flag"] for v in surrogates} == hashed
    for vector in surrogates:
        flag = next(f for f in BUNDLE["flags"] if f["key"] == vector["flag"])
        user_id = vector["user"][flag["bucketing"]["by"]]
        # What JavaScript's TextEncoder writes: U+FFFD for every lone surrogate.
        replaced = user_id.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
        encoded = (flag["bucketing"]["salt"] + "/" + replaced).encode("utf-8")
        assert vector["hash"] == mmh3.hash(encoded, 0, False)
    lone = [v for v in surrogates if "lone" in v["why"]]
    assert lone and all(any(0xD800 <= ord(c) <= 0xDFFF for c in v["user"]["user_id"]) for v in lone)


def test_vectors_file_writes_surrogates_as_escapes() -> None:
    document = {"version": 1, "vectors": [{"user": {"user_id": "a\ud800\ud83d\ude00é"}}]}
    text = vectors_json(document)
    assert "\\ud800\\ud83d\\ude00é" in text
    text.encode("utf-8")
    # A JSON decoder gives the lone surrogate back, and joins the escaped pair.
    assert json.loads(text)["vectors"][0]["user"]["user_id"] == "a\ud800\U0001f600é"


def test_simulation_reproduces_the_design_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        cli.main(["simulate", "-n", "20000", "--env", "production", str(REPO / "definitions")])
        == cli.EXIT_OK
    )
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "25.00%" in lines["onboarding-pricing-preview"]
    assert "47.50%" in lines["search-typo-tolerance"]
    assert "OUTSIDE" not in "".join(lines.values())


def test_simulation_catches_wrong_ranges() -> None:
    snapshot = valid_snapshot(REPO / "definitions")
    assert snapshot.catalog is not None
    tampered = json.loads(json.dumps(bundle_of(snapshot, "production")))
    group = next(flag for flag in tampered["flags"] if flag["key"] == "search-ranking")
    group["variants"][0]["range"][1] += POINTS // 50  # slot 1 two points wider...
    group["variants"][1]["range"][0] += POINTS // 50  # ...at slot 2's expense
    run = simulate(snapshot.catalog, tampered, 20_000)
    assert not run.ok
    assert {(s.key, s.what) for s in run.shares if not s.ok} >= {("search-ranking", "slot-1")}


def test_simulation_catches_a_broken_exclusion() -> None:
    snapshot = valid_snapshot(REPO / "definitions")
    assert snapshot.catalog is not None
    tampered = json.loads(json.dumps(bundle_of(snapshot, "production")))
    for flag in tampered["flags"]:
        if flag["key"] == "onboarding-checklist":
            flag["requires"] = []  # forgets its group and its holdout
    run = simulate(snapshot.catalog, tampered, 2_000)
    assert any("all in group onboarding-flow" in v for v in run.violations)
    assert any("held out by growth-holdout" in v for v in run.violations)
    assert not run.ok


def test_eval_command_explains(capsys: pytest.CaptureFixture[str]) -> None:
    user = '{"user_id": "qa-anna"}'
    assert (
        cli.main(
            [
                "eval",
                user,
                "--env",
                "production",
                "--definitions",
                str(REPO / "definitions"),
                "--explain",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "checkout-one-page                        one-page                 override" in out
    assert "    hash      murmur3('global-holdout/qa-anna')" not in out  # an override, no draw
    assert (
        cli.main(
            [
                "eval",
                '{"user_id": "u-7"}',
                "--bundle",
                str(REPO / "generated" / "production" / "bundle.json"),
                "--flag",
                "search-typo-tolerance",
                "--explain",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("search-typo-tolerance")
    assert "requires  global-holdout gave" in out


def test_eval_command_rejects_bad_users(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        cli.main(
            ["eval", "[1, 2]", "--env", "production", "--definitions", str(REPO / "definitions")]
        )
        == cli.EXIT_USAGE
    )
    assert "USER must be a JSON object" in capsys.readouterr().err
    assert cli.main(["eval", "no-such-file.json"]) == cli.EXIT_USAGE


def test_eval_reads_the_user_from_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    user = tmp_path / "user.json"
    user.write_text('{"user_id": "qa-anna"}')
    definitions = str(REPO / "definitions")
    assert (
        cli.main(
            [
                "eval",
                str(user),
                "--env",
                "production",
                "--definitions",
                definitions,
                "--flag",
                "checkout-one-page",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.split() == ["checkout-one-page", "one-page", "override"]
