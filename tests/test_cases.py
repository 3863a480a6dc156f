"""Every directory under tests/cases/<family>/<case>/ is one case of real YAML files.

`expected.txt` holds the exact diagnostics in the text format. Error cases must fail
with exit code 1; warning cases pass, and fail under --strict.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import CASES

from expc import cli
from expc.diagnostics import CODES, Code
from expc.pipeline.snapshot import read
from expc.render import diagnostic_text


def _cases(family: str) -> list[Path]:
    return sorted(p for p in (CASES / family).iterdir() if p.is_dir())


def _diagnostics_text(case: Path) -> str:
    result = read(case / "definitions", "definitions")
    return "".join(diagnostic_text(d) + "\n" for d in result.diagnostics)


def _compare(case: Path, update: bool) -> str:
    actual = _diagnostics_text(case)
    expected_file = case / "expected.txt"
    if update:
        expected_file.write_text(actual, encoding="utf-8")
    assert actual == expected_file.read_text(encoding="utf-8")
    return actual


@pytest.mark.parametrize("case", _cases("errors"), ids=lambda p: p.name)
def test_error_case(
    case: Path,
    update_expected: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    actual = _compare(case, update_expected)
    assert "error[" in actual
    monkeypatch.chdir(case)
    assert cli.main(["validate", "definitions"]) == cli.EXIT_FINDINGS
    printed = capsys.readouterr()
    assert "Traceback" not in printed.err + printed.out
    assert printed.err.startswith("definitions/")
    assert cli.main(["compile", "definitions"]) == cli.EXIT_FINDINGS
    assert not (case / "generated").exists()


@pytest.mark.parametrize("case", _cases("warnings"), ids=lambda p: p.name)
def test_warning_case(case: Path, update_expected: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    actual = _compare(case, update_expected)
    assert "warning[" in actual and "error[" not in actual
    monkeypatch.chdir(case)
    assert cli.main(["validate", "definitions"]) == cli.EXIT_OK
    assert cli.main(["validate", "--strict", "definitions"]) == cli.EXIT_FINDINGS


def _release_codes() -> list[Code]:
    """The codes of reading, validating, linking and linting (the check's rules and the
    specs' codes have their own meta-tests, in test_check.py and test_specs.py)."""
    from expc import codes  # noqa: F401 - registers them

    return [code for code in CODES.values() if not code.id.startswith(("C", "T"))]


def test_every_validate_code_has_a_case() -> None:
    seen = "".join(
        (case / "expected.txt").read_text(encoding="utf-8")
        for family in ("errors", "warnings", "ledger")
        for case in _cases(family)
    )
    untested = [code.id for code in _release_codes() if f"[{code.id} " not in seen]
    assert untested == ["E009"]  # unreadable file: needs a permission change; see test_cli


def test_every_code_is_documented() -> None:
    from conftest import REPO

    documented = (REPO / "docs" / "diagnostics.md").read_text(encoding="utf-8")
    missing = [
        code.id for code in _release_codes() if f"| {code.id} | {code.name} |" not in documented
    ]
    assert missing == []
