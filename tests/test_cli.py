"""The command line as a user meets it: exit codes, formats, --check, atomic writes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CASES, REPO

from compiler import cli, files


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the example repository's definitions in a fresh directory."""
    shutil.copytree(REPO / "definitions", tmp_path / "definitions")
    return tmp_path


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "compiler.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )


def test_missing_directory_is_a_usage_error(tmp_path: Path) -> None:
    result = run("validate", "nowhere", cwd=tmp_path)
    assert result.returncode == cli.EXIT_USAGE
    assert result.stderr == "expc: error: nowhere: no such definitions directory\n"


def test_unknown_option_is_a_usage_error(tmp_path: Path) -> None:
    assert run("compile", "--frobnicate", cwd=tmp_path).returncode == cli.EXIT_USAGE


def test_compile_then_check(project: Path) -> None:
    compiled = run("compile", cwd=project)
    assert compiled.returncode == 0, compiled.stderr
    assert "compiled 21 flags" in compiled.stdout
    assert (project / "generated" / "schema" / "experiment.schema.json").is_file()
    assert run("compile", "--check", cwd=project).returncode == 0

    experiment = project / "definitions" / "experiments" / "search" / "search-typo-tolerance.yaml"
    experiment.write_text(experiment.read_text().replace("state: running", "state: stopped"))
    stale = run("compile", "--check", cwd=project)
    assert stale.returncode == cli.EXIT_FINDINGS
    assert "generated/bundle.json: stale" in stale.stdout
    assert "schema" not in stale.stdout  # only the file that differs is named


def test_compile_refuses_broken_definitions_and_writes_nothing(project: Path) -> None:
    run("compile", cwd=project)
    before = (project / "generated" / "bundle.json").read_bytes()
    broken = project / "definitions" / "groups" / "search-ranking.yaml"
    broken.write_text(broken.read_text().replace("percent: 50", "percent: 150"))
    result = run("compile", cwd=project)
    assert result.returncode == cli.EXIT_FINDINGS
    assert "definitions/groups/search-ranking.yaml:6:14: error[E103 invalid-value]" in result.stderr
    assert "Traceback" not in result.stderr
    assert (project / "generated" / "bundle.json").read_bytes() == before


def test_source_commit_is_recorded_only_when_asked(project: Path) -> None:
    run("compile", "--source-commit", "abc123", cwd=project)
    bundle = json.loads((project / "generated" / "bundle.json").read_text())
    assert bundle["release"]["source_commit"] == "abc123"
    run("compile", cwd=project)
    bundle = json.loads((project / "generated" / "bundle.json").read_text())
    assert "source_commit" not in bundle["release"]


def test_json_and_github_formats() -> None:
    case = CASES / "errors" / "unknown-field" / "definitions"
    as_json = run("validate", "--format", "json", str(case), cwd=REPO)
    assert as_json.returncode == cli.EXIT_FINDINGS
    document = json.loads(as_json.stdout)
    assert document["version"] == 1 and document["errors"] == 1
    assert document["diagnostics"][0]["line"] == 7
    as_github = run("validate", "--format", "github", str(case), cwd=REPO)
    assert as_github.stdout.startswith(
        "::error file=tests/cases/errors/unknown-field/definitions/a.yaml,line=7,col=1,"
        "title=E101 unknown-field::unknown field"
    )


def test_github_annotations_escape_newlines_and_percent() -> None:
    from compiler.codes import INVALID_VALUE
    from compiler.diagnostics import Span, make, render_github

    text = render_github([make(INVALID_VALUE, "50% off\n::error::injected", Span("a,b:c.yaml"))])
    assert text == (
        "::error file=a%2Cb%3Ac.yaml,line=1,col=1,title=E103 invalid-value::"
        "50%25 off%0A::error::injected\n"
    )


def test_unreadable_file_is_located(project: Path) -> None:
    # A dangling link fails to read for every user, root included.
    (project / "definitions" / "broken.yaml").symlink_to(project / "moved-away.yaml")
    result = run("validate", cwd=project)
    assert result.returncode == cli.EXIT_FINDINGS
    assert "definitions/broken.yaml:1:1: error[E009 unreadable-file] cannot read the file" in (
        result.stderr
    )


def test_interrupted_write_leaves_the_old_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "bundle.json"
    target.write_text("old\n")

    def fail(_descriptor: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(KeyboardInterrupt):
        files.write_atomic(target, "new and much longer content\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["bundle.json"]


def test_graph_formats(project: Path) -> None:
    mermaid = run("graph", cwd=project)
    assert mermaid.stdout.startswith("flowchart LR\n")
    assert "n_checkout_surface -->|slot 3| n_checkout_payment_methods" in mermaid.stdout
    dot = run("graph", "--format", "dot", cwd=project)
    assert '"global-holdout" -> "search-ranking" [label="holdout member"];' in dot.stdout


def test_traffic_command_prints_expected_shares(project: Path) -> None:
    result = run("traffic", cwd=project)
    lines = {line.split()[0]: line.split()[-1] for line in result.stdout.splitlines()}
    assert lines["search-typo-tolerance"] == "47.5%"
    assert lines["onboarding-pricing-preview"] == "25%"


def test_ledger_is_append_only_across_compiles(project: Path) -> None:
    run("compile", cwd=project)
    ledger = json.loads((project / "generated" / "ledger.json").read_text())
    assert "search-typo-tolerance" in ledger["released"]
    assert set(ledger["live"]) >= {"search-ranking", "global-holdout", "checkout-surface"}
    (project / "definitions" / "experiments" / "search" / "search-typo-tolerance.yaml").unlink()
    group = project / "definitions" / "groups" / "search-ranking.yaml"
    group.write_text(group.read_text().replace("experiment: search-typo-tolerance", "# freed"))
    assert run("compile", cwd=project).returncode == 0
    after = json.loads((project / "generated" / "ledger.json").read_text())
    assert after["released"]["search-typo-tolerance"] == ledger["released"]["search-typo-tolerance"]
    assert run("compile", "--check", cwd=project).returncode == 0
