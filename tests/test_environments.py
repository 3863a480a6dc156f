"""Environments (DESIGN §10) as a user meets them: outputs per environment, `--env`,
the ledger per environment, `expc envs`, and a repository without environments that
compiles to the same bytes as before they existed.

The fixtures are real repositories under tests/cases/: `environments/shop` declares
staging and production, `golden/no-environments` is the example company as it was
compiled before environments (its `generated/` holds those bytes).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import CASES

from expc import cli
from expc.outputs.ledger import parse

SHOP = CASES / "environments" / "shop"
GOLDEN = CASES / "golden" / "no-environments"


def run(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, str, str]:
    status = cli.main(list(arguments))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the shop repository, as the working directory."""
    shutil.copytree(SHOP / "definitions", tmp_path / "definitions")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def files_below(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def bundle(folder: Path, environment: str) -> dict[str, object]:
    document: dict[str, object] = json.loads(
        (folder / "generated" / environment / "bundle.json").read_text(encoding="utf-8")
    )
    return document


def flags(document: dict[str, object]) -> dict[str, dict[str, object]]:
    listed = document["flags"]
    assert isinstance(listed, list)
    return {flag["key"]: flag for flag in listed}


# --- a repository without environments -------------------------------------------------


def test_a_repository_without_environments_compiles_to_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The golden outputs were written by expc before environments existed; compiling
    the same definitions over them changes no byte of the bundle, the vectors, the
    ledger or CODEOWNERS, and adds no file. (The JSON Schemas under schema/ describe
    the formats, which gained optional fields, so they are not compared.)"""
    shutil.copytree(GOLDEN, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    status, _out, _err = run(capsys, "compile", "definitions")
    assert status == 0
    before = {k: v for k, v in files_below(GOLDEN / "generated").items() if "schema/" not in k}
    after = {k: v for k, v in files_below(tmp_path / "generated").items() if "schema/" not in k}
    assert after == before
    assert sorted(before) == ["CODEOWNERS", "bundle.json", "ledger.json", "vectors.json"]


# --- outputs per environment -------------------------------------------------------------


def test_each_environment_gets_its_bundle_vectors_and_targets(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _out, _err = run(capsys, "compile", "definitions", "--target", "amplitude")
    assert status == 0
    written = sorted(files_below(shop / "generated"))
    for environment in ("staging", "production"):
        for name in ("bundle.json", "vectors.json", "amplitude/flags.json"):
            assert f"{environment}/{name}" in written
    assert "bundle.json" not in written and "amplitude/flags.json" not in written
    assert {"ledger.json", "CODEOWNERS", "schema/bundle.schema.json"} <= set(written)

    staging, production = bundle(shop, "staging"), bundle(shop, "production")
    assert staging["release"]["environment"] == "staging"  # type: ignore[index]
    assert production["release"]["environment"] == "production"  # type: ignore[index]
    in_staging, in_production = flags(staging), flags(production)
    # Values an environment sets: state, traffic, overrides, a holdout's exclusions,
    # and a cohort's users (which reach the targeting of the experiment naming it).
    assert in_staging["checkout-express-pay"]["state"] == "running"
    assert in_production["checkout-express-pay"]["state"] == "draft"
    assert (
        in_staging["checkout-one-page"]["traffic"],
        in_production["checkout-one-page"]["traffic"],
    ) == (100, 20)
    assert in_staging["checkout-one-page"]["overrides"]["users"] == {"qa-anna": "one-page"}  # type: ignore[index]
    assert in_production["checkout-one-page"]["overrides"]["users"] == {}  # type: ignore[index]
    assert in_production["global"]["overrides"]["users"] == {"support-1": "on", "support-2": "on"}  # type: ignore[index]
    assert in_staging["global"]["overrides"]["users"] == {}  # type: ignore[index]
    assert "qa-anna" in json.dumps(in_staging["search-ranker"]["targeting"])
    assert "qa-anna" not in json.dumps(in_production["search-ranker"]["targeting"])
    # Structure is the same everywhere: a user lands in the same slot and variant.
    assert in_staging["checkout"] == in_production["checkout"]
    for key in in_staging:
        assert in_staging[key]["bucketing"] == in_production[key]["bucketing"]
        assert in_staging[key]["variants"] == in_production[key]["variants"]

    vectors = json.loads((shop / "generated" / "staging" / "vectors.json").read_text())
    assert vectors["bundle_content_id"] == staging["release"]["content_id"]  # type: ignore[index]
    assert run(capsys, "compile", "definitions", "--check", "--target", "amplitude")[0] == 0


def test_declaring_environments_removes_the_outputs_no_longer_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Left behind, generated/bundle.json would be published as if it were current."""
    shutil.copytree(GOLDEN, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    project = tmp_path / "definitions" / "project.yaml"
    project.write_text(project.read_text() + "environments: [staging, production]\n")
    status, out, _err = run(capsys, "compile", "definitions", "--check")
    assert status == cli.EXIT_FINDINGS
    assert "generated/bundle.json: stale" in out
    assert run(capsys, "compile", "definitions")[0] == 0
    assert not (tmp_path / "generated" / "bundle.json").exists()
    assert not (tmp_path / "generated" / "vectors.json").exists()
    assert (tmp_path / "generated" / "production" / "bundle.json").is_file()

    # Renaming an environment retires its folder the same way.
    project.write_text(project.read_text().replace("[staging, production]", "[qa, production]"))
    assert run(capsys, "compile", "definitions")[0] == 0
    assert not (tmp_path / "generated" / "staging").exists()
    assert (tmp_path / "generated" / "qa" / "bundle.json").is_file()


def test_the_ledger_records_liveness_per_environment_and_keeps_earlier_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(GOLDEN, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    ledger_path = tmp_path / "generated" / "ledger.json"
    before = parse(ledger_path.read_text(), "ledger.json")
    assert before.live  # groups went live before environments were declared
    project = tmp_path / "definitions" / "project.yaml"
    project.write_text(project.read_text() + "environments: [staging, production]\n")
    # A new group with an experiment running in staging only.
    (tmp_path / "definitions" / "groups" / "new-surface.yaml").write_text(
        "kind: mutex\nkey: new-surface\nslots:\n  - percent: 50\n    experiment: staged\n"
    )
    (tmp_path / "definitions" / "experiments" / "staged.yaml").write_text(
        "kind: experiment\nkey: staged\nstate: draft\nvariants:\n  - key: control\n"
        "  - key: treatment\nenvironments:\n  staging:\n    state: running\n"
    )
    assert run(capsys, "compile", "definitions")[0] == 0
    after = parse(ledger_path.read_text(), "ledger.json")
    assert after.live == before.live  # the history before environments is kept as it was
    assert set(after.live_in) == {"staging"}
    assert set(after.live_in["staging"]) == {"new-surface"}
    assert after.live_keys("staging") == frozenset(before.live) | {"new-surface"}
    assert after.live_keys("production") == frozenset(before.live)


# --- one environment at a time: --env -------------------------------------------------------


@pytest.mark.parametrize("command", ["traffic", "graph", "simulate", "eval"])
def test_commands_about_one_bundle_need_env(
    shop: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    user = ['{"user_id": "u-1"}'] if command == "eval" else []
    where = ["--definitions", "definitions"] if command == "eval" else ["definitions"]
    status, _out, err = run(capsys, command, *where, *user)
    assert status == cli.EXIT_USAGE
    assert "declare environments (staging, production); choose one with --env NAME" in err
    status, _out, err = run(capsys, command, *where, *user, "--env", "prodution")
    assert status == cli.EXIT_USAGE
    assert "--env prodution: no such environment (declared: staging, production)" in err
    assert "did you mean 'production'?" in err
    arguments = [*where, *user, "--env", "staging"]
    if command == "simulate":
        arguments += ["-n", "2000"]
    assert run(capsys, command, *arguments)[0] == 0


def test_env_without_environments_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(GOLDEN / "definitions", tmp_path / "definitions")
    monkeypatch.chdir(tmp_path)
    status, _out, err = run(capsys, "traffic", "definitions", "--env", "production")
    assert status == cli.EXIT_USAGE
    assert "the definitions declare no environments; leave out --env" in err


def test_eval_answers_for_the_environment_asked(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    anna = '{"user_id": "qa-anna"}'
    arguments = ["eval", "--definitions", "definitions", anna, "--flag", "checkout-one-page"]
    _status, staging, _err = run(capsys, *arguments, "--env", "staging")
    _status, production, _err = run(capsys, *arguments, "--env", "production")
    assert staging.split()[1:] == ["one-page", "override"]
    assert production.split()[2] != "override"
    # A bundle file says which environment it is for.
    run(capsys, "compile", "definitions")
    file = str(shop / "generated" / "production" / "bundle.json")
    status, _out, err = run(capsys, "eval", anna, "--bundle", file, "--env", "staging")
    assert status == cli.EXIT_USAGE
    assert "is the bundle of environment production" in err


# --- expc envs --------------------------------------------------------------------------------


def test_envs_prints_every_experiment_side_by_side(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _err = run(capsys, "envs", "definitions")
    assert status == 0
    assert out == (
        "experiment                               staging                         production\n"
        "                                         state     traffic  share        "
        "state     traffic  share\n"
        "checkout-express-pay                     running      100%    47.5%      "
        "draft        100%       0%      *\n"
        "checkout-one-page                        running      100%    47.5%      "
        "running       20%     9.5%      *\n"
        "search-ranker                            running      100%     100%      "
        "running      100%     100%\n"
        "* differs between environments (2 of 3); share: of all users now, before targeting\n"
        "also set per environment:\n"
        "  beta-users (staging): users\n"
        "  global (production): exclude\n"
    )


def test_envs_without_environments_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(GOLDEN / "definitions", tmp_path / "definitions")
    monkeypatch.chdir(tmp_path)
    status, _out, err = run(capsys, "envs", "definitions")
    assert status == cli.EXIT_USAGE
    assert "declare no environments" in err


# --- the safety check, per environment ------------------------------------------------------


def check(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, str]:
    status = cli.main(["check", *arguments])
    return status, capsys.readouterr().out


def test_check_reports_changes_per_environment_in_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Raising production's ramp changes production only; the JSON report says so."""
    shutil.copytree(SHOP / "definitions", tmp_path / "previous")
    shutil.copytree(SHOP / "definitions", tmp_path / "current")
    monkeypatch.chdir(tmp_path)
    ramped = tmp_path / "current" / "experiments" / "checkout-one-page.yaml"
    ramped.write_text(ramped.read_text().replace("traffic: 20 ", "traffic: 50 "))
    status, out = check(capsys, "current", "--against", "previous", "--format", "json")
    assert status == 0
    document = json.loads(out)
    assert document["changes"]["changed"] == ["checkout-one-page"]
    assert document["environments"] == {
        "staging": {"new": False, "changes": {"added": [], "changed": [], "removed": []}},
        "production": {
            "new": False,
            "changes": {"added": [], "changed": ["checkout-one-page"], "removed": []},
        },
    }
    assert document["removed_environments"] == []


def test_a_finding_names_its_environment_and_an_acknowledgement_accepts_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    case = CASES / "check" / "C113-fires-in-production"
    shutil.copytree(case, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    status, out = check(capsys, "current/definitions", "--against", "previous/definitions")
    assert status == cli.EXIT_FINDINGS
    fingerprint = out.split('fingerprint: "')[1].split('"')[0]
    status, out = check(
        capsys, "current/definitions", "--against", "previous/definitions", "--format", "json"
    )
    (finding,) = json.loads(out)["findings"]
    assert finding["environments"] == ["production"]
    assert finding["fingerprint"] == fingerprint
    experiment = tmp_path / "current" / "definitions" / "a.yaml"
    experiment.write_text(
        experiment.read_text()
        + f'acknowledge:\n  - rule: C113\n    fingerprint: "{fingerprint}"\n'
        + "    reason: production ramp-down agreed with analytics\n"
    )
    status, out = check(capsys, "current/definitions", "--against", "previous/definitions")
    assert status == 0
    assert "accepted" in out


def test_check_against_one_environments_released_bundle(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """generated/production/bundle.json is production's previous state, and only
    production is judged (its ledger is found one folder up)."""
    assert cli.main(["compile", "definitions"]) == 0
    capsys.readouterr()
    ramped = shop / "definitions" / "experiments" / "checkout-one-page.yaml"
    ramped.write_text(ramped.read_text().replace("traffic: 20 ", "traffic: 10 "))
    released = str(shop / "generated" / "production" / "bundle.json")
    status, out = check(capsys, "definitions", "--against", released, "--format", "json")
    assert status == cli.EXIT_FINDINGS
    document = json.loads(out)
    assert list(document["environments"]) == ["production"]
    (finding,) = document["findings"]
    assert (finding["code"], finding["environments"]) == ("C113", ["production"])


def test_the_pull_request_comment_stays_under_its_limit_with_many_environments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from expc.check.report import COMMENT_LIMIT

    names = [f"region-{index:03d}" for index in range(150)]
    for side, traffic in (("previous", 40), ("current", 60)):
        folder = tmp_path / side
        folder.mkdir()
        (folder / "project.yaml").write_text(
            f"kind: project\nkey: project\nenvironments: [{', '.join(names)}]\n"
        )
        slots = ""
        for index in range(10):
            slots += f"  - percent: 10\n    experiment: e-{index}\n"
            (folder / f"e-{index}.yaml").write_text(
                f"kind: experiment\nkey: e-{index}\nstate: running\ntraffic: {traffic}\n"
                "variants:\n  - key: control\n  - key: treatment\n"
            )
        (folder / "g.yaml").write_text(f"kind: mutex\nkey: g\nslots:\n{slots}")
    monkeypatch.chdir(tmp_path)
    status, out = check(capsys, "current", "--against", "previous", "--format", "markdown")
    assert status == 0
    assert len(out) <= COMMENT_LIMIT
    assert "The full report is longer than a pull-request comment allows" in out
    assert "more environments" in out
