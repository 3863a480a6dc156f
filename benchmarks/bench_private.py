"""What private attributes cost an evaluation: the example company's production bundle
compiled with `private_attributes: [user_id, email]` (as committed) and without, each
evaluated for the same users (every flag per user), in microseconds per user.

    python benchmarks/bench_private.py [--users 50000] [--rounds 7]

The difference is the SHA-256 of each private attribute the bundle compares, taken
once per evaluation, and the copy of the user's mapping that receives the digests.
Medians of several rounds; the machine's speed drifts, so compare within one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from expc.outputs.release import bundle_of
from expc.pipeline.snapshot import Snapshot, read
from expc.sdk.evaluate import Evaluator

EXAMPLE = Path(__file__).resolve().parent.parent / "definitions"


def _bundle(definitions: Path) -> dict[str, Any]:
    snapshot = read(definitions)
    assert isinstance(snapshot, Snapshot)
    return dict(bundle_of(snapshot, "production"))


def _plain_copy(into: Path) -> Path:
    shutil.copytree(EXAMPLE, into)
    project = into / "project.yaml"
    lines = project.read_text(encoding="utf-8").splitlines(keepends=True)
    project.write_text("".join(x for x in lines if not x.startswith("private_attributes:")))
    return into


def _per_user(evaluator: Evaluator, people: list[dict[str, Any]], rounds: int) -> float:
    evaluate = evaluator.evaluate
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for user in people:
            evaluate(user)
        times.append((time.perf_counter() - start) / len(people) * 1e6)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=7)
    options = parser.parse_args()
    people = [
        {"user_id": f"user-{i}", "email": f"person-{i}@mail.example", "country": "NO"}
        for i in range(options.users)
    ]
    with tempfile.TemporaryDirectory() as folder:
        plain_bundle = _bundle(_plain_copy(Path(folder) / "definitions"))
    hidden = Evaluator(_bundle(EXAMPLE))
    plain = Evaluator(plain_bundle)
    print(f"{os.cpu_count()} cores, {options.users:,} users, median of {options.rounds} rounds")
    plain_us = _per_user(plain, people, options.rounds)
    hidden_us = _per_user(hidden, people, options.rounds)
    print(f"without private attributes: {plain_us:6.2f} us per user (all flags)")
    print(f"with user_id and email:     {hidden_us:6.2f} us per user (all flags)")
    print(f"cost of the digests:        {hidden_us - plain_us:6.2f} us per user")


if __name__ == "__main__":
    main()
