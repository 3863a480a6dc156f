"""`expc promote KEY --from A --to B` end to end, on real files with comments: the
exact text it leaves, the diff it prints, and what it refuses."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import CASES

from expc import cli

SHOP = CASES / "environments" / "shop"
CYCLE = CASES / "environments" / "promote-cycle"


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(SHOP / "definitions", tmp_path / "definitions")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "definitions"


def promote(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, str, str]:
    status = cli.main(["promote", *arguments])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_promote_adds_the_target_block_and_keeps_comments(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = shop / "experiments" / "checkout-express-pay.yaml"
    status, out, err = promote(
        capsys, "checkout-express-pay", "--from", "staging", "--to", "production"
    )
    assert (status, err) == (0, "")
    assert path.read_text() == (
        "kind: experiment\n"
        "key: checkout-express-pay\n"
        "state: draft\n"
        "variants:\n"
        "  - key: control\n"
        "  - key: express\n"
        "environments:\n"
        "  staging:\n"
        "    state: running      # not in production yet\n"
        "  production:\n"
        "    state: running\n"
    )
    assert out == (
        "--- a/definitions/experiments/checkout-express-pay.yaml\n"
        "+++ b/definitions/experiments/checkout-express-pay.yaml\n"
        "@@ -7,3 +7,5 @@\n"
        " environments:\n"
        "   staging:\n"
        "     state: running      # not in production yet\n"
        "+  production:\n"
        "+    state: running\n"
        "promoted 'checkout-express-pay' from staging to production: state in "
        "definitions/experiments/checkout-express-pay.yaml\n"
    )


def test_a_value_equal_to_the_base_is_inherited_and_overrides_stay(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Staging runs at the base traffic: promoting it removes production's ramp
    (production then inherits the base, as staging does); staging's QA override is
    never copied."""
    path = shop / "experiments" / "checkout-one-page.yaml"
    status, out, _err = promote(
        capsys, "checkout-one-page", "--from", "staging", "--to", "production"
    )
    assert status == 0
    assert path.read_text() == (
        "# Promoted to production, where it ramps up slowly.\n"
        "kind: experiment\n"
        "key: checkout-one-page\n"
        "state: running\n"
        "traffic: 100\n"
        "variants:\n"
        "  - key: control\n"
        "  - key: one-page\n"
        "environments:\n"
        "  staging:\n"
        "    overrides:          # QA sees the new page in staging only\n"
        "      one-page: [qa-anna]\n"
    )
    assert out.endswith(
        "promoted 'checkout-one-page' from staging to production: traffic (as the base) in "
        "definitions/experiments/checkout-one-page.yaml\n"
    )


def test_promote_places_a_new_block_in_promotion_order(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = shop / "holdouts" / "global.yaml"
    status, _out, _err = promote(capsys, "global", "--from", "production", "--to", "staging")
    assert status == 0
    assert path.read_text() == (
        "kind: holdout\n"
        "key: global\n"
        "percent: 5\n"
        "members:\n"
        "  groups: [checkout]\n"
        "environments:\n"
        "  staging:\n"
        "    exclude:\n"
        "      users: [support-1, support-2]\n"
        "  production:\n"
        "    exclude:            # support staff always see what customers see\n"
        "      users: [support-1, support-2]\n"
    )


def test_dry_run_prints_the_change_and_writes_nothing(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = shop / "experiments" / "checkout-express-pay.yaml"
    before = path.read_bytes()
    status, out, _err = promote(
        capsys, "checkout-express-pay", "--from", "staging", "--to", "production", "--dry-run"
    )
    assert status == 0
    assert "+  production:\n+    state: running\n" in out
    assert out.endswith("(--dry-run: nothing written)\n")
    assert path.read_bytes() == before


def test_an_unsafe_promotion_is_refused(shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Production's 20% ramp into staging lowers a running experiment's traffic there;
    with staging's findings blocking (the shop makes them warnings), that is refused."""
    project = shop / "project.yaml"
    project.write_text(project.read_text().replace("blocking: false", "blocking: true"))
    path = shop / "experiments" / "checkout-one-page.yaml"
    before = path.read_bytes()
    status, out, err = promote(
        capsys, "checkout-one-page", "--from", "production", "--to", "staging"
    )
    assert status == cli.EXIT_FINDINGS
    assert "+    traffic: 20" in out
    assert "error[C113 running-experiment-traffic-changed]" in err
    assert "lowered traffic from 100% to 20%" in err and "(in staging)" in err
    assert err.endswith(
        "refused: promoting 'checkout-one-page' from production to staging (traffic) would "
        "be blocked by the safety check; nothing written\n"
    )
    assert path.read_bytes() == before


def test_a_promotion_that_would_not_validate_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """a needs b in staging and b needs a in production: promoting a's prerequisite
    makes a cycle in production."""
    shutil.copytree(CYCLE / "definitions", tmp_path / "definitions")
    monkeypatch.chdir(tmp_path)
    before = (tmp_path / "definitions" / "a.yaml").read_bytes()
    status, _out, err = promote(capsys, "a", "--from", "staging", "--to", "production")
    assert status == cli.EXIT_FINDINGS
    assert "error[E204 cycle] dependency cycle: a -> b -> a" in err
    assert "(in production)" in err
    assert "would not validate; nothing written" in err
    assert (tmp_path / "definitions" / "a.yaml").read_bytes() == before


def test_nothing_to_promote(shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _err = promote(capsys, "checkout", "--from", "staging", "--to", "production")
    assert status == 0
    assert out == (
        "nothing to promote: 'checkout' is the same in staging and production (overrides "
        "and pinned name test users: never promoted)\n"
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["nope", "--from", "staging", "--to", "production"], "no object 'nope'"),
        (["global", "--from", "stage", "--to", "production"], "--from stage: no such environment"),
        (["global", "--from", "staging", "--to", "staging"], "--from and --to both name"),
    ],
)
def test_promote_usage_errors(
    shop: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    status, _out, err = promote(capsys, *arguments)
    assert status == cli.EXIT_USAGE
    assert message in err
