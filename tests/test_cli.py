"""The command line as a user meets it: exit codes, formats, --check, atomic writes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CASES, REPO, expc

from expc import cli
from expc.outputs import files


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the example repository's definitions in a fresh directory."""
    shutil.copytree(REPO / "definitions", tmp_path / "definitions")
    return tmp_path


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return expc(cwd, *args)


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
    assert "generated/production/bundle.json: stale" in stale.stdout
    assert "schema" not in stale.stdout  # only the file that differs is named


def test_compile_refuses_broken_definitions_and_writes_nothing(project: Path) -> None:
    run("compile", cwd=project)
    before = (project / "generated" / "production" / "bundle.json").read_bytes()
    broken = project / "definitions" / "groups" / "search-ranking.yaml"
    broken.write_text(broken.read_text().replace("percent: 50", "percent: 150"))
    result = run("compile", cwd=project)
    assert result.returncode == cli.EXIT_FINDINGS
    assert "definitions/groups/search-ranking.yaml:6:14: error[E103 invalid-value]" in result.stderr
    assert "Traceback" not in result.stderr
    assert (project / "generated" / "production" / "bundle.json").read_bytes() == before


def test_source_commit_is_recorded_only_when_asked(project: Path) -> None:
    run("compile", "--source-commit", "abc123", cwd=project)
    bundle = json.loads((project / "generated" / "production" / "bundle.json").read_text())
    assert bundle["release"]["source_commit"] == "abc123"
    run("compile", cwd=project)
    bundle = json.loads((project / "generated" / "production" / "bundle.json").read_text())
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
    from expc.codes import INVALID_VALUE
    from expc.diagnostics import Span, make
    from expc.render import counted, render_github

    diagnostic = make(INVALID_VALUE, "50% off", Span("a,b:c.yaml"), ["note\n::error::injected"])
    text = render_github(counted([diagnostic]))
    assert text == (
        "::error file=a%2Cb%3Ac.yaml,line=1,col=1,title=E103 invalid-value::"
        "50%25 off%0Anote\\n::error::injected\n"
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
    mermaid = run("graph", "--env", "production", cwd=project)
    assert mermaid.stdout.startswith("flowchart LR\n")
    assert "n_checkout_surface -->|slot 3| n_checkout_payment_methods" in mermaid.stdout
    # An experiment holding two slots of a group shows both.
    assert "n_search_ranking -->|slots 2, 3| n_search_semantic_ranker" in mermaid.stdout
    dot = run("graph", "--env", "production", "--format", "dot", cwd=project)
    assert '"global-holdout" -> "search-ranking" [label="holdout member"];' in dot.stdout


def test_traffic_command_prints_expected_shares(project: Path) -> None:
    result = run("traffic", "--env", "production", cwd=project)
    lines = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[1:]}
    assert lines["search-typo-tolerance"] == ["running", "47.5%"]
    assert lines["onboarding-pricing-preview"] == ["running", "25%"]


def test_traffic_gives_experiments_that_serve_nobody_no_share(project: Path) -> None:
    lines = {
        line.split()[0]: " ".join(line.split()[1:])
        for line in run("traffic", "--env", "production", cwd=project).stdout.splitlines()[1:]
    }
    assert lines["pricing-tier-names"] == "stopped 0% not serving"
    assert lines["checkout-bnpl-banner"] == "draft 0% not serving; 23.75% once running"
    # A prerequisite's own draws and targeting come on top: only an upper bound is known.
    assert lines["search-filters-sidebar"] == "draft 0% not serving; at most 100% once running"
    assert lines["pricing-usd-rounding"] == "concluded 100%"


def test_ledger_is_append_only_across_compiles(project: Path) -> None:
    run("compile", cwd=project)
    ledger = json.loads((project / "generated" / "ledger.json").read_text())
    assert "search-typo-tolerance" in ledger["released"]
    assert set(ledger["live_in"]["production"]) >= {
        "search-ranking",
        "global-holdout",
        "checkout-surface",
    }
    (project / "definitions" / "experiments" / "search" / "search-typo-tolerance.yaml").unlink()
    group = project / "definitions" / "groups" / "search-ranking.yaml"
    group.write_text(group.read_text().replace("experiment: search-typo-tolerance", "# freed"))
    assert run("compile", cwd=project).returncode == 0
    after = json.loads((project / "generated" / "ledger.json").read_text())
    assert after["released"]["search-typo-tolerance"] == ledger["released"]["search-typo-tolerance"]
    assert run("compile", "--check", cwd=project).returncode == 0


def test_a_blocked_destination_stops_compile_before_anything_is_replaced(project: Path) -> None:
    assert run("compile", cwd=project).returncode == 0
    generated = project / "generated"
    before = {
        name: (generated / name).read_bytes()
        for name in ("production/bundle.json", "production/vectors.json")
    }
    shutil.rmtree(generated / "schema")
    (generated / "schema").write_text("a file where a folder belongs\n")
    experiment = project / "definitions" / "experiments" / "search" / "search-typo-tolerance.yaml"
    experiment.write_text(experiment.read_text().replace("state: running", "state: stopped"))
    result = run("compile", cwd=project)
    assert result.returncode == cli.EXIT_USAGE
    assert "generated/schema: is a file, where expc needs a directory" in result.stderr
    assert "nothing written" in result.stderr
    assert {name: (generated / name).read_bytes() for name in before} == before
    assert not [p.name for p in generated.iterdir() if p.name.startswith(".")]  # no leftovers


@pytest.mark.parametrize("out", ["a-file", "/proc/expc-out"])
def test_an_output_directory_that_cannot_be_written_is_a_usage_error(
    project: Path, out: str
) -> None:
    (project / "a-file").write_text("not a directory\n")
    result = run("compile", "--out", out, cwd=project)
    assert result.returncode == cli.EXIT_USAGE, result.stderr
    assert result.stderr.startswith("expc: error: ")
    assert out in result.stderr and "Traceback" not in result.stderr


def test_no_definitions_is_a_usage_error_not_an_empty_bundle(project: Path) -> None:
    assert run("compile", cwd=project).returncode == 0
    released = (project / "generated" / "production" / "bundle.json").read_bytes()
    (project / "empty").mkdir()
    (project / "docs").mkdir()
    (project / "docs" / "README.md").write_text("no definitions here\n")
    for where in ("empty", "docs"):
        result = run("compile", where, "--out", "generated", cwd=project)
        assert result.returncode == cli.EXIT_USAGE
        assert "no definitions found" in result.stderr
    assert (project / "generated" / "production" / "bundle.json").read_bytes() == released


def test_outputs_do_not_depend_on_the_working_directory(project: Path) -> None:
    assert run("compile", cwd=project).returncode == 0
    expected = (project / "generated" / "CODEOWNERS").read_text()
    assert "/definitions/groups/checkout-surface.yaml @shopwell/checkout" in expected
    # From outside the repository, with an absolute path.
    outside = run("compile", "--check", str(project / "definitions"), cwd=Path("/"))
    assert outside.returncode == 0, outside.stdout
    # From inside the definitions folder: generated/ is still beside it.
    inside = run("compile", ".", cwd=project / "definitions")
    assert inside.returncode == 0
    assert not (project / "definitions" / "generated").exists()
    assert (project / "generated" / "CODEOWNERS").read_text() == expected


def test_the_garbage_collector_is_back_on_after_a_command(project: Path) -> None:
    import gc

    assert gc.isenabled()
    assert cli.main(["validate", str(project / "definitions")]) == cli.EXIT_OK
    assert gc.isenabled()


def test_rules_are_found_in_any_case(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["rules", "c101"]) == cli.EXIT_OK
    assert capsys.readouterr().out.startswith("C101 live-group-slots-changed")


def test_eval_names_the_two_sides_of_a_holdout(project: Path) -> None:
    qa = run("eval", '{"user_id": "qa-anna"}', "--env", "production", cwd=project).stdout
    holdout = next(line for line in qa.splitlines() if line.startswith("global-holdout "))
    assert holdout.split()[1:] == ["not", "held", "out", "override"]


@pytest.mark.parametrize("users", ["10000", "50000"])
def test_simulate_accepts_an_expected_share_of_100_percent(project: Path, users: str) -> None:
    result = run("simulate", "-n", users, "--env", "production", cwd=project)
    assert result.returncode == 0, result.stdout
    rounding = next(line for line in result.stdout.splitlines() if "pricing-usd-rounding" in line)
    assert "100.00%" in rounding and "OUTSIDE" not in rounding


@pytest.mark.parametrize("users", ["0", "-3", "10000001", "99999999999999999999"])
def test_simulate_refuses_a_user_count_out_of_range(project: Path, users: str) -> None:
    result = run("simulate", "-n", users, "--env", "production", cwd=project)
    assert result.returncode == cli.EXIT_USAGE
    assert "-n must be between 1 and 10,000,000" in result.stderr


def test_control_characters_from_definitions_never_reach_the_output_raw(project: Path) -> None:
    experiment = project / "definitions" / "experiments" / "search" / "search-typo-tolerance.yaml"
    # A field name that would start a workflow command and retitle the terminal.
    experiment.write_text(experiment.read_text() + '"x\\n::error::pwned\\u001b]2;t\\u0007": 1\n')
    for fmt in ("text", "github", "json"):
        result = run("validate", "--format", fmt, cwd=project)
        assert result.returncode == cli.EXIT_FINDINGS
        printed = result.stdout + result.stderr
        assert not [line for line in printed.splitlines() if line.startswith("::error::")]
        assert "\x1b" not in printed and "\x07" not in printed
        shown = json.loads(result.stdout)["diagnostics"][0]["message"] if fmt == "json" else printed
        assert "x\\n::error::pwned\\x1b]2;t\\x07" in shown


def test_check_answers_in_the_requested_format_whatever_goes_wrong(project: Path) -> None:
    broken = project / "definitions" / "groups" / "search-ranking.yaml"
    broken.write_text(broken.read_text().replace("percent: 50", "percent: 150"))
    invalid = run("check", "--against", "definitions", "--format", "json", cwd=project)
    assert invalid.returncode == cli.EXIT_FINDINGS
    document = json.loads(invalid.stdout)
    assert document["valid"] is False and document["blocking"] is True
    assert document["diagnostics"][0]["code"] == "E103"
    annotated = run("check", "--against", "definitions", "--format", "github", cwd=project)
    assert annotated.stdout.startswith("::error file=definitions/groups/search-ranking.yaml,")
    usage = run("check", "--against", "", "--format", "json", cwd=project)
    assert usage.returncode == cli.EXIT_USAGE
    assert json.loads(usage.stdout)["error"]["kind"] == "usage"
    unknown = run("check", "--against", "HEAD", "--frobnicate", "--format=json", cwd=project)
    assert unknown.returncode == cli.EXIT_USAGE
    assert "frobnicate" in json.loads(unknown.stdout)["error"]["message"]


def test_check_against_an_empty_or_malformed_reference_is_a_usage_error(project: Path) -> None:
    assert run("compile", cwd=project).returncode == 0
    empty = run("check", "--against", "", cwd=project)
    assert empty.returncode == cli.EXIT_USAGE and "--against is empty" in empty.stderr
    bundle = json.loads((project / "generated" / "production" / "bundle.json").read_text())
    bundle["flags"][0]["variants"] = "not a list"
    from expc.sdk.evaluate import content_id_of

    bundle["release"]["content_id"] = content_id_of(bundle)  # valid id, malformed flags
    (project / "released.json").write_text(json.dumps(bundle))
    result = run("check", "--against", "released.json", cwd=project)
    assert result.returncode == cli.EXIT_USAGE
    assert "released.json: not a usable bundle" in result.stderr
    assert "Traceback" not in result.stderr


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.parametrize("signal_number", [9, 15], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_compile_leaves_no_worker_behind(tmp_path: Path, signal_number: int) -> None:
    import signal
    import time

    sys.path.insert(0, str(REPO / "benchmarks"))
    from generate import generate

    definitions = generate(3_000, tmp_path / "big")
    process = subprocess.Popen(
        [sys.executable, "-m", "expc", "compile", str(definitions)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "EXPC_JOBS": "2"},
    )
    deadline = time.monotonic() + 60
    workers: list[int] = []
    while not workers and time.monotonic() < deadline and process.poll() is None:
        workers = _children(process.pid)
        time.sleep(0.01)
    assert workers, "the compile never started a worker"
    process.send_signal(signal.Signals(signal_number))
    process.wait(timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{w}").exists() for w in workers):
        time.sleep(0.05)
    alive = [w for w in workers if Path(f"/proc/{w}/stat").exists()]
    zombies = [
        w for w in alive if Path(f"/proc/{w}/stat").read_text().split(")")[1].split()[0] == "Z"
    ]
    assert alive == zombies


def test_a_link_that_cannot_be_followed_is_refused_where_it_stands(
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A link into what the process may not look at (as /proc/1/cwd is for many users)
    is a located error in definitions and in specs, never an internal error."""
    (project / "specs").mkdir(exist_ok=True)
    for folder in ("definitions", "specs"):
        (project / folder / "locked.yaml").symlink_to("/nowhere/locked")
    real_stat = Path.stat

    def stat(self: Path, *, follow_symlinks: bool = True) -> os.stat_result:
        if self.name == "locked.yaml" and follow_symlinks:
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, follow_symlinks=follow_symlinks)

    monkeypatch.setattr(Path, "stat", stat)
    monkeypatch.chdir(project)
    assert cli.main(["validate"]) == cli.EXIT_FINDINGS
    assert "definitions/locked.yaml:1:1: error[E012 outside-definitions]" in capsys.readouterr().err
    (project / "definitions" / "locked.yaml").unlink()
    assert cli.main(["test"]) == cli.EXIT_USAGE
    printed = capsys.readouterr()
    assert "specs/locked.yaml:1:1: error[T014 spec-outside-folder]" in printed.out + printed.err
    # Named on the command line, it cannot even be looked at: a usage error.
    assert cli.main(["test", "specs/locked.yaml"]) == cli.EXIT_USAGE
    assert "specs/locked.yaml: cannot be read (Permission denied)" in capsys.readouterr().err
