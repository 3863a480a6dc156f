"""The specs a reader meets first: the example company's `specs/` (they pass, and they
cover what the issue promised: the 25% and 47.5% shares, every group's exclusivity,
`at` users, a matrix), the README's example specs (they run exactly as shown), and a
change to the example's definitions that breaks one of them (`expc test` fails at the
spec's line, through a separate process).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
from conftest import REPO, expc, valid_snapshot

from expc import cli
from expc.reading.model import Mutex
from expc.specs import load as spec_files

EXAMPLE_SPECS = REPO / "specs"


@pytest.fixture(scope="module")
def example_run() -> dict[str, object]:
    """`expc test --format json` on the example company, from the repository root."""
    result = expc(REPO, "test", "--format", "json")
    assert result.returncode == cli.EXIT_OK, result.stdout + result.stderr
    document: dict[str, object] = json.loads(result.stdout)
    return document


def _example_specs() -> list[spec_files.SpecFile]:
    specs, problems = spec_files.read(spec_files.listed([EXAMPLE_SPECS]))
    assert problems == []
    return specs


def test_the_example_specs_pass_in_both_environments(example_run: dict[str, object]) -> None:
    assert example_run["failed"] == 0
    assert example_run["environments"] == ["staging", "production"]
    assert example_run["simulated_users"] == 100_000
    written = [case for spec in _example_specs() for case in spec.spec.cases]
    assert len(written) >= 25
    assert any(case.at for case in written) and any(case.matrix for case in written)


def test_the_example_specs_hold_the_design_shares_in_production(
    example_run: dict[str, object],
) -> None:
    results = example_run["results"]
    assert isinstance(results, list)
    production_shares = {
        r["title"] for r in results if r["kind"] == "share" and r["environment"] == "production"
    }
    shares = {
        share.flag: share.enrolled
        for spec in _example_specs()
        for share in spec.spec.shares
        if share.enrolled is not None
    }
    # The flags `expc traffic --env production` gives 25% and 47.5% (DESIGN §4).
    assert str(shares["onboarding-pricing-preview"]) == "25"
    assert str(shares["search-typo-tolerance"]) == "47.5"
    assert "share: onboarding-pricing-preview enrolled 25%" in production_shares
    assert "share: search-typo-tolerance enrolled 47.5%" in production_shares


def test_every_group_of_the_example_is_proved_exclusive(example_run: dict[str, object]) -> None:
    snapshot = valid_snapshot(REPO / "definitions")
    groups = {
        key: {slot.experiment for slot in loaded.definition.slots if slot.experiment}
        for key, loaded in snapshot.objects.items()
        if isinstance(loaded.definition, Mutex)
    }
    assert len(groups) == 5
    results = example_run["results"]
    assert isinstance(results, list)
    proved = {
        frozenset(r["title"].removeprefix("exclusive: ").split(", "))
        for r in results
        if r["kind"] == "exclusive" and r["passed"]
    }
    # checkout-surface's third slot is the nested group: its experiments count too.
    groups["checkout-surface"] |= groups["checkout-payment-methods"]
    unproved = [key for key, members in groups.items() if not any(members <= p for p in proved)]
    assert unproved == []


def test_a_change_that_breaks_an_example_spec_fails_at_its_line(tmp_path: Path) -> None:
    shutil.copytree(REPO / "definitions", tmp_path / "definitions")
    shutil.copytree(EXAMPLE_SPECS, tmp_path / "specs")
    # The compiled outputs go stale with the change below: specs must not read them.
    shutil.copytree(REPO / "generated", tmp_path / "generated")
    holdout = tmp_path / "definitions" / "holdouts" / "global-holdout.yaml"
    # Support staff stop being excluded from the global holdout in production.
    holdout.write_text(holdout.read_text().replace("[support-lena, support-omar]", "[nobody]"))
    result = expc(tmp_path, "test", "--env", "production")
    assert result.returncode == cli.EXIT_FINDINGS, result.stdout + result.stderr
    spec = (tmp_path / "specs" / "checkout.yaml").read_text().splitlines()
    case = spec.index("  - description: support staff see what customers see, never held out")
    line = next(n for n in range(case, len(spec)) if "global-holdout:" in spec[n]) + 1
    assert (
        f"specs/checkout.yaml:{line}:7: error[T101 case-failed] global-holdout: expected "
        "variant on, reason override; got variant on, reason bucketed" in result.stdout
    )
    assert "    trace (global-holdout and what it requires):" in result.stdout
    assert re.search(r"^\d+ passed, 2 failed \(3 spec files in production;", result.stdout, re.M)


# --- the README ----------------------------------------------------------------------

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)


def _readme_specs_section() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    found = re.search(r"^## Specs\n(.*?)(?=^## |\Z)", readme, re.M | re.S)
    assert found is not None, "README.md has no '## Specs' section with the example specs"
    return found[1]


def test_every_readme_example_spec_runs_as_shown(tmp_path: Path) -> None:
    """Each `yaml` block of the README's `## Specs` section that starts with
    `# specs/NAME.yaml` is written to that file; each `text` block that starts with
    `$ expc test ...` is that command, run on the example company with the files
    written so far, and the rest of the block is exactly what it prints."""
    shutil.copytree(REPO / "definitions", tmp_path / "definitions")
    (tmp_path / "specs").mkdir()
    written: list[str] = []
    ran: set[str] = set()
    commands = 0
    for language, body in _FENCE.findall(_readme_specs_section()):
        first, _, rest = body.partition("\n")
        if language == "yaml" and first.startswith("# specs/"):
            name = first.removeprefix("# ").strip()
            (tmp_path / name).write_text(body, encoding="utf-8")
            written.append(name)
        elif language == "text" and first.startswith("$ expc test"):
            arguments = shlex.split(first.removeprefix("$ expc"))
            result = expc(tmp_path, *arguments)
            assert result.stdout == rest, (
                f"README output of `{first}` differs:\n{result.stdout}{result.stderr}"
            )
            failed = ", 0 failed" not in rest.splitlines()[-1]
            assert result.returncode == (cli.EXIT_FINDINGS if failed else cli.EXIT_OK)
            named = [a for a in arguments[1:] if a.startswith("specs/")]
            ran |= set(named or written)
            commands += 1
    assert len(written) >= 2 and commands >= 1
    assert sorted(ran) == sorted(written), "a README example spec is never run"


def test_the_example_specs_pass_when_user_ids_are_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Specs give plain attributes (`user: {user_id: qa-anna}`); with `user_id` private
    the bundle holds digests of the QA ids, and the evaluator hashes the user's value
    itself, so the same specs pass."""
    shutil.copytree(REPO / "definitions", tmp_path / "definitions")
    shutil.copytree(EXAMPLE_SPECS, tmp_path / "specs")
    project = tmp_path / "definitions" / "project.yaml"
    if "\nprivate_attributes:" not in project.read_text():
        project.write_text(project.read_text() + "private_attributes: [user_id, email]\n")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["compile"]) == cli.EXIT_OK
    bundle = (tmp_path / "generated" / "production" / "bundle.json").read_text()
    assert "qa-anna" not in bundle and "support-lena" not in bundle
    assert "qa-lead@shopwell.example" not in bundle
    capsys.readouterr()
    assert cli.main(["test", "-q"]) == cli.EXIT_OK
    assert ", 0 failed (4 spec files in staging, production;" in capsys.readouterr().out
