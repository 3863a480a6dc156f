"""Shared fixtures: case directories, the option that rewrites expected files, and the
hypothesis profiles of the fuzz tests.

The fuzz tests run a bounded number of examples by default (the `ci` profile, about a
minute in all). The same generators run longer on demand:

    .venv/bin/python -m pytest tests/test_fuzz_*.py --hypothesis-profile=long
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from expc.outputs.bundle_types import Bundle
from expc.outputs.release import bundle_of
from expc.pipeline.snapshot import Snapshot, read

TESTS = Path(__file__).parent
REPO = TESTS.parent
CASES = TESTS / "cases"
# The example company declares staging and production; tests of "the example's bundle"
# mean the one its customers get.
EXAMPLE_ENVIRONMENT = "production"
EXAMPLE_OUTPUTS = REPO / "generated" / EXAMPLE_ENVIRONMENT

# The cache of read files goes to a folder of this run, not beside every case's
# definitions (tests that test the cache point it elsewhere themselves).
os.environ.setdefault("EXPC_CACHE_DIR", tempfile.mkdtemp(prefix="expc-test-cache-"))

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


GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "expc",
    "GIT_AUTHOR_EMAIL": "expc@example.com",
    "GIT_COMMITTER_NAME": "expc",
    "GIT_COMMITTER_EMAIL": "expc@example.com",
}


def git(repository: Path, *arguments: str) -> str:
    """Run git in `repository` as a fixed author; its output."""
    result = subprocess.run(
        ["git", *arguments],
        cwd=repository,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **GIT_IDENTITY},
    )
    return result.stdout


def expc(
    cwd: Path, *arguments: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`expc ARGUMENTS` as a separate process in `cwd`, exactly as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "expc", *arguments],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )


def run_in_process(args: list[str]) -> tuple[int, str]:
    """`expc ARGS` in this process: exit code and everything printed."""
    import contextlib
    import gc
    import io

    from expc import cli

    out, err = io.StringIO(), io.StringIO()
    collecting = gc.isenabled()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = cli.main(args)
    finally:
        if collecting:  # `cli.main` may switch the collector off for its one run
            gc.enable()
    return status, out.getvalue() + err.getvalue()


def valid_snapshot(definitions: Path, display_root: str | None = None) -> Snapshot:
    """The definitions read through the pipeline; they must be valid."""
    result = read(definitions, display_root)
    assert isinstance(result, Snapshot), [d.message for d in result.diagnostics]
    return result


def compiled_bundle(definitions: Path, environment: str | None = None) -> Bundle:
    """The bundle of valid definitions, compiled in memory: of `environment`, or of the
    last environment in promotion order (production) when definitions declare some."""
    snapshot = valid_snapshot(definitions)
    declared = snapshot.project.environments if snapshot.project else None
    if environment is None and declared:
        environment = declared[-1]
    return bundle_of(snapshot, environment)


@pytest.fixture
def released(tmp_path: Path) -> Path:
    """A git repository whose HEAD is the example, compiled and committed."""
    import shutil

    work = tmp_path / "config"
    shutil.copytree(REPO / "definitions", work / "definitions")
    git(work, "init", "-q", "-b", "main")
    assert expc(work, "compile").returncode == 0
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "release 1")
    return work


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-expected",
        action="store_true",
        help="rewrite expected.txt and golden files from the current output; review the diff",
    )


@pytest.fixture
def update_expected(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-expected"))
