"""The GitOps pieces as a team adopts them: workflows and the action pass actionlint,
the pre-commit hooks run from a real repository, `expc init` scaffolds a repository
that compiles at once, and owners become CODEOWNERS."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from ruamel.yaml import YAML

from compiler import cli, report

ACTIONLINT = shutil.which("actionlint") or str(Path(sys.executable).parent / "actionlint")
needs_actionlint = pytest.mark.skipif(
    not Path(ACTIONLINT).exists(), reason="actionlint is installed with the test extra"
)


def actionlint(*paths: Path, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ACTIONLINT, "-no-color", *map(str, paths)],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


@needs_actionlint
def test_workflows_pass_actionlint() -> None:
    workflows = sorted((REPO / ".github" / "workflows").glob("*.yml"))
    assert {w.name for w in workflows} >= {"ci.yml", "experiments.yml"}
    result = actionlint(*workflows)
    assert result.returncode == 0, result.stdout


@needs_actionlint
def test_actionlint_catches_a_wrong_input_to_our_action(tmp_path: Path) -> None:
    broken = REPO / ".github" / "workflows" / "zz-broken-for-test.yml"
    broken.write_text(
        "on: pull_request\njobs:\n  gate:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - uses: ./\n        with:\n          definitons: definitions\n"
    )
    try:
        result = actionlint(broken)
    finally:
        broken.unlink()
    assert result.returncode == 1
    assert 'input "definitons" is not defined' in result.stdout


def test_action_is_complete_and_uses_the_reports_marker() -> None:
    action = YAML(typ="safe").load((REPO / "action.yml").read_text())
    assert set(action["inputs"]) == {"definitions", "against", "comment", "python-version"}
    assert all(spec.get("description") for spec in action["inputs"].values())
    assert action["runs"]["using"] == "composite"
    for step in action["runs"]["steps"]:
        assert "uses" in step or step.get("shell") == "bash", step
    comment_step = next(s for s in action["runs"]["steps"] if "github-script" in s.get("uses", ""))
    assert report.MARKER in comment_step["with"]["script"]
    workflow = YAML(typ="safe").load(
        (REPO / ".github" / "workflows" / "experiments.yml").read_text()
    )
    gate = workflow["jobs"]["gate"]
    assert gate["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert gate["steps"][0]["with"]["fetch-depth"] == 0
    assert workflow["permissions"] == {"contents": "read"}


def git(cwd: Path, *arguments: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=expc", "-c", "user.email=expc@example.com", *arguments],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


@pytest.mark.skipif(
    shutil.which("pre-commit") is None
    and not (Path(sys.executable).parent / "pre-commit").exists(),
    reason="pre-commit is in the test extra",
)
def test_pre_commit_hooks_from_this_repository(tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(REPO / "definitions", config / "definitions")
    shutil.copytree(REPO / "generated", config / "generated")
    git(config, "init", "-q")
    git(config, "add", "-A")
    pre_commit = shutil.which("pre-commit") or str(Path(sys.executable).parent / "pre-commit")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "cache")}

    def hook(hook_id: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [pre_commit, "try-repo", str(REPO), hook_id, "--all-files"],
            cwd=config,
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )

    assert hook("expc-validate").returncode == 0
    assert hook("expc-compile-check").returncode == 0
    experiment = config / "definitions" / "experiments" / "search" / "search-typo-tolerance.yaml"
    experiment.write_text(experiment.read_text().replace("state: running", "state: stopped"))
    git(config, "add", "-A")
    stale = hook("expc-compile-check")
    assert stale.returncode == 1 and "generated/bundle.json: stale" in stale.stdout
    experiment.write_text(experiment.read_text() + "trafic: 5\n")
    git(config, "add", "-A")
    invalid = hook("expc-validate")
    assert invalid.returncode == 1 and "error[E101 unknown-field]" in invalid.stdout


def test_init_scaffolds_a_repository_that_compiles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "new-config"
    assert cli.main(["init", str(target)]) == cli.EXIT_OK
    assert (target / ".github" / "workflows" / "experiments.yml").is_file()
    assert (target / ".pre-commit-config.yaml").is_file()
    monkeypatch.chdir(target)
    assert cli.main(["validate"]) == cli.EXIT_OK
    assert cli.main(["compile"]) == cli.EXIT_OK
    assert (
        "/definitions/groups/example-group.yaml @your-org/your-team"
        in (target / "generated" / "CODEOWNERS").read_text()
    )
    if Path(ACTIONLINT).exists():
        assert (
            actionlint(target / ".github" / "workflows" / "experiments.yml", cwd=target).returncode
            == 0
        )


def test_init_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "definitions").mkdir()
    (tmp_path / "definitions" / "project.yaml").write_text("kind: project\nkey: project\n")
    assert cli.main(["init", str(tmp_path)]) == cli.EXIT_USAGE
    assert "not overwriting existing files" in capsys.readouterr().err
    assert not (tmp_path / "README.md").exists()  # nothing written


def test_codeowners_lists_every_owned_definition() -> None:
    lines = (REPO / "generated" / "CODEOWNERS").read_text().splitlines()
    assert "/definitions/groups/checkout-surface.yaml @shopwell/checkout" in lines
    assert (
        "/definitions/experiments/onboarding/onboarding-pricing-preview.yaml "
        "@shopwell/growth @shopwell/pricing"
    ) in lines
