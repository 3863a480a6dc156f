"""`expc test` (DESIGN §11) as a user sees it.

Every directory under tests/cases/specs/<case>/ holds `specs/` and `expected.txt`: the
exit status and exactly what `expc test specs` prints, run in that directory against
the small shop of tests/cases/spec-shop/ (or the case's own `definitions/`), with the
extra arguments in `args` when there is one. A case named after a code shows that
code: T0xx specs that cannot run (exit 2), T1xx specs that fail (exit 1); `passes-*`
cases pass (exit 0). Other tests run the README's example spec, the example company's
specs, a change that breaks a spec (through a separate process), and every format.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import CASES, REPO, expc

from expc import cli
from expc.diagnostics import CODES
from expc.outputs.bundle_types import Flag
from expc.sdk.bucketing import POINTS, hash_value

SPEC_CASES = CASES / "specs"
SHOP = CASES / "spec-shop" / "definitions"


def _cases() -> list[Path]:
    return sorted(p for p in SPEC_CASES.iterdir() if p.is_dir())


def _expected_exit(case: Path) -> int:
    if case.name.startswith("passes-"):
        return cli.EXIT_OK
    if case.name.startswith("T1"):
        return cli.EXIT_FINDINGS
    return cli.EXIT_USAGE  # T0xx, and reading errors (E0xx) of spec files


def _run_case(
    case: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    monkeypatch.chdir(case)
    own = case / "definitions"
    definitions = "definitions" if own.is_dir() else os.path.relpath(SHOP, case)
    extra = (case / "args").read_text().split() if (case / "args").exists() else []
    status = cli.main(["test", "specs", "--definitions", definitions, *extra])
    printed = capsys.readouterr()
    return status, f"exit: {status}\n{printed.out}{printed.err}"


@pytest.mark.parametrize("case", _cases(), ids=lambda p: p.name)
def test_spec_case(
    case: Path,
    update_expected: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, printed = _run_case(case, monkeypatch, capsys)
    expected = case / "expected.txt"
    if update_expected:
        expected.write_text(printed, encoding="utf-8")
    assert printed == expected.read_text(encoding="utf-8")
    assert status == _expected_exit(case)
    assert "Traceback" not in printed


def _spec_codes() -> list[str]:
    import expc.specs.codes  # noqa: F401 - registers them

    return sorted(code for code in CODES if code.startswith("T"))


def test_every_spec_code_has_a_case_and_is_documented() -> None:
    seen = "".join((case / "expected.txt").read_text(encoding="utf-8") for case in _cases())
    documented = (REPO / "docs" / "diagnostics.md").read_text(encoding="utf-8")
    codes = _spec_codes()
    assert len(codes) >= 18
    assert [code for code in codes if f"[{code} " not in seen] == []
    missing = [c for c in codes if f"| {c} | {CODES[c].name} |" not in documented]
    assert missing == []
    named = {case.name.split("-", 1)[0] for case in _cases()}
    assert [code for code in codes if code not in named] == []


# --- through the command line ---------------------------------------------------------


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """The shop's definitions with the specs of the passing case, in a fresh folder."""
    shutil.copytree(SHOP, tmp_path / "definitions")
    shutil.copytree(SPEC_CASES / "passes-every-kind-of-check" / "specs", tmp_path / "specs")
    return tmp_path


def _test(
    cwd: Path,
    *args: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> tuple[int, str, str]:
    monkeypatch.chdir(cwd)
    status = cli.main(["test", *args])
    printed = capsys.readouterr()
    return status, printed.out, printed.err


def _line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_a_change_that_breaks_a_spec_fails_at_the_spec_line(shop: Path) -> None:
    passing = expc(shop, "test")
    assert passing.returncode == cli.EXIT_OK, passing.stdout + passing.stderr
    assert "18 passed, 0 failed" in passing.stdout
    # The testers' override in staging is dropped: the staging spec says they see it.
    banner = shop / "definitions" / "experiments" / "banner.yaml"
    banner.write_text(banner.read_text().replace("      big: {cohorts: [testers]}\n", "      {}\n"))
    failing = expc(shop, "test")
    assert failing.returncode == cli.EXIT_FINDINGS
    line = _line_of(shop / "specs" / "staging.yaml", "banner: {variant: big")
    assert (
        f"specs/staging.yaml:{line}:7: error[T101 case-failed] banner: expected variant big, "
        'reason override, payload {"size": 2}; got variant ' in failing.stdout
    )
    assert "    trace (banner and what it requires):" in failing.stdout
    assert "16 passed, 2 failed" in failing.stdout
    # The same change, from the pre-commit hook's quiet run: only the failures.
    quiet = expc(shop, "test", "-q")
    assert quiet.returncode == cli.EXIT_FINDINGS
    assert "  ok  " not in quiet.stdout and "error[T101 case-failed]" in quiet.stdout


def test_every_format_reports_the_same_run(
    shop: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(SPEC_CASES / "T101-case-failed" / "specs", shop / "specs", dirs_exist_ok=True)
    summary = shop / "summary.md"
    status, out, _ = _test(
        shop, "--format", "json", "--summary", str(summary), monkeypatch=monkeypatch, capsys=capsys
    )
    assert status == cli.EXIT_FINDINGS
    document = json.loads(out)
    assert (document["version"], document["passed"], document["failed"]) == (1, 19, 3)
    assert document["environments"] == ["staging", "production"]
    assert document["simulated_users"] == 100_000
    assert {f["code"] for f in document["failures"]} == {"T101"}
    found = next(r for r in document["results"] if r["title"].startswith("the fuzzy search"))
    assert found["passed"] is False and found["user"] == {"user_id": "at-5"}
    assert found["detail"].startswith("user at-5 (long-term 50%: on")
    markdown = summary.read_text()
    assert markdown.startswith("**Specs** (`expc test`): ❌ 19 passed, 3 failed")
    assert "| `specs/launch.yaml:7:7` | T101 banner: expected variant big" in markdown

    status, out, _ = _test(shop, "--format", "github", monkeypatch=monkeypatch, capsys=capsys)
    annotations = [line for line in out.splitlines() if line.startswith("::")]
    assert len(annotations) == 3
    assert annotations[0].startswith("::error file=specs/launch.yaml,line=7,col=7,title=T101")
    assert out.splitlines()[-1].startswith("19 passed, 3 failed")

    status, out, _ = _test(shop, "--format", "junit", monkeypatch=monkeypatch, capsys=capsys)
    root = ET.fromstring(out)
    assert (root.tag, root.get("tests"), root.get("failures")) == ("testsuites", "22", "3")
    suites = {suite.get("name"): suite for suite in root}
    assert set(suites) == {
        "specs/launch.yaml (production)",
        "specs/production.yaml (production)",
        "specs/staging.yaml (staging)",
    }
    failed = suites["specs/launch.yaml (production)"].findall("testcase/failure")
    assert [f.get("type") for f in failed] == ["T101 case-failed"] * 3
    assert "trace (banner and what it requires):" in (failed[0].text or "")


def test_the_same_run_gives_the_same_bytes(
    shop: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for fmt in ("text", "json", "junit", "github"):
        first = _test(shop, "--format", fmt, monkeypatch=monkeypatch, capsys=capsys)
        second = _test(shop, "--format", fmt, monkeypatch=monkeypatch, capsys=capsys)
        assert first == second


def test_the_simulation_gives_the_same_answer_on_one_core_and_on_several(
    shop: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The simulated users are split over the cores: the counts, and the users an
    `exclusive` failure names first, do not depend on how many there are."""
    shutil.copytree(SPEC_CASES / "T103-not-exclusive" / "specs", shop / "specs", dirs_exist_ok=True)
    printed = {}
    for jobs in ("1", "2", "3"):
        monkeypatch.setenv("EXPC_JOBS", jobs)
        printed[jobs] = _test(shop, "--format", "json", monkeypatch=monkeypatch, capsys=capsys)
    assert printed["1"] == printed["2"] == printed["3"]
    status, out, _ = printed["2"]
    assert status == cli.EXIT_FINDINGS
    failure = next(f for f in json.loads(out)["failures"] if f["code"] == "T103")
    assert failure["notes"][:3] == [f"sim-{n} is in checkout, banner" for n in (2, 3, 5)]


def test_text_from_specs_never_reaches_the_output_raw(
    shop: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Text from the definitions too: the payload every failure below prints as "got".
    banner = shop / "definitions" / "experiments" / "banner.yaml"
    banner.write_text(
        banner.read_text().replace(
            "  - key: small\n",
            '  - key: small\n    payload: {note: "\\u202e\\u001b[2J\\n::error::y"}\n',
        )
    )
    (shop / "specs" / "hostile.yaml").write_text(
        "environment: production\n"
        "cases:\n"
        '  - description: "x\\n::error::pwned\\u001b]2;t\\u0007 <&\\"> \\u202e"\n'
        '    user: {user_id: "u\\n::warning::id\\u0000\\u202e"}\n'
        '    expect: {banner: {payload: {note: "\\u001b[31m"}}}\n'
        "  - description: a payload of text\n"
        "    user: {user_id: u-1}\n"
        '    expect: {banner: {payload: "\\u202e\\u001b[31m\\n::error::x"}}\n'
    )
    for fmt in ("text", "github", "json", "junit"):
        status, out, err = _test(shop, "--format", fmt, monkeypatch=monkeypatch, capsys=capsys)
        assert status == cli.EXIT_FINDINGS
        printed = out + err
        assert not [line for line in printed.splitlines() if line.startswith("::error::")]
        assert not [line for line in printed.splitlines() if line.startswith("::warning::")]
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f\u202e]", printed)
        if fmt == "junit":
            titles = [case.get("name") for case in ET.fromstring(out).iter("testcase")]
            assert 'x\\n::error::pwned\\x1b]2;t\\x07 <&"> \\u202e' in titles


def test_usage_errors_and_what_runs_by_default(
    shop: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def usage(*args: str) -> str:
        status, _out, err = _test(shop, *args, monkeypatch=monkeypatch, capsys=capsys)
        assert status == cli.EXIT_USAGE
        return err

    assert "did you mean 'production'?" in usage("--env", "prodution")
    assert "selects no case" in usage("-k", "nothing like this")
    assert "elsewhere: no such spec file or folder" in usage("elsewhere")
    assert "-n must be between 1 and 10,000,000" in usage("-n", "0")
    # A count that would hold a CI runner for hours is refused before anything runs.
    assert "-n must be between 1 and 10,000,000" in usage("-n", "99999999999999999999")
    assert "no such folder to write it in" in usage("--summary", str(shop / "nowhere" / "x.md"))
    assert not (shop / "nowhere").exists()
    junit = _test(shop, "--env", "qa", "--format", "junit", monkeypatch=monkeypatch, capsys=capsys)
    error = ET.fromstring(junit[1]).find("testsuite/testcase/error")
    assert error is not None and "--env qa: no such environment" in (error.get("message") or "")
    # A spec folder nobody named, and that does not exist, holds no specs: nothing fails.
    shutil.rmtree(shop / "specs")
    status, out, _ = _test(shop, monkeypatch=monkeypatch, capsys=capsys)
    assert status == cli.EXIT_OK
    assert out == "no specs: no spec file in specs (docs/specs.md says how to write one)\n"
    # project.yaml may name the folder; then it must exist.
    project = shop / "definitions" / "project.yaml"
    project.write_text(project.read_text() + "specs: checks\n")
    assert "checks: no such spec file or folder" in usage()
    shutil.copytree(SPEC_CASES / "passes-one-environment" / "specs", shop / "checks")
    status, out, _ = _test(shop, monkeypatch=monkeypatch, capsys=capsys)
    assert status == cli.EXIT_OK and out.startswith("checks/production.yaml (production)\n")


def test_definitions_that_do_not_validate_are_findings_not_usage(
    shop: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    surface = shop / "definitions" / "groups" / "surface.yaml"
    surface.write_text(surface.read_text().replace("percent: 50", "percent: 150"))
    status, _out, err = _test(shop, monkeypatch=monkeypatch, capsys=capsys)
    assert status == cli.EXIT_FINDINGS
    assert "definitions/groups/surface.yaml:" in err and "fix them first" in err


def test_init_writes_specs_that_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["init", str(tmp_path / "config")]) == cli.EXIT_OK
    capsys.readouterr()
    status, out, _ = _test(tmp_path / "config", monkeypatch=monkeypatch, capsys=capsys)
    assert status == cli.EXIT_OK, out
    assert out.endswith(
        "5 passed, 0 failed (2 spec files in staging, production; 100,000 simulated users)\n"
    )


# --- CI, the action and pre-commit run the specs ----------------------------------------


def test_the_workflow_the_action_and_the_hooks_run_the_specs(tmp_path: Path) -> None:
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe")
    action = yaml.load((REPO / "action.yml").read_text())
    steps = {step.get("id"): step for step in action["runs"]["steps"]}
    specs = steps["specs"]["run"]
    assert "expc test" in specs and "--format github" in specs and "--summary" in specs
    # The pull-request comment carries the specs' paragraph (how many passed).
    comment = next(s for s in action["runs"]["steps"] if "github-script" in s.get("uses", ""))
    assert "expc-specs.md" in comment["with"]["script"] and "expc-specs.md" in specs
    assert any("steps.specs.outputs.failed" in str(s.get("if")) for s in steps.values())
    workflow = yaml.load((REPO / ".github" / "workflows" / "experiments.yml").read_text())
    assert workflow["jobs"]["gate"]["steps"][1]["uses"] == "./"
    assert "specs/**" in workflow["on"]["pull_request"]["paths"]
    assert "expc test" in [step.get("run") for step in workflow["jobs"]["publish"]["steps"]]
    offered = {
        hook["id"]: hook for hook in yaml.load((REPO / ".pre-commit-hooks.yaml").read_text())
    }
    assert offered["expc-test"]["entry"].startswith("expc test")
    assert "specs" in offered["expc-test"]["files"]
    own = yaml.load((REPO / ".pre-commit-config.yaml").read_text())
    entries = [hook.get("entry", "") for repo in own["repos"] for hook in repo["hooks"]]
    assert any(entry.startswith("expc test") for entry in entries)
    # What `expc init` writes runs them too.
    assert cli.main(["init", str(tmp_path / "config")]) == cli.EXIT_OK
    scaffolded = tmp_path / "config"
    steps = yaml.load((scaffolded / ".github" / "workflows" / "experiments.yml").read_text())
    assert "expc test" in [step.get("run") for step in steps["jobs"]["compile"]["steps"]]
    hooks = yaml.load((scaffolded / ".pre-commit-config.yaml").read_text())["repos"][0]["hooks"]
    assert {"id": "expc-test"} in hooks


@pytest.mark.skipif(
    shutil.which("pre-commit") is None
    and not (Path(sys.executable).parent / "pre-commit").exists(),
    reason="pre-commit is in the test extra",
)
def test_the_pre_commit_hook_fails_a_commit_that_breaks_a_spec(shop: Path) -> None:
    from conftest import git

    git(shop, "init", "-q")
    git(shop, "add", "-A")
    pre_commit = shutil.which("pre-commit") or str(Path(sys.executable).parent / "pre-commit")

    def hook() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [pre_commit, "try-repo", str(REPO), "expc-test", "--all-files"],
            cwd=shop,
            capture_output=True,
            text=True,
            env={**os.environ, "PRE_COMMIT_HOME": str(shop / ".pre-commit-home")},
            check=False,
        )

    passing = hook()
    assert passing.returncode == 0, passing.stdout
    banner = shop / "definitions" / "experiments" / "banner.yaml"
    banner.write_text(banner.read_text().replace("      big: {cohorts: [testers]}\n", "      {}\n"))
    git(shop, "add", "-A")
    failing = hook()
    assert failing.returncode == 1
    assert "specs/staging.yaml:" in failing.stdout and "error[T101 case-failed]" in failing.stdout


# --- `at` ----------------------------------------------------------------------------


def _shop_flags() -> dict[str, Flag]:
    from conftest import valid_snapshot

    from expc.outputs.release import bundle_of

    bundle = bundle_of(valid_snapshot(SHOP), "production")
    return {flag["key"]: flag for flag in bundle["flags"]}


def test_an_at_user_of_one_flag_lands_exactly_on_the_percent() -> None:
    from decimal import Decimal

    from expc.specs import draws

    flags = _shop_flags()
    for percent in ("0%", "12.5%", "60%", "99.99%", "100%"):
        chosen = draws.draw(flags["surface"], Decimal(percent.rstrip("%")))
        user = draws.user_for([chosen])
        assert user is not None and user == draws.user_for([chosen])
        point = hash_value("surface", user) // 100
        assert point == min(int(Decimal(percent.rstrip("%")) * POINTS / 100), POINTS - 1)
        assert re.fullmatch(r"[A-Za-z0-9-]+", user)


def test_an_at_user_of_several_flags_is_the_first_id_in_every_range() -> None:
    from decimal import Decimal

    from expc.specs import draws

    flags = _shop_flags()
    chosen = [
        draws.draw(flags["long-term"], Decimal(50)),
        draws.draw(flags["surface"], Decimal(60)),
    ]
    assert [(d.lands, d.low, d.high) for d in chosen] == [
        ("on", 4294967, POINTS),
        ("slot-2", 21474836, 34359738),
    ]
    user = draws.user_for(chosen)
    assert user is not None and user.startswith("at-")
    assert all(d.holds(user) for d in chosen)
    earlier = [f"at-{n}" for n in range(int(user.removeprefix("at-")))]
    assert not any(all(d.holds(value) for d in chosen) for value in earlier)
