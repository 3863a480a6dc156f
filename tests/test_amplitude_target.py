"""Target `amplitude`: Amplitude's own evaluation engine (from the `amplitude-experiment`
package, a test dependency) gives every user the same variant as expc's evaluator."""

from __future__ import annotations

import random
from typing import Any

import pytest
from conftest import CASES, REPO

from compiler import api, cli
from compiler.evaluate import Evaluator
from compiler.targets.amplitude import ExportError, export, to_dnf

engine_module = pytest.importorskip("amplitude_experiment.evaluation.engine")
types_module = pytest.importorskip("amplitude_experiment.evaluation.types")

USERS = 100_000


def random_user(rng: random.Random, index: int) -> dict[str, Any]:
    user: dict[str, Any] = {
        "user_id": rng.choice([f"user-{index}", f"u{index}@x", "qa-anna", "qa-chen"])
    }
    if rng.random() < 0.8:
        user["country"] = rng.choice(["NO", "SE", "DK", "DE", "US", "FI"])
    if rng.random() < 0.7:
        user["platform"] = rng.choice(["ios", "android", "web"])
    if rng.random() < 0.6:
        user["app_version"] = rng.choice(["5.1.9", "5.2.0", "5.10.1", "6.0.0"])
    if rng.random() < 0.5:
        user["account_age_days"] = rng.randint(1, 30)
    if rng.random() < 0.5:
        user["plan"] = rng.choice(["free", "pro"])
    if rng.random() < 0.1:
        user["email"] = rng.choice(["dev@shopwell.example", "someone@example.com"])
    return user


def amplitude_context(user: dict[str, Any]) -> dict[str, Any]:
    properties = {k: v for k, v in user.items() if k != "user_id"}
    return {"user": {"user_id": user["user_id"], "user_properties": properties}}


def test_amplitude_engine_agrees_with_expc_for_100000_users() -> None:
    bundle = api.bundle(api.load_snapshot(REPO / "definitions"))
    flags = [types_module.EvaluationFlag.from_dict(f) for f in export(bundle)["flags"]]
    engine = engine_module.EvaluationEngine()
    evaluator = Evaluator(bundle)
    rng = random.Random(20261125)
    disagreements: list[tuple[dict[str, Any], dict[str, Any]]] = []
    enrolled = 0
    for index in range(USERS):
        user = random_user(rng, index)
        ours = {key: result.variant for key, result in evaluator.evaluate(user).items()}
        theirs_raw = engine.evaluate(amplitude_context(user), flags)
        theirs = {
            key: (
                theirs_raw[key].key if key in theirs_raw and theirs_raw[key].key != "off" else None
            )
            for key in ours
        }
        enrolled += sum(v is not None for v in ours.values())
        if ours != theirs and len(disagreements) < 5:
            disagreements.append(
                (user, {k: (ours[k], theirs[k]) for k in ours if ours[k] != theirs[k]})
            )
    assert disagreements == []
    assert enrolled > USERS * 3  # the comparison is about real enrolments, not all "off"


def test_compile_writes_the_target_on_request(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert (
        cli.main(["compile", str(REPO / "definitions"), "--out", str(out), "--target", "amplitude"])
        == 0
    )
    assert (out / "amplitude" / "flags.json").is_file()
    assert (
        cli.main(
            ["compile", str(REPO / "definitions"), "--out", str(out), "--target", "optimizely"]
        )
        == 2
    )
    assert "unknown target 'optimizely'" in capsys.readouterr().err


def test_what_amplitude_cannot_express_is_refused_by_name() -> None:
    with pytest.raises(ExportError, match="exp-1: 'less' under 'none'"):
        to_dnf({"none": [{"attribute": "age", "op": "lt", "values": ["7"]}]}, "exp-1")
    with pytest.raises(ExportError, match="case-insensitive in Amplitude"):
        to_dnf({"attribute": "email", "op": "contains", "values": ["shop"]}, "exp-2")
    # Negations that keep their meaning for a missing attribute are exported.
    assert to_dnf({"none": [{"attribute": "plan", "op": "in", "values": ["free"]}]}, "exp-3") == [
        [
            {
                "selector": ["context", "user", "user_properties", "plan"],
                "op": "is not",
                "values": ["free"],
            }
        ]
    ]


def test_dnf_of_nested_groups() -> None:
    tree = {
        "all": [
            {
                "any": [
                    {"attribute": "a", "op": "is", "values": ["1"]},
                    {"attribute": "b", "op": "is", "values": ["2"]},
                ]
            },
            {"attribute": "c", "op": "exists", "values": []},
        ]
    }
    terms = to_dnf(tree, "f")
    assert [[c["selector"][-1] for c in term] for term in terms] == [["a", "c"], ["b", "c"]]


def test_project_targets_are_written_on_every_compile(tmp_path: Any) -> None:
    case = CASES / "evaluate" / "prerequisites" / "definitions"
    import shutil

    shutil.copytree(case, tmp_path / "definitions")
    (tmp_path / "definitions" / "project.yaml").write_text(
        "kind: project\nkey: project\ntargets: [amplitude]\n"
    )
    assert cli.main(["compile", str(tmp_path / "definitions")]) == 0
    assert (tmp_path / "generated" / "amplitude" / "flags.json").is_file()
