"""`expc check` as CI runs it: against git revisions, bundle files, with settings and
acknowledgements, in every output format."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import CASES, REPO, expc, git

from expc import cli
from expc.check import report
from expc.check.run import run
from expc.render import MARKER, render


@pytest.fixture
def repository(released: Path) -> Path:
    """A git repository with the example at HEAD~1 and an unsafe change at HEAD."""
    work = released
    group = work / "definitions" / "groups" / "search-ranking.yaml"
    group.write_text(group.read_text().replace("percent: 50", "percent: 40", 1))
    assert expc(work, "compile").returncode == 0
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "shrink slot 1")
    return work


def test_check_against_a_git_revision(repository: Path) -> None:
    result = expc(repository, "check", "--against", "HEAD~1")
    assert result.returncode == cli.EXIT_FINDINGS, result.stderr
    assert (
        "definitions/groups/search-ranking.yaml:2:6: error[C101 live-group-slots-changed] "
        "live group 'search-ranking' changed its slot percents (50.00%/20.00%/10.00%/20.00% -> "
        "40.00%/20.00%/10.00%/20.00%); this re-buckets 40.00% of the group's users"
    ) in result.stdout
    assert "HEAD~1 (" in result.stdout.splitlines()[-1]
    same = expc(repository, "check", "--against", "HEAD")
    assert same.returncode == cli.EXIT_OK
    assert same.stdout.startswith("safe: 0 blocking")


def test_missing_revision_in_a_shallow_clone_says_how_to_fetch(
    repository: Path, tmp_path: Path
) -> None:
    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{repository}", str(shallow))
    result = expc(shallow, "check", "--against", "HEAD~1")
    assert result.returncode == cli.EXIT_USAGE
    assert "git revision 'HEAD~1' is not in this repository" in result.stderr
    assert "fetch-depth: 0" in result.stderr
    typo = expc(repository, "check", "--against", "mian")
    assert typo.returncode == cli.EXIT_USAGE
    assert "git fetch origin mian" in typo.stderr


def test_acknowledging_the_printed_snippet_unblocks_and_is_audited(repository: Path) -> None:
    blocked = expc(repository, "check", "--against", "HEAD~1")
    lines = blocked.stdout.splitlines()
    start = lines.index("      acknowledge:")
    snippet = "\n".join(line[6:] for line in lines[start : start + 4]) + "\n"
    assert (
        "to accept it knowingly, add to definitions/groups/search-ranking.yaml:"
        in (lines[start - 1])
    )
    group = repository / "definitions" / "groups" / "search-ranking.yaml"
    # Pasted as printed; the quotes keep an all-digit fingerprint a string.
    group.write_text(
        group.read_text() + snippet.replace("<why this is acceptable>", "approved by search team")
    )
    fingerprint = snippet.split('fingerprint: "')[1].split('"')[0]
    accepted = expc(repository, "check", "--against", "HEAD~1")
    assert accepted.returncode == cli.EXIT_OK
    assert "(accepted: approved by search team)" in accepted.stdout
    assert expc(repository, "compile").returncode == 0
    bundle = json.loads((repository / "generated" / "production" / "bundle.json").read_text())
    assert bundle["audit"] == [
        {
            "key": "search-ranking",
            "rule": "C101",
            "fingerprint": fingerprint,
            "reason": "approved by search team",
        }
    ]
    # Editing the change makes the acknowledgement stale: blocked again, and a warning.
    group.write_text(group.read_text().replace("percent: 40", "percent: 45", 1))
    stale = expc(repository, "check", "--against", "HEAD~1")
    assert stale.returncode == cli.EXIT_FINDINGS
    assert "warning[C125 unused-acknowledgement]" in stale.stdout


def test_rule_settings_come_from_the_previous_side(tmp_path: Path) -> None:
    case = CASES / "check" / "C113-fires-traffic-lowered"
    work = tmp_path / "case"
    shutil.copytree(case, work)
    (work / "current" / "definitions" / "project.yaml").write_text(
        "kind: project\nkey: project\ncheck:\n  disable: [C113]\n"
    )
    result = run(work / "current" / "definitions", str(work / "previous" / "definitions"))
    assert result.blocking  # a change cannot switch off its own check
    (work / "previous" / "definitions" / "project.yaml").write_text(
        "kind: project\nkey: project\n"
        "check:\n  severity: {running-experiment-traffic-changed: warning}\n"
    )
    result = run(work / "current" / "definitions", str(work / "previous" / "definitions"))
    assert not result.blocking
    assert [str(f.severity) for f in result.findings] == ["warning"]


def test_against_a_released_bundle_file(tmp_path: Path) -> None:
    case = tmp_path / "case"
    shutil.copytree(CASES / "check" / "C112-fires-weights", case)
    out = tmp_path / "release"
    assert cli.main(["compile", str(case / "previous" / "definitions"), "--out", str(out)]) == 0
    result = run(case / "current" / "definitions", str(out / "bundle.json"))
    # The released ledger beside the bundle has entries; the current side has none.
    assert [f.code.id for f in result.findings] == ["C112", "C124"]
    assert "re-buckets 20.00% of enrolled users" in result.findings[0].message
    assert "ledger.json is missing" in result.findings[1].message
    (case / "current" / "generated").mkdir()
    shutil.copy(out / "ledger.json", case / "current" / "generated" / "ledger.json")
    result = run(case / "current" / "definitions", str(out / "bundle.json"))
    assert [f.code.id for f in result.findings] == ["C112"]


def test_markdown_report_marker_traffic_and_escaping(tmp_path: Path) -> None:
    work = tmp_path / "case"
    shutil.copytree(CASES / "check" / "C112-fires-salt", work)
    hostile = "x<img src=1>`|*[link](http://evil)\n::error::pwned"
    target = work / "current" / "definitions" / "a.yaml"
    target.write_text(target.read_text().replace("salt: a-v2", f"salt: {json.dumps(hostile)}"))
    result = run(work / "current" / "definitions", str(work / "previous" / "definitions"))
    markdown = report.render_markdown(result)
    assert markdown.startswith(MARKER + "\n")
    assert "<img" not in markdown and "](http" not in markdown
    assert "\n::error::" not in markdown
    github = render(result.report(), "github")
    assert github.count("\n") == 1  # one annotation: the newline is shown, not kept
    assert "\\n::error::pwned" in github


def test_markdown_shows_shares_before_and_after_and_a_mermaid_picture(repository: Path) -> None:
    os.chdir(repository)
    try:
        result = run(Path("definitions"), "HEAD~1")
    finally:
        os.chdir(REPO)
    markdown = report.render_markdown(result)
    assert "**search\\-ranking**" in markdown
    # Code spans show keys as they are (escapes inside backticks would be shown too).
    assert "| `search-typo-tolerance` | 47.50% | 38.00% |" in markdown
    assert "| `search-semantic-ranker` | 28.50% | 28.50% |" in markdown
    assert "`search\\-" not in markdown and "`definitions/groups/search-ranking.yaml" in markdown
    assert "```mermaid" in markdown


def test_github_format_caps_annotations_and_writes_the_summary(tmp_path: Path) -> None:
    previous = tmp_path / "previous" / "definitions"
    current = tmp_path / "current" / "definitions"
    for side, traffic in ((previous, 50), (current, 20)):
        side.mkdir(parents=True)
        for index in range(25):
            (side / f"e{index:02d}.yaml").write_text(
                f"kind: experiment\nkey: e{index:02d}\nstate: running\ntraffic: {traffic}\n"
                "variants:\n  - key: control\n  - key: treatment\n"
            )
    summary = tmp_path / "summary.md"
    result = expc(
        tmp_path,
        "check",
        "current/definitions",
        "--against",
        "previous/definitions",
        "--format",
        "github",
        env={"GITHUB_STEP_SUMMARY": str(summary)},
    )
    assert result.returncode == cli.EXIT_FINDINGS
    lines = result.stdout.splitlines()
    assert len(lines) == 11
    assert lines[-1] == "::error::15 more error finding(s) not annotated; see the summary"
    assert summary.read_text().startswith(MARKER)


def test_markdown_stays_under_the_comment_limit(tmp_path: Path) -> None:
    previous = tmp_path / "previous"
    current = tmp_path / "current"
    for side, traffic in ((previous, 50), (current, 20)):
        side.mkdir()
        for index in range(1500):
            (side / f"experiment-with-a-long-name-{index:04d}.yaml").write_text(
                f"kind: experiment\nkey: experiment-with-a-long-name-{index:04d}\nstate: running\n"
                f"traffic: {traffic}\nvariants:\n  - key: control\n  - key: treatment\n"
            )
    markdown = report.render_markdown(run(current, str(previous)))
    assert len(markdown) <= report.COMMENT_LIMIT
    assert "longer than a pull-request comment allows" in markdown
    assert "more findings (see the job log)" in markdown


def test_a_file_name_that_is_not_utf8_gets_the_same_diagnostic_from_git(tmp_path: Path) -> None:
    work = tmp_path / "config"
    shutil.copytree(REPO / "definitions", work / "definitions")
    name = os.fsdecode(b"definitions/cohorts/ab\xffc.yaml")
    (work / name).write_text("kind: cohort\nkey: abc\nusers: [x]\n")
    directory = expc(work, "validate")
    assert directory.returncode == cli.EXIT_FINDINGS
    assert "error[E105 key-mismatch]" in directory.stderr
    git(work, "init", "-q", "-b", "main")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "a file name that is not UTF-8")
    (work / name).unlink()
    result = expc(work, "check", "--against", "HEAD")
    assert result.returncode == cli.EXIT_USAGE  # the previous side does not validate
    assert "error[E105 key-mismatch]" in result.stderr
    assert "ab\\xffc.yaml" in result.stderr or "ab\\udcffc.yaml" in result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr


def test_markdown_pictures_a_holdout_by_its_two_sides_and_lists_only_experiments(
    repository: Path,
) -> None:
    holdout = repository / "definitions" / "holdouts" / "global-holdout.yaml"
    holdout.write_text(holdout.read_text().replace("percent: 5", "percent: 10"))
    os.chdir(repository)
    try:
        result = run(Path("definitions"), "HEAD")
    finally:
        os.chdir(REPO)
    markdown = report.render_markdown(result)
    assert '-->|"10.00%"| e1g0_1["held out: in none of its experiments"]' in markdown
    assert '-->|"90.00%"| e1g0_2["not held out: checkout-apple-pay-first, ' in markdown
    assert "empty" not in markdown.split("```mermaid")[1].split("```")[0].split("search-ranking")[0]
    rows = [line for line in markdown.splitlines() if line.startswith("| `")]
    # Groups under the holdout are not experiments: they get no row of shares.
    assert not [row for row in rows if "`checkout-surface`" in row and "%" in row]
    assert "| `search-typo-tolerance` | 38.00% | 36.00% |" in rows


def test_links_and_yml_files_in_a_git_revision_are_refused_as_on_disk(tmp_path: Path) -> None:
    work = tmp_path / "config"
    shutil.copytree(REPO / "definitions", work / "definitions")
    (work / "outside.yaml").write_text("kind: cohort\nkey: leak\nusers: [x]\n")
    (work / "definitions" / "cohorts" / "leak.yaml").symlink_to(work / "outside.yaml")
    (work / "definitions" / "cohorts" / "beta.yml").write_text("kind: cohort\nkey: beta\n")
    on_disk = expc(work, "validate")
    git(work, "init", "-q", "-b", "main")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "a link out and a .yml file")
    (work / "definitions" / "cohorts" / "leak.yaml").unlink()
    (work / "definitions" / "cohorts" / "beta.yml").unlink()
    from_git = expc(work, "check", "--against", "HEAD")
    assert from_git.returncode == cli.EXIT_USAGE  # the previous side does not validate
    for result in (on_disk, from_git):
        assert "Traceback" not in result.stderr
    assert "definitions/cohorts/beta.yml:1:1: error[E013 not-yaml-extension]" in on_disk.stderr
    assert "definitions/cohorts/leak.yaml:1:1: error[E012 outside-definitions]" in on_disk.stderr
    # The check stops at the first error of the previous side; git lists beta.yml first.
    assert "definitions/cohorts/beta.yml:1:1: error[E013 not-yaml-extension]" in from_git.stderr
    (work / "definitions" / "cohorts" / "beta.yml").write_text("kind: cohort\nkey: beta\n")
    git(work, "rm", "-q", "--cached", "definitions/cohorts/beta.yml")
    git(work, "commit", "-q", "-m", "only the link")
    (work / "definitions" / "cohorts" / "beta.yml").unlink()
    link_only = expc(work, "check", "--against", "HEAD")
    assert "definitions/cohorts/leak.yaml:1:1: error[E012 outside-definitions]" in link_only.stderr
