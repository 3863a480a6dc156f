"""Shared fixtures: case directories, the option that rewrites expected files, and the
hypothesis profiles of the fuzz tests.

The fuzz tests run a bounded number of examples by default (the `ci` profile, about a
minute in all). The same generators run longer on demand:

    .venv/bin/python -m pytest tests/test_fuzz_*.py --hypothesis-profile=long
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

TESTS = Path(__file__).parent
REPO = TESTS.parent
CASES = TESTS / "cases"

# Fuzz tests read `settings.default.max_examples` through these profiles; everything
# else keeps hypothesis's defaults or its own explicit settings.
settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile(
    "long",
    deadline=None,
    max_examples=20_000,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile("ci")


def fuzz_examples(in_ci: int) -> int:
    """How many examples a fuzz test runs: `in_ci` by default (sized so that all fuzz
    tests together take about a minute), the long profile's count when it is loaded."""
    loaded = settings().max_examples
    return loaded if loaded > settings.get_profile("ci").max_examples else in_ci


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-expected",
        action="store_true",
        help="rewrite expected.txt and golden files from the current output; review the diff",
    )


@pytest.fixture
def update_expected(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-expected"))
