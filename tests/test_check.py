"""`expc check`: every case directory under tests/cases/check/ holds previous/ and
current/ definitions (and ledgers) with the exact text report in expected.txt."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import CASES

from expc import cli
from expc.check import rules

CHECK_CASES = sorted(p for p in (CASES / "check").iterdir() if p.is_dir())


def run_case(case: Path, fmt: str = "text") -> tuple[int, str]:
    previous = Path.cwd()
    os.chdir(case)
    try:
        import contextlib
        import io

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = cli.main(
                [
                    "check",
                    "current/definitions",
                    "--against",
                    "previous/definitions",
                    "--format",
                    fmt,
                ]
            )
    finally:
        os.chdir(previous)
    return status, out.getvalue()


@pytest.mark.parametrize("case", CHECK_CASES, ids=lambda p: p.name)
def test_check_case(case: Path, update_expected: bool) -> None:
    status, text = run_case(case)
    expected = case / "expected.txt"
    if update_expected:
        expected.write_text(text, encoding="utf-8")
    assert text == expected.read_text(encoding="utf-8")
    blocked = text.splitlines()[-1].startswith("blocked")
    assert status == (cli.EXIT_FINDINGS if blocked else cli.EXIT_OK)
    code = case.name.split("-")[0]
    if "-fires" in case.name:
        assert f"[{code} " in text
    else:
        assert f"error[{code} " not in text and f"warning[{code} " not in text


def test_every_rule_is_documented_and_has_both_kinds_of_case() -> None:
    names = {case.name for case in CHECK_CASES}
    for found in rules.all_rules():
        code = found.id
        assert "breaks:" in found.doc and "instead:" in found.doc, code
        assert found.name == found.name.lower() and " " not in found.name
        assert any(n.startswith(f"{code}-fires") for n in names), f"{code} has no failing case"
        assert any(n.startswith(f"{code}-safe") for n in names), f"{code} has no passing case"


def test_rules_command_prints_one_rule(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["rules", "running-experiment-traffic-changed"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("C113 running-experiment-traffic-changed (error)")
    assert "instead:" in out
    assert cli.main(["rules", "C999"]) == cli.EXIT_USAGE


def test_json_format_and_strict_warnings() -> None:
    import json

    case = CASES / "check" / "C114-fires"
    status, text = run_case(case, "json")
    document = json.loads(text)
    assert status == cli.EXIT_OK and document["version"] == 1
    assert [f["code"] for f in document["findings"]] == ["C114"]
    assert document["findings"][0]["path"] == "current/definitions/a.yaml"
    previous = Path.cwd()
    os.chdir(case)
    try:
        strict = cli.main(
            ["check", "current/definitions", "--against", "previous/definitions", "--strict"]
        )
    finally:
        os.chdir(previous)
    assert strict == cli.EXIT_FINDINGS
