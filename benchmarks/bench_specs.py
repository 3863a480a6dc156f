"""Time `expc test` on the example company's specs, as a user runs it.

    python benchmarks/bench_specs.py [RUNS]     # default 7 runs

Each run is a separate process (`python -m expc test`, start-up and imports included)
from the repository root: it reads the definitions, compiles both environments'
bundles in memory, runs every case, finds every `at` user and simulates 100,000 users
per environment for the `shares` and `exclusive` checks. The cache of read files is
off (`EXPC_CACHE_DIR=`), so every run reads the YAML: the figure is the cold one a CI
job without a kept cache sees. Prints each run, the median and the target (3 s).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).parent.parent
TARGET_SECONDS = 3.0
USERS = 100_000


def one_run() -> tuple[float, str]:
    """Wall time of one `expc test` process, and the counts it printed last."""
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "expc", "test", "-q", "-n", str(USERS)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "EXPC_CACHE_DIR": ""},
        check=False,
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"expc test exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return elapsed, result.stdout.strip().splitlines()[-1]


def main(arguments: list[str]) -> None:
    runs = int(arguments[0]) if arguments else 7
    one_run()  # a first run warms the operating system's file cache, not expc's
    times = []
    counts = ""
    for number in range(1, runs + 1):
        seconds, counts = one_run()
        times.append(seconds)
        print(f"run {number}: {seconds:.2f} s")
    median = statistics.median(times)
    print(counts)
    print(
        f"expc test, example specs, {USERS:,} simulated users: median {median:.2f} s "
        f"over {runs} runs (min {min(times):.2f} s, max {max(times):.2f} s; "
        f"{os.cpu_count()} cores); target < {TARGET_SECONDS:.0f} s: "
        + ("met" if median < TARGET_SECONDS else "NOT met")
    )


if __name__ == "__main__":
    main(sys.argv[1:])
