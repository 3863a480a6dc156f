"""The ledger is a guard, so it is guarded: a broken ledger is a located error, never an
empty history, on either side of a check; acknowledgements stay in it for good.

Every directory under tests/cases/ledger/ holds definitions/ and a broken
generated/ledger.json; expected.txt is what `expc compile` prints for it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import CASES, expc, git

from expc import cli

LEDGER_CASES = sorted(p for p in (CASES / "ledger").iterdir() if p.is_dir())


@pytest.mark.parametrize("case", LEDGER_CASES, ids=lambda p: p.name)
def test_compile_refuses_a_broken_ledger_with_a_located_error(
    case: Path,
    tmp_path: Path,
    update_expected: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    work = tmp_path / case.name
    shutil.copytree(case, work, ignore=shutil.ignore_patterns("expected.txt"))
    before = (work / "generated" / "ledger.json").read_bytes()
    monkeypatch.chdir(work)
    assert cli.main(["compile"]) == cli.EXIT_FINDINGS
    printed = capsys.readouterr().err
    if update_expected:
        (case / "expected.txt").write_text(printed, encoding="utf-8")
    assert printed == (case / "expected.txt").read_text(encoding="utf-8")
    assert printed.startswith("generated/ledger.json:")
    assert "error[E014 invalid-ledger]" in printed
    assert (work / "generated" / "ledger.json").read_bytes() == before
    assert sorted(p.name for p in (work / "generated").iterdir()) == ["ledger.json"]


@pytest.mark.parametrize("content", ["{}\n", "[]\n", "{not json\n", None], ids=repr)
def test_emptying_corrupting_or_deleting_the_ledger_blocks_the_check(
    released: Path, content: str | None
) -> None:
    ledger = released / "generated" / "ledger.json"
    if content is None:
        ledger.unlink()
    else:
        ledger.write_text(content)
    result = expc(released, "check", "--against", "HEAD")
    assert result.returncode == cli.EXIT_FINDINGS, result.stdout + result.stderr
    assert "error[C124 ledger-edited]" in result.stdout
    assert result.stdout.startswith("generated/ledger.json:")


def test_a_broken_ledger_in_the_previous_revision_stops_the_check(released: Path) -> None:
    (released / "generated" / "ledger.json").write_text('{"live": 5}\n')
    git(released, "commit", "-q", "-am", "break the ledger")
    result = expc(released, "check", "--against", "HEAD")
    assert result.returncode == cli.EXIT_USAGE
    assert "the previous side's ledger is broken" in result.stderr
    assert "generated/ledger.json:1:" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_broken_ledger_beside_a_released_bundle_stops_the_check(
    released: Path, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    shutil.copytree(released / "generated", release)
    (release / "ledger.json").write_text('{"released": {"x": 5}, "live": {}, "version": 1}\n')
    result = expc(released, "check", "--against", str(release / "production" / "bundle.json"))
    assert result.returncode == cli.EXIT_USAGE
    assert "ledger.json:1:" in result.stderr and "released.x" in result.stderr


def test_acknowledgements_stay_in_the_ledger_after_the_block_is_removed(released: Path) -> None:
    group = released / "definitions" / "groups" / "search-ranking.yaml"
    original = group.read_text()
    group.write_text(original.replace("percent: 50", "percent: 40", 1))
    blocked = expc(released, "check", "--against", "HEAD")
    fingerprint = blocked.stdout.split('fingerprint: "')[1].split('"')[0]
    acknowledgement = (
        f'acknowledge:\n  - rule: C101\n    fingerprint: "{fingerprint}"\n'
        "    reason: approved in the search review\n"
    )
    group.write_text(group.read_text() + acknowledgement)
    assert expc(released, "compile").returncode == 0
    git(released, "commit", "-q", "-am", "shrink slot 1, acknowledged")
    recorded = json.loads((released / "generated" / "ledger.json").read_text())["acknowledged"]
    # A release is named by the bundle of its first environment in promotion order.
    content_id = json.loads((released / "generated" / "staging" / "bundle.json").read_text())[
        "release"
    ]["content_id"]
    assert recorded == [
        {
            "key": "search-ranking",
            "rule": "C101",
            "fingerprint": fingerprint,
            "reason": "approved in the search review",
            "release": content_id,
        }
    ]
    # The block is removed, as C125 would ask once it is stale: the record stays.
    group.write_text(group.read_text().replace(acknowledgement, ""))
    assert expc(released, "compile").returncode == 0
    kept = json.loads((released / "generated" / "ledger.json").read_text())["acknowledged"]
    assert kept == recorded
    # And dropping it from the ledger by hand is an edit of the history.
    ledger = json.loads((released / "generated" / "ledger.json").read_text())
    del ledger["acknowledged"]
    (released / "generated" / "ledger.json").write_text(json.dumps(ledger))
    edited = expc(released, "check", "--against", "HEAD")
    assert edited.returncode == cli.EXIT_FINDINGS
    assert f"acknowledged.search-ranking.{fingerprint}" in edited.stdout
